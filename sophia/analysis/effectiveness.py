"""The Overview's deeper panels, in DuckDB SQL: how scores fall against the threshold, the two
tiers side by side, failovers and recovery, throughput, and savings against the baselines over
time. Each function takes a cursor and a selection (`Filters`) and returns a small DataFrame."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from sophia.config import Config
from sophia.log.filters import Filters
from sophia.money import pricing
from sophia.money.periods import GRAINS
from sophia.routing import policy

BIN = 0.05  # width of a complexity histogram bar


def complexity_histogram(cur: duckdb.DuckDBPyConnection, f: Filters, cfg: Config) -> pd.DataFrame:
    """Requests per complexity bin (`lo` to `lo` + BIN), and for each bin edge how many requests
    moving the complexity threshold there would shift between the tiers (`shift`: positive =
    more to dedicated). Scores are compared in basis points, strictly above the threshold, as
    the policy does; a request the cost rule sends to dedicated anyway moves with no threshold."""
    clause, params = f.where()
    cost_nano = int(round(cfg.routing.cost_threshold_usd * policy.NANO))
    costly = (
        f"coalesce(round(estimated_cost_usd * {policy.NANO}) > {cost_nano}, false)"
        if cfg.tier_endpoints(policy.DEDICATED)
        else "false"
    )
    df = cur.execute(
        f"""SELECT round(complexity * {policy.BP})::BIGINT AS score_bp, {costly} AS costly, count(*) AS n
            FROM requests WHERE {clause} AND complexity IS NOT NULL AND isfinite(complexity) GROUP BY ALL""",
        params,
    ).df()
    width = round(BIN * policy.BP)
    n_bins = round(1 / BIN)
    score = df["score_bp"].to_numpy(dtype="int64")
    counts = df["n"].to_numpy(dtype="int64")
    per_bin = np.bincount(np.clip(score // width, 0, n_bins - 1), weights=counts, minlength=n_bins)
    movable = np.sort(np.repeat(score[~df["costly"].to_numpy(dtype=bool)], counts[~df["costly"].to_numpy(dtype=bool)]))
    at = policy.bp(cfg.routing.complexity_threshold)
    edges = np.arange(n_bins, dtype="int64") * width
    # Dedicated (by complexity) takes score > threshold: moving it to an edge shifts (edge, threshold].
    above = lambda x: len(movable) - np.searchsorted(movable, x, side="right")  # noqa: E731
    shift = above(edges) - above(at)
    return pd.DataFrame({"lo": edges / policy.BP, "requests": per_bin.astype("int64"), "shift": shift.astype("int64")})


def tiers_side_by_side(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Per tier: requests, p50/p95 latency and p50 time to first token of successes, and cost a
    request (metered + GPU-time share)."""
    clause, params = f.where()
    return cur.execute(
        f"""SELECT tier, count(*) AS requests,
                   quantile_cont(latency_ms, 0.5) FILTER (WHERE status = 'ok') AS p50_ms,
                   quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok') AS p95_ms,
                   quantile_cont(ttft_ms, 0.5) FILTER (WHERE status = 'ok') AS ttft_p50_ms,
                   coalesce(avg(metered_cost_usd + amortized_cost_usd), 0) AS cost_per_request_usd
            FROM requests WHERE {clause} AND tier IS NOT NULL GROUP BY 1 ORDER BY 1""",
        params,
    ).df()


