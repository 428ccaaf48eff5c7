"""The settings a routing decision depends on, as plain data: what a policy version stores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

from sophia.config import Config, KeywordGroup, RoutingSettings, ScorerSettings


def settings_of(cfg: Config) -> dict:
    """The settings a decision depends on (scorer and routing), as plain JSON data."""
    return json.loads(json.dumps({"scorer": asdict(cfg.scorer), "routing": asdict(cfg.routing)}))


def digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def config_from(cfg: Config, settings: dict) -> Config:
    """`cfg` with the scorer and routing settings of a stored version."""
    s = settings["scorer"]
    scorer = ScorerSettings(
        length_bands=tuple((int(c), float(w)) for c, w in s["length_bands"]),
        keyword_groups=tuple(
            KeywordGroup(g["name"], tuple(g["words"]), float(g["weight"])) for g in s["keyword_groups"]
        ),
        max_tokens_over=int(s["max_tokens_over"]),
        max_tokens_weight=float(s["max_tokens_weight"]),
        cap=float(s["cap"]),
    )
    return replace(cfg, scorer=scorer, routing=RoutingSettings(**settings["routing"]))
