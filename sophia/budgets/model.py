"""Budgets: what they are, which spend they cover, their periods, and their forecasts.

A budget's spend in a period is the metered (per-token) spend of the requests in its scope
plus the GPU-hours of the dedicated endpoints in its scope, which accrue hour by hour
(each started hour is charged in full) whether the GPUs are busy or idle. Amortized
per-request shares are not added on top: they are the same GPU-hours seen per request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from sophia.config import Config
from sophia.config.budgets import (  # noqa: F401  (budgets API)
    MAX_AMOUNT_USD,
    AlertSettings,
    Budget,
    check_scope,
    parse_budget,
    zone,
)
from sophia.money import fleet, pricing
from sophia.money.periods import bounds as period_bounds  # noqa: F401  (the guard and pages bound periods here)
from sophia.vocab import LIVE_SOURCES


def to_json(budgets: Sequence[Budget]) -> str:
    return json.dumps([b.as_dict() for b in budgets], sort_keys=True)


def from_json(text: str, cfg: Config) -> list[Budget]:
    return [parse_budget(b, cfg) for b in json.loads(text)]


# --- scope ------------------------------------------------------------------------------


def covers(b: Budget, tier: str, endpoint: str, model: str) -> bool:
    """Whether a request served by (tier, endpoint, model) counts toward `b`."""
    kind, value = b.scope_kind, b.scope_value
    return (
        kind == "global"
        or (kind == "tier" and value == tier)
        or (kind == "endpoint" and value == endpoint)
        or (kind == "model" and value == model)
    )


def fixed_endpoints(b: Budget, cfg: Config) -> list:
    """The dedicated endpoints whose GPU-hours count toward `b`."""
    return [
        e
        for e in cfg.tier_endpoints("dedicated")
        if covers(b, e.tier, e.name, e.models[0]) or (b.scope_kind == "model" and b.scope_value in e.models)
    ]


def scope_facets(b: Budget) -> dict[str, tuple[str, ...]]:
    """The log facet `b`'s scope selects on (none for a global budget), for `log.filters.where`."""
    return {} if b.scope_kind == "global" else {b.scope_kind: (b.scope_value,)}


# --- spend in a period ------------------------------------------------------------------


def _in_scope(b: Budget, cfg: Config, fleet_periods):
    names = {e.name for e in fixed_endpoints(b, cfg)}
    return [p for p in fleet_periods if p.endpoint in names]


def fixed_hourly(b: Budget, cfg: Config, fleet_periods=None, now: datetime | None = None) -> float:
    """What the GPUs in `b`'s scope cost an hour (now, by the fleet's history when given)."""
    if fleet_periods is None or now is None:
        return pricing.hourly_fixed(fixed_endpoints(b, cfg))
    return fleet.hourly_now(_in_scope(b, cfg, fleet_periods), now, sources=b.sources, live_sources=LIVE_SOURCES)


def fixed_accrued(
    b: Budget, cfg: Config, start: datetime, now: datetime, hourly: float | None = None, fleet_periods=None
) -> float:
    """GPU-hours charged so far this period: every started hour in full. With the fleet's
    history, only the hours each endpoint in scope was part of the fleet."""
    if now <= start:
        return 0.0
    if fleet_periods is not None:
        return fleet.charged(
            _in_scope(b, cfg, fleet_periods),
            start,
            now,
            now,
            sources=b.sources,
            live_sources=LIVE_SOURCES,
            whole_hours=True,
        )
    hourly = fixed_hourly(b, cfg) if hourly is None else hourly
    if not hourly:
        return 0.0
    return round(hourly * pricing.charged_hours(start, now, whole_hours=True), pricing.DIGITS)


def state(spent: float, b: Budget) -> str:
    if spent >= b.amount_usd:
        return "hard"
    if spent >= b.soft_limit * b.amount_usd:
        return "soft"
    return "ok"


# --- forecast ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    burn_rate_usd_per_hour: float
    projected_usd: float
    projected_low_usd: float
    projected_high_usd: float
    runs_out_at: datetime | None  # naive UTC; None when it lasts the period

    def as_dict(self) -> dict:
        return {
            "burn_rate_usd_per_hour": round(self.burn_rate_usd_per_hour, 6),
            "projected_usd": round(self.projected_usd, 4),
            "projected_low_usd": round(self.projected_low_usd, 4),
            "projected_high_usd": round(self.projected_high_usd, 4),
            "runs_out_at": self.runs_out_at.isoformat() + "Z" if self.runs_out_at else None,
        }


def forecast(
    b: Budget,
    spent: float,
    hourly_metered: Sequence[float],
    fixed_per_hour: float,
    now: datetime,
    end: datetime,
    window_hours: float | None = None,
) -> Forecast:
    """Project the period's end from the trailing window's hourly metered spend.

    The rate is the window's metered spend an hour plus the GPU-hours: over `window_hours` of
    elapsed time when given (so spend in the current partial hour counts at once), else the
    mean of the hourly buckets. The range uses the 10th and 90th percentiles of the buckets.
    """
    h = np.asarray(hourly_metered, dtype=float)
    if window_hours is not None and window_hours > 0:
        mean = float(h.sum()) / window_hours
    else:
        mean = float(h.mean()) if h.size else 0.0
    lo, hi = (float(np.percentile(h, 10)), float(np.percentile(h, 90))) if h.size else (0.0, 0.0)
    left = max((end - now).total_seconds() / 3600, 0.0)
    rate = mean + fixed_per_hour
    runs_out = None
    if spent >= b.amount_usd:
        runs_out = now
    elif rate > 0:
        # Compared in hours first: a large amount at a tiny rate lasts longer than a timedelta can hold.
        hours = (b.amount_usd - spent) / rate
        runs_out = now + timedelta(hours=hours) if hours < left else None
    return Forecast(
        rate,
        spent + rate * left,
        spent + (lo + fixed_per_hour) * left,
        spent + (max(hi, mean) + fixed_per_hour) * left,
        runs_out,
    )
