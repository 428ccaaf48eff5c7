"""Metered (per-token) spend summed over the log: what budgets and the spend export read.

Spend totals are sums over the append-only log, never counters kept elsewhere (DESIGN
invariant 5). Selections go through `filters.where`; GPU-hours are not here (they accrue
whether or not a request was logged, see `money.pricing`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from sophia.log.filters import where
from sophia.money import pricing
from sophia.money.periods import HOUR_S, PERIODS

GROUPS = ("tier", "endpoint", "model")  # what spend can be split by


def total(
    cur: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    *,
    sources: Sequence[str] | None = None,
    facets: Mapping[str, Sequence[str]] | None = None,
    exclude_instance: str | None = None,
) -> float:
    """Metered spend of the selected rows over [start, end)."""
    clause, params = where(sources, start, end, facets=facets, exclude_instance=exclude_instance)
    return cur.execute(f"SELECT coalesce(sum(metered_cost_usd), 0) FROM requests WHERE {clause}", params).fetchone()[0]


def hourly(
    cur: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    *,
    sources: Sequence[str] | None = None,
    facets: Mapping[str, Sequence[str]] | None = None,
) -> list[float]:
    """Metered spend of each hour of [start, end) for the selected rows, empty hours included
    (the last, partial hour too: spend made just now counts)."""
    clause, params = where(sources, start, end, facets=facets)
    rows = dict(
        cur.execute(
            f"SELECT date_trunc('hour', ts) AS h, sum(metered_cost_usd) FROM requests WHERE {clause} GROUP BY 1",
            params,
        ).fetchall()
    )
    base = start.replace(minute=0, second=0, microsecond=0)
    hours = max(math.ceil((end - base).total_seconds() / HOUR_S), 1)
    return [float(rows.get(base + timedelta(hours=i), 0.0) or 0.0) for i in range(hours)]


def by_period(
    cur: duckdb.DuckDBPyConnection,
    by: str,
    groups: Sequence[str] = (),
    sources: Sequence[str] | None = None,
    tz: str = "UTC",
    baseline_prices: Mapping[str, pricing.ModelPrice] | None = None,
) -> pd.DataFrame:
    """Requests, tokens and metered USD per local calendar period (in `tz`) and group, and per
    `baseline_prices` entry (column name -> a model's prices) the tokens at those prices."""
    baseline_prices = baseline_prices or {}
    if by not in PERIODS or any(g not in GROUPS for g in groups):
        raise ValueError(f"cannot sum spend by {by!r} and {list(groups)!r}")
    clause, params = where(sources)
    sel = "".join(f", {g}" for g in groups)
    at = "".join(f", coalesce(sum({pricing.at_price_sql(p)}), 0) AS {name}" for name, p in baseline_prices.items())
    return cur.execute(
        f"""SELECT date_trunc('{by}', timezone(?, timezone('UTC', ts))) AS period_start{sel},
                   count(*) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
                   coalesce(sum(completion_tokens), 0) AS completion_tokens,
                   coalesce(sum(metered_cost_usd), 0) AS metered_cost_usd{at}
            FROM requests WHERE {clause} GROUP BY ALL""",
        [tz, *params],
    ).df()