def failovers_by_cause(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Failed-over requests by why the first endpoint failed (timeout, http_status, connect, ...;
    'unrecorded' for rows logged before causes were), which endpoint that was and which served."""
    clause, params = f.where()
    return cur.execute(
        f"""SELECT coalesce(failover_cause, 'unrecorded') AS cause, failover_path[1] AS failed_endpoint,
                   coalesce(endpoint, '(not served)') AS served_by, count(*) AS requests
            FROM requests WHERE {clause} AND reason = 'failover' AND len(failover_path) > 0
            GROUP BY ALL ORDER BY requests DESC, cause, failed_endpoint""",
        params,
    ).df()


def recovery(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Per endpoint: outages (a run of failures there up to its next successful request) and
    their time to recovery, median and longest, in seconds. A failure is an endpoint a request
    tried and left (every endpoint of its failover path but the one that served it) or one
    that errored it; only a success strictly later closes an outage, and one still open has no
    recovery yet."""
    clause, params = f.where()
    return cur.execute(
        f"""WITH sel AS (SELECT * FROM requests WHERE {clause}),
            fails AS (
                SELECT unnest(CASE WHEN status = 'ok' THEN failover_path[1:len(failover_path) - 1]
                                   ELSE failover_path END) AS endpoint, ts
                  FROM sel WHERE len(failover_path) > 0 AND (status = 'ok' OR status = 'error')
                UNION ALL
                SELECT endpoint, ts FROM sel
                 WHERE status = 'error' AND endpoint IS NOT NULL AND coalesce(len(failover_path), 0) = 0),
            oks AS (SELECT endpoint, ts AS ok_ts FROM sel WHERE status = 'ok' AND endpoint IS NOT NULL),
            paired AS (
                SELECT fails.endpoint, fails.ts, oks.ok_ts FROM fails
                ASOF LEFT JOIN oks ON fails.endpoint = oks.endpoint AND oks.ok_ts > fails.ts),
            outages AS (
                SELECT endpoint, ok_ts, epoch(ok_ts - min(ts)) AS seconds, count(*) AS failures
                  FROM paired GROUP BY endpoint, ok_ts)
            SELECT endpoint, count(*) AS outages, sum(failures) AS failures,
                   count(*) FILTER (WHERE ok_ts IS NULL) AS open_outages,
                   median(seconds) AS median_recovery_s, max(seconds) AS longest_recovery_s
              FROM outages GROUP BY 1 ORDER BY 1""",
        params,
    ).df()


def throughput(cur: duckdb.DuckDBPyConnection, f: Filters, grain: str) -> tuple[pd.DataFrame, float, object]:
    """Requests a second per bucket (the bucket's mean), and the peak: the busiest minute's
    requests a second and when it was."""
    if grain not in GRAINS:
        raise ValueError(f"granularity {grain!r} is not allowed: expected one of {', '.join(GRAINS)}")
    clause, params = f.where()
    df = cur.execute(
        f"""SELECT date_trunc('{grain}', ts) AS bucket, count(*) AS requests,
                   count(*) / epoch(date_trunc('{grain}', ts) + INTERVAL 1 {grain} - date_trunc('{grain}', ts))
                     AS per_second
            FROM requests WHERE {clause} GROUP BY 1 ORDER BY 1""",
        params,
    ).df()
    row = cur.execute(
        f"""SELECT date_trunc('minute', ts) AS m, count(*) / 60.0 FROM requests WHERE {clause}
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1""",
        params,
    ).fetchone()
    return df, (float(row[1]) if row else 0.0), (row[0] if row else None)


def savings_over_time(cur: duckdb.DuckDBPyConnection, cfg: Config, f: Filters, grain: str) -> pd.DataFrame:
    """Per bucket: metered spend and the same tokens all on the serverless primary and premium
    models (money.baselines); the caller adds each bucket's GPU-hours for the actual total."""
    if grain not in GRAINS:
        raise ValueError(f"granularity {grain!r} is not allowed: expected one of {', '.join(GRAINS)}")
    clause, params = f.where()
    prim = pricing.at_price_sql(pricing.price_of(cfg, cfg.routing.serverless_model))
    prem = pricing.at_price_sql(pricing.price_of(cfg, cfg.routing.premium_model))
    return cur.execute(
        f"""SELECT date_trunc('{grain}', ts) AS bucket,
                   coalesce(sum(metered_cost_usd), 0) AS metered_usd,
                   coalesce(sum({prim}), 0) AS primary_usd,
                   coalesce(sum({prem}), 0) AS premium_usd
            FROM requests WHERE {clause} GROUP BY 1 ORDER BY 1""",
        params,
    ).df()


def with_gpu_hours(savings: pd.DataFrame, fixed: pd.DataFrame) -> pd.DataFrame:
    """`savings_over_time` with each bucket's GPU-hours (`analytics.fixed_series`): the actual
    total and the savings against the primary model per bucket."""
    fixed = fixed.assign(bucket=pd.to_datetime(fixed["bucket"]).astype("datetime64[us]"))
    out = savings.assign(bucket=pd.to_datetime(savings["bucket"]).astype("datetime64[us]"))
    out = out.merge(fixed, on="bucket", how="outer").fillna(0.0).sort_values("bucket")
    out["actual_usd"] = out["metered_usd"] + out["fixed_usd"]
    out["savings_usd"] = out["primary_usd"] - out["actual_usd"]
    return out.reset_index(drop=True)
