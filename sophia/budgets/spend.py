"""Spend by period (day, week or month in the configured time zone) and by tier, endpoint, model.

Metered spend is summed in DuckDB over the log. Fixed spend is the GPU-hours of each dedicated
endpoint in each period while it was part of the fleet (the fleet's history: every started hour
of each run, up to now), busy or idle, so a period whose GPUs served nothing still shows what
they cost, and a period before an endpoint joined the fleet shows none. Beside the total, each
row gives its tokens at the serverless primary and the premium model's prices (the baselines of
`money.baselines`: a period's savings is the sum of its primary baseline minus its total).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd

from sophia.config import Config
from sophia.log import fleet_store, metered
from sophia.log.export import frame_csv
from sophia.log.metered import GROUPS
from sophia.money import fleet, periods, pricing
from sophia.money.periods import PERIODS
from sophia.vocab import LIVE_SOURCES, Tier

COLUMNS = (
    "period_start",
    "tier",
    "endpoint",
    "model",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "metered_cost_usd",
    "fixed_cost_usd",
    "total_cost_usd",
    "all_serverless_primary_usd",
    "all_premium_usd",
)


def _check(by: str, groups: Sequence[str]) -> list[str]:
    if by not in PERIODS:
        raise ValueError(f"--by {by!r} is not allowed: expected one of {', '.join(PERIODS)}")
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise ValueError(f"--group {bad[0]!r} is not allowed: expected any of {', '.join(GROUPS)}")
    return [g for g in GROUPS if g in groups]  # a fixed column order whatever the order asked


def _fixed(fleet_periods, start_local: datetime, end_local: datetime, tz: ZoneInfo, now: datetime, sources):
    """Each endpoint's GPU-hours in a local period while it was part of the fleet: every started
    hour of each run, up to now."""
    start, end = periods.local_to_utc(start_local, tz), periods.local_to_utc(end_local, tz)
    return fleet.charged_by_endpoint(
        fleet_periods, start, end, now, sources=sources, live_sources=LIVE_SOURCES, whole_hours=True
    )


def spend(
    cur,
    cfg: Config,
    by: str = "day",
    groups: Sequence[str] = (),
    sources: Sequence[str] | None = None,
    tz: str = "UTC",
    now: datetime | None = None,
) -> pd.DataFrame:
    """One row per period and group: requests, tokens, metered, fixed and total USD, sorted."""
    groups = _check(by, groups)
    zone = ZoneInfo(tz)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    prices = {
        "all_serverless_primary_usd": pricing.price_of(cfg, cfg.routing.serverless_model),
        "all_premium_usd": pricing.price_of(cfg, cfg.routing.premium_model),
    }
    df = metered.by_period(cur, by, groups, sources, tz, prices)
    if df.empty:
        return pd.DataFrame(columns=["period_start", *groups, *COLUMNS[4:]])
    # Fixed spend: each dedicated endpoint's hours in each period while it was part of the fleet
    # (money.fleet), under the group it belongs to.
    first, last = df["period_start"].min().to_pydatetime(), df["period_start"].max().to_pydatetime()
    fleet_periods = fleet_store.current(cur, cfg, now)
    models = {e.name: e.models[0] for e in cfg.tier_endpoints(Tier.DEDICATED)}
    fixed_rows = []
    start = first
    while start <= last:
        end = periods.next_start(start, by)
        for name, usd in _fixed(fleet_periods, start, end, zone, now, sources).items():
            key = {"tier": Tier.DEDICATED, "endpoint": name, "model": models.get(name, "(removed)")}
            fixed_rows.append({"period_start": start, **{g: key[g] for g in groups}, "fixed_cost_usd": usd})
        start = end
    keys = ["period_start", *groups]
    if fixed_rows:
        fixed = pd.DataFrame(fixed_rows).groupby(keys, as_index=False)["fixed_cost_usd"].sum()
        df["period_start"] = df["period_start"].astype("datetime64[us]")
        fixed["period_start"] = fixed["period_start"].astype("datetime64[us]")
        df = df.merge(fixed, on=keys, how="outer")
    else:
        df["fixed_cost_usd"] = 0.0
    for c in ("requests", "prompt_tokens", "completion_tokens"):
        df[c] = df[c].fillna(0).astype("int64")
    for c in ("metered_cost_usd", "all_serverless_primary_usd", "all_premium_usd"):
        df[c] = df[c].fillna(0.0).round(pricing.DIGITS)
    df["fixed_cost_usd"] = df["fixed_cost_usd"].fillna(0.0).round(pricing.DIGITS)
    df["total_cost_usd"] = (df["metered_cost_usd"] + df["fixed_cost_usd"]).round(pricing.DIGITS)
    df = df.sort_values(keys, na_position="first").reset_index(drop=True)
    return df[["period_start", *groups, *COLUMNS[4:]]]


def to_csv(df: pd.DataFrame) -> str:
    """CSV text with ISO period starts and every text cell made inert for spreadsheets."""
    out = df.copy()
    out["period_start"] = pd.to_datetime(out["period_start"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return frame_csv(out, float_format="%.9f")
