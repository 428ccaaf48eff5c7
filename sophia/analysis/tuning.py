"""Threshold tuning: a proposed policy against the current one, on the same traffic.

Everything here is replay (`sophia.analysis.replay`) put side by side; the page only lays it out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from sophia.analysis import replay
from sophia.config import Config, KeywordGroup
from sophia.log import versions
from sophia.vocab import Tier


def propose(
    base: Config,
    complexity_threshold: float,
    cost_threshold_usd: float,
    group_weights: dict[str, float] | None = None,
    band_weights: dict[int, float] | None = None,
    max_tokens_weight: float | None = None,
) -> Config:
    """`base` with new thresholds and scorer weights (words and bands stay as they are)."""
    for name, v in (("complexity threshold", complexity_threshold), ("cost threshold", cost_threshold_usd)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"the {name} must be a number >= 0, not {v}")
    if complexity_threshold > 1:
        raise ValueError("the complexity threshold must be between 0 and 1")
    s = base.scorer
    groups = tuple(KeywordGroup(g.name, g.words, (group_weights or {}).get(g.name, g.weight)) for g in s.keyword_groups)
    bands = tuple((c, (band_weights or {}).get(c, w)) for c, w in s.length_bands)
    weights = [w for _, w in bands] + [g.weight for g in groups] + [max_tokens_weight or 0]
    if any(not 0 <= w <= 1 for w in weights):
        raise ValueError("every scorer weight must be between 0 and 1")
    scorer = replace(
        s,
        keyword_groups=groups,
        length_bands=bands,
        max_tokens_weight=s.max_tokens_weight if max_tokens_weight is None else max_tokens_weight,
    )
    return replace(
        base.with_routing(complexity_threshold=complexity_threshold, cost_threshold_usd=cost_threshold_usd),
        scorer=scorer,
    )


@dataclass
class Comparison:
    current: replay.ReplayResult
    proposed: replay.ReplayResult
    changed: int  # records whose tier differs between the two policies
    to_dedicated: int
    to_serverless: int
    monthly_current: float  # metered + GPU-hours, scaled to a month (periods.MONTH_DAYS)
    monthly_proposed: float


def compare(
    t: replay.Traffic,
    current_cfg: Config,
    proposed_cfg: Config,
    tiers: dict[str, str],
    current: replay.Prepared,
    proposed: replay.Prepared,
) -> Comparison:
    a = replay.replay(t, current_cfg, tiers, current)
    b = replay.replay(t, proposed_cfg, tiers, proposed)
    ded_a = _dedicated(a.code, current.targets)
    ded_b = _dedicated(b.code, proposed.targets)
    return Comparison(
        a,
        b,
        int((ded_a != ded_b).sum()),
        int((~ded_a & ded_b).sum()),
        int((ded_a & ~ded_b).sum()),
        replay.monthly(a.metered_cost_usd + a.fixed_cost_usd, t),
        replay.monthly(b.metered_cost_usd + b.fixed_cost_usd, t),
    )


def _dedicated(code: np.ndarray, targets) -> np.ndarray:
    ded = np.array([tg[0] == Tier.DEDICATED for tg in targets])
    return ded[code] if len(code) else np.zeros(0, dtype=bool)


def history(cur) -> pd.DataFrame:
    """Every stored policy version, newest first, with what changed from the one before."""
    vs = versions.history(cur)
    rows = []
    for i, v in enumerate(vs):
        before = vs[i + 1].settings if i + 1 < len(vs) else None
        changed = versions.changes(before, v.settings) if before else ["first version"]
        rows.append(
            {
                "version": v.version,
                "applied_at": v.created_at,
                "origin": v.origin,
                "note": v.note or "",
                "changes": "; ".join(changed) or "no change",
                "complexity_threshold": v.settings["routing"]["complexity_threshold"],
                "cost_threshold_usd": v.settings["routing"]["cost_threshold_usd"],
            }
        )
    return pd.DataFrame(rows)
