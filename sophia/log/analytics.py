"""The app's read side: every aggregate, filter and page of the request log, in DuckDB SQL.

Functions take a DuckDB cursor (from `Runtime.reader()`) and return small results: a dict
of figures, or a DataFrame with one row per time bucket, group or page row. Nothing here
loads the whole log into Python; the heavy lifting (grouping, quantiles, paging) happens in
DuckDB. Costs are the logged columns and `pricing`; no price is written here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd

from sophia.config import Config
from sophia.log import fleet_store, stats
from sophia.log.filters import FACETS, MAX_TEXT, FilterError, Filters, where  # noqa: F401  (pages read them here)
from sophia.money import fleet, periods, pricing
from sophia.money.fleet import FleetPeriod
from sophia.money.periods import GRAINS, granularity  # noqa: F401  (the overview page picks its grain here)
from sophia.money.periods import starts as bucket_starts
from sophia.vocab import LIVE_SOURCES, Tier

GROUP_BY = ("tier", "model", "endpoint")  # what the overview's time series can be split by
MAX_PAGE_SIZE = 1000
MISSING = "(none)"  # how a NULL group is labelled

# The request log's table: what a page row shows (cost is metered + amortized, like Result.cost_usd).
PAGE_COLUMNS = (
    "ts",
    "request_id",
    "source",
    "tier",
    "endpoint",
    "model",
    "reason",
    "status",
    "complexity",
    "prompt_tokens",
    "completion_tokens",
    "usage_estimated",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "simulated",
    "error",
)


# --- the log as a whole -----------------------------------------------------------------


def data_version(cur: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    """Changes whenever a record is added: part of every cache key over the log."""
    n, last = cur.execute("SELECT count(*), max(ts) FROM requests").fetchone()
    return int(n), last.isoformat() if last is not None else ""


def bounds(cur: duckdb.DuckDBPyConnection) -> tuple[int, datetime | None, datetime | None]:
    """(records, first ts, last ts) of the whole log."""
    n, first, last = cur.execute("SELECT count(*), min(ts), max(ts) FROM requests").fetchone()
    return int(n), first, last


def facets(cur: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The distinct values of each filterable column, in one scan."""
    cols = ", ".join(f"list_sort(list(DISTINCT {c}) FILTER (WHERE {c} IS NOT NULL))" for c in FACETS)
    row = cur.execute(f"SELECT {cols} FROM requests").fetchone()
    return {c: list(v or []) for c, v in zip(FACETS, row, strict=True)}


def span(cur: duckdb.DuckDBPyConnection, f: Filters) -> tuple[datetime | None, datetime | None]:
    """The range a selection covers: its own bounds, else the first/last matching record."""
    if f.start is not None and f.end is not None:
        return f.start, f.end
    clause, params = f.where()
    first, last = cur.execute(f"SELECT min(ts), max(ts) FROM requests WHERE {clause}", params).fetchone()
    start = f.start or first
    end = f.end or (last + timedelta(microseconds=1) if last is not None else None)
    return start, end


# --- overview ---------------------------------------------------------------------------


def _sources(cur: duckdb.DuckDBPyConnection, f: Filters) -> list[str] | None:
    """The sources a selection reads (the other facets do not apply to spend)."""
    sources = list(f.source) if f.source else None
    if f.exclude_source:
        known = [r[0] for r in cur.execute("SELECT DISTINCT source FROM requests").fetchall()]
        sources = [s for s in (sources or known) if s not in f.exclude_source]
        if not sources:  # every source is excluded: select nothing
            sources = ["\x00none"]
    return sources


def overview(cur: duckdb.DuckDBPyConnection, cfg: Config, f: Filters, now: datetime | None = None) -> dict:
    """The overview's figures for a range and sources (the other facets do not apply).

    Built on `stats.stats` (the same figures as `sophia stats`, baselines included), plus rates
    and the split of spend: metered (per token) + fixed (the fleet's GPU-hours over the range
    while it ran, busy or idle). The amortized cost is the part of the fixed spend requests used.
    """
    now = now or datetime.now(UTC).replace(tzinfo=None)
    sources = _sources(cur, f)
    periods = fleet_store.current(cur, cfg, now)
    s = stats.stats(cur, cfg, sources, f.start, f.end, now=now, fleet_periods=periods)
    total = s["total_requests"]
    fixed, amortized = s["fixed_cost_usd"], s["amortized_cost_usd"]
    s.update(
        {
            "spend_usd": s["actual_total_usd"],
            "error_rate": s["error_requests"] / total if total else 0.0,
            "failover_rate": s["failover_requests"] / total if total else 0.0,
            "gpu_utilization": amortized / fixed if fixed else None,
            "idle_gpu_usd": round(max(fixed - amortized, 0.0), pricing.DIGITS),
            "hourly_fixed_usd": fleet.hourly_now(periods, now, sources=sources, live_sources=LIVE_SOURCES),
            "fleet_periods": periods,
            "sources": sources,
        }
    )
    return s


