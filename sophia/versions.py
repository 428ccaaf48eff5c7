"""Routing settings as numbered versions in the database, so every record names its policy.

The configuration file seeds a version whenever its settings change; the tuning page and
rollbacks add versions on top. The newest version is the one live routing uses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime

import duckdb

from .config import Config, KeywordGroup, RoutingSettings, ScorerSettings


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


@dataclass(frozen=True)
class Version:
    version: int
    created_at: datetime
    origin: str
    note: str | None
    settings: dict


def _insert(con, settings: dict, origin: str, note: str | None) -> int:
    version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM settings_versions").fetchone()[0]
    con.execute(
        "INSERT INTO settings_versions VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?)",
        [version, digest(settings), origin, note, json.dumps(settings)],
    )
    return version


def history(con: duckdb.DuckDBPyConnection) -> list[Version]:
    rows = con.execute(
        "SELECT version, created_at, origin, note, settings FROM settings_versions ORDER BY version DESC"
    ).fetchall()
    return [Version(v, c, o, n, json.loads(s)) for v, c, o, n, s in rows]


def resolve(con: duckdb.DuckDBPyConnection, cfg: Config) -> tuple[int, Config]:
    """The active version and the configuration it gives.

    When the file's settings differ from the last ones seen from the file, the file was
    edited: it becomes a new version. Otherwise the newest version (perhaps applied from the
    tuning page) stays active.
    """
    mine = settings_of(cfg)
    last_file = con.execute(
        "SELECT digest FROM settings_versions WHERE origin = 'config' ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if last_file is None or last_file[0] != digest(mine):
        return _insert(con, mine, "config", None), cfg
    latest = history(con)[0]
    return latest.version, config_from(cfg, latest.settings)


def ensure(con: duckdb.DuckDBPyConnection, cfg: Config) -> int:
    """The active version number for `cfg` (see `resolve`)."""
    return resolve(con, cfg)[0]


def apply(con: duckdb.DuckDBPyConnection, cfg: Config, origin: str = "tuning", note: str | None = None) -> int:
    """Store `cfg`'s settings as the newest version; live routing uses it from the next request."""
    return _insert(con, settings_of(cfg), origin, note)


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two stored settings, one line per value."""
    out = []
    for section in ("routing", "scorer"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: {a.get(key)!r} → {b.get(key)!r}")
    return out
