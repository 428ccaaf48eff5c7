"""Routing statistics over the log, computed in DuckDB SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb

from sophia.config import Config
from sophia.log.filters import where
from sophia.money import pricing
from sophia.vocab import Source


def stats(
    con: duckdb.DuckDBPyConnection,
    cfg: Config,
    sources: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict:
    """The reference statistics plus cost detail.

    `total_cost_usd` is what the requests cost: metered serverless spend plus each dedicated
    request's share of GPU time. `fixed_cost_usd` is every GPU-hour over the selection's span,
    busy or idle. Savings compare with sending every request to the serverless premium model.
    """
    clause, params = where(sources, start, end)
    premium = pricing.price_of(cfg, cfg.routing.premium_model)
    row = con.execute(
        f"""SELECT count(*),
                   count(*) FILTER (WHERE tier = 'serverless'),
                   count(*) FILTER (WHERE tier = 'dedicated'),
                   coalesce(sum(metered_cost_usd), 0),
                   coalesce(sum(amortized_cost_usd), 0),
                   coalesce(sum({pricing.metered_sql()}), 0),
                   count(*) FILTER (WHERE status <> 'ok'),
                   count(*) FILTER (WHERE reason = 'failover'),
                   quantile_cont(latency_ms, 0.5) FILTER (WHERE status = 'ok'),
                   quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok'),
                   min(ts), max(ts),
                   coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
                   count(*) FILTER (WHERE usage_estimated)
            FROM requests WHERE {clause}""",
        [premium.input_per_mtok, premium.output_per_mtok, *params],
    ).fetchone()
    (total, sl, ded, metered, amortized, baseline, errors, failovers, p50, p95, first, last, ptok, ctok, estimated) = (
        row
    )
    cost = round(metered + amortized, 6)
    span_start = start or first
    span_end = end or last
    fixed = pricing.fixed_cost(cfg.endpoints, span_start, span_end) if span_start and span_end else 0.0
    return {
        "total_requests": total,
        "serverless_requests": sl,
        "dedicated_requests": ded,
        "serverless_percentage": round(100 * sl / total, 2) if total else 0.0,
        "total_cost_usd": cost,
        "metered_cost_usd": round(metered, 6),
        "amortized_cost_usd": round(amortized, 6),
        "fixed_cost_usd": round(fixed, 6),
        "average_cost_per_request": round(cost / total, 9) if total else 0.0,
        "premium_baseline_usd": round(baseline, 6),
        "cost_savings_usd": round(baseline - cost, 6),
        "cost_savings_percentage": round(100 * (baseline - cost) / baseline, 2) if baseline else 0.0,
        "error_requests": errors,
        "failover_requests": failovers,
        "estimated_usage_requests": estimated,
        "prompt_tokens": ptok,
        "completion_tokens": ctok,
        "latency_p50_ms": round(p50, 1) if p50 is not None else None,
        "latency_p95_ms": round(p95, 1) if p95 is not None else None,
        "first_request": first.isoformat() if first else None,
        "last_request": last.isoformat() if last else None,
    }


def by_api_key(con: duckdb.DuckDBPyConnection, sources: Sequence[str] | None = None) -> list[tuple]:
    """The API's traffic per caller key: (api_key_id, requests, cost USD, serverless, dedicated)."""
    clause, params = where(sources, facets={"source": (Source.API,)})
    return con.execute(
        f"""SELECT api_key_id, count(*), coalesce(sum(metered_cost_usd + amortized_cost_usd), 0),
                   count(*) FILTER (WHERE tier = 'serverless'), count(*) FILTER (WHERE tier = 'dedicated')
            FROM requests WHERE {clause} GROUP BY 1 ORDER BY 1 NULLS FIRST""",
        params,
    ).fetchall()


def sources(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT source FROM requests ORDER BY 1").fetchall()]