def timeseries(cur: duckdb.DuckDBPyConnection, f: Filters, by: str, grain: str) -> pd.DataFrame:
    """Requests and spend per time bucket and group (tier, model or endpoint)."""
    if by not in GROUP_BY:
        raise FilterError(f"cannot split by {by!r}: expected one of {', '.join(GROUP_BY)}")
    if grain not in GRAINS:
        raise FilterError(f"granularity {grain!r} is not allowed: expected one of {', '.join(GRAINS)}")
    clause, params = f.where()
    return cur.execute(
        f"""SELECT date_trunc('{grain}', ts) AS bucket, coalesce({by}, '{MISSING}') AS "group",
                   count(*) AS requests,
                   count(*) FILTER (WHERE status <> 'ok') AS errors,
                   coalesce(sum(metered_cost_usd), 0) AS metered_usd,
                   coalesce(sum(amortized_cost_usd), 0) AS amortized_usd
            FROM requests WHERE {clause}
            GROUP BY ALL ORDER BY bucket, "group" """,
        params,
    ).df()


def latency_series(cur: duckdb.DuckDBPyConnection, f: Filters, grain: str) -> pd.DataFrame:
    """p50 and p95 latency of successful requests per time bucket."""
    if grain not in GRAINS:
        raise FilterError(f"granularity {grain!r} is not allowed: expected one of {', '.join(GRAINS)}")
    clause, params = f.where()
    return cur.execute(
        f"""SELECT date_trunc('{grain}', ts) AS bucket,
                   quantile_cont(latency_ms, 0.5) AS p50_ms, quantile_cont(latency_ms, 0.95) AS p95_ms,
                   count(*) AS requests
            FROM requests WHERE {clause} AND status = 'ok'
            GROUP BY ALL ORDER BY bucket""",
        params,
    ).df()


def fixed_series(
    cfg: Config,
    start: datetime,
    end: datetime,
    grain: str,
    fleet_periods: Sequence[FleetPeriod] | None = None,
    sources: Sequence[str] | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """GPU-hour spend per bucket over [start, end) while the fleet ran, busy or not.

    Without `fleet_periods`, the configured fleet over the whole range (what a fleet would cost)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if fleet_periods is None:
        fleet_periods = [FleetPeriod(e.name, e.hourly_usd, start, None) for e in cfg.tier_endpoints(Tier.DEDICATED)]
    rows = []
    for b in bucket_starts(start, end, grain):
        lo, hi = max(b, start), min(periods.next_start(b, grain), end)
        rows.append((b, fleet.charged(fleet_periods, lo, hi, now, sources=sources, live_sources=LIVE_SOURCES)))
    return pd.DataFrame(rows, columns=["bucket", "fixed_usd"])


def breakdown_by(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Totals per group (tier, model, endpoint, reason, source or status) over the selection."""
    if by not in (*GROUP_BY, "reason", "source", "status"):
        raise FilterError(f"cannot group by {by!r}")
    clause, params = f.where()
    return cur.execute(
        f"""SELECT coalesce({by}, '{MISSING}') AS "group", count(*) AS requests,
                   coalesce(sum(metered_cost_usd), 0) AS metered_usd,
                   coalesce(sum(amortized_cost_usd), 0) AS amortized_usd,
                   quantile_cont(latency_ms, 0.5) FILTER (WHERE status = 'ok') AS p50_ms
            FROM requests WHERE {clause} GROUP BY ALL ORDER BY requests DESC, "group" """,
        params,
    ).df()


# --- request log ------------------------------------------------------------------------


def count(cur: duckdb.DuckDBPyConnection, f: Filters) -> int:
    clause, params = f.where()
    return int(cur.execute(f"SELECT count(*) FROM requests WHERE {clause}", params).fetchone()[0])


def page(cur: duckdb.DuckDBPyConnection, f: Filters, limit: int = 50, offset: int = 0) -> pd.DataFrame:
    """One page of the selection, newest first, paged in DuckDB."""
    if not (isinstance(limit, int) and 1 <= limit <= MAX_PAGE_SIZE):
        raise FilterError(f"page size {limit!r} is not allowed: expected 1 to {MAX_PAGE_SIZE}")
    if not (isinstance(offset, int) and offset >= 0):
        raise FilterError(f"page offset {offset!r} is not allowed: expected a whole number >= 0")
    clause, params = f.where()
    cols = ", ".join(
        "round(metered_cost_usd + amortized_cost_usd, 9) AS cost_usd" if c == "cost_usd" else c for c in PAGE_COLUMNS
    )
    return cur.execute(
        f"SELECT {cols} FROM requests WHERE {clause} ORDER BY ts DESC, request_id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).df()


def record(cur: duckdb.DuckDBPyConnection, request_id: str) -> dict | None:
    """Every logged column of one request (breakdown parsed), or None when there is none."""
    rid = (request_id or "").strip()
    if not rid:
        return None
    res = cur.execute("SELECT * FROM requests WHERE request_id = ? ORDER BY ts LIMIT 1", [rid])
    row = res.fetchone()
    if row is None:
        return None
    out = dict(zip([d[0] for d in res.description], row, strict=True))
    try:
        out["breakdown"] = json.loads(out["breakdown"]) if out.get("breakdown") else {}
    except (TypeError, ValueError):
        pass
    out["cost_usd"] = round((out.get("metered_cost_usd") or 0) + (out.get("amortized_cost_usd") or 0), 9)
    return out


# --- endpoints --------------------------------------------------------------------------


def endpoint_stats(cur: duckdb.DuckDBPyConnection, cfg: Config, since: datetime | None) -> pd.DataFrame:
    """Per configured endpoint over the recent window: tries, failures, latency, last use.

    An endpoint is *tried* by every request whose failover path names it; a try *failed*
    when the request moved on to another endpoint, or ended there with an error.
    """
    names = [e.name for e in cfg.endpoints]
    clause, params = where(None, since, None)
    df = cur.execute(
        f"""WITH tries AS (
                SELECT unnest(failover_path) AS name, endpoint, status, latency_ms, ttft_ms, ts
                FROM requests WHERE {clause}
            )
            SELECT name AS endpoint,
                   count(*) AS tries,
                   count(*) FILTER (WHERE name <> endpoint OR status NOT IN ('ok', 'cancelled')) AS failures,
                   count(*) FILTER (WHERE name = endpoint AND status = 'ok') AS served,
                   quantile_cont(latency_ms, 0.5) FILTER (WHERE name = endpoint AND status = 'ok') AS p50_ms,
                   quantile_cont(latency_ms, 0.95) FILTER (WHERE name = endpoint AND status = 'ok') AS p95_ms,
                   quantile_cont(ttft_ms, 0.5) FILTER (WHERE name = endpoint AND status = 'ok') AS ttft_p50_ms,
                   max(ts) AS last_ts
            FROM tries GROUP BY name""",
        params,
    ).df()
    base = pd.DataFrame({"endpoint": names})
    out = base.merge(df, on="endpoint", how="left")
    for c in ("tries", "failures", "served"):
        out[c] = out[c].fillna(0).astype("int64")
    out["error_rate"] = (out["failures"] / out["tries"]).where(out["tries"] > 0)
    return out


def endpoint_latency(cur: duckdb.DuckDBPyConnection, since: datetime | None, grain: str) -> pd.DataFrame:
    """p95 latency and requests served per endpoint and time bucket."""
    if grain not in GRAINS:
        raise FilterError(f"granularity {grain!r} is not allowed: expected one of {', '.join(GRAINS)}")
    clause, params = where(None, since, None)
    return cur.execute(
        f"""SELECT date_trunc('{grain}', ts) AS bucket, endpoint,
                   quantile_cont(latency_ms, 0.95) AS p95_ms, count(*) AS requests
            FROM requests WHERE {clause} AND status = 'ok' AND endpoint IS NOT NULL
            GROUP BY ALL ORDER BY bucket, endpoint""",
        params,
    ).df()


def distinct(values: Sequence[str] | None, extra: Sequence[str] = ()) -> list[str]:
    """Known values plus extra ones, sorted, without duplicates or NULLs."""
    return sorted({v for v in (*(values or ()), *extra) if v})
