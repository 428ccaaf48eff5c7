"""Routing statistics over the log, computed in DuckDB SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import duckdb

from sophia.config import Config
from sophia.log import fleet_store
from sophia.log.filters import where
from sophia.money import baselines, fleet, pricing
from sophia.money.fleet import FleetPeriod
from sophia.vocab import LIVE_SOURCES, Source, Tier


def _fleet_gpu_seconds_sql(cfg: Config) -> str:
    """GPU-seconds a request would take on the configured fleet pooled (summed throughputs)."""
    eps = cfg.tier_endpoints(Tier.DEDICATED)
    tps = sum(e.throughput_tps for e in eps)
    prefill = sum(e.prefill_tps for e in eps)
    if not eps or tps <= 0:
        return "0"
    out = f"coalesce(completion_tokens, 0) / {float(tps)!r}"
    return out + (f" + coalesce(prompt_tokens, 0) / {float(prefill)!r}" if prefill > 0 else "")


def stats(
    con: duckdb.DuckDBPyConnection,
    cfg: Config,
    sources: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    now: datetime | None = None,
    fleet_periods: Sequence[FleetPeriod] | None = None,
) -> dict:
    """The reference statistics plus cost detail and the named baselines (`money.baselines`).

    `actual_total_usd` is what was paid: metered spend plus the GPU-hours of the fleet while it
    ran in the selection's span (`fixed_cost_usd`, busy or idle). `total_cost_usd` is what the
    requests used: metered plus each dedicated request's share of GPU time. `cost_savings_usd`
    is all on the serverless primary model minus the actual total (negative when routing cost
    more).
    """
    now = now or datetime.now(UTC).replace(tzinfo=None)
    clause, params = where(sources, start, end)
    primary = pricing.price_of(cfg, cfg.routing.serverless_model)
    premium = pricing.price_of(cfg, cfg.routing.premium_model)
    at_primary, at_premium = pricing.at_price_sql(primary), pricing.at_price_sql(premium)
    row = con.execute(
        f"""SELECT count(*),
                   count(*) FILTER (WHERE tier = 'serverless'),
                   count(*) FILTER (WHERE tier = 'dedicated'),
                   coalesce(sum(metered_cost_usd), 0),
                   coalesce(sum(amortized_cost_usd), 0),
                   coalesce(sum({at_primary}), 0),
                   coalesce(sum({at_primary}) FILTER (WHERE tier = 'dedicated'), 0),
                   coalesce(sum({at_premium}), 0),
                   count(*) FILTER (WHERE status <> 'ok'),
                   count(*) FILTER (WHERE reason = 'failover'),
                   quantile_cont(latency_ms, 0.5) FILTER (WHERE status = 'ok'),
                   quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok'),
                   min(ts), max(ts),
                   coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
                   count(*) FILTER (WHERE usage_estimated)
            FROM requests WHERE {clause}""",
        params,
    ).fetchone()
    (total, sl, ded, metered, amortized, at_primary_usd, ded_primary, baseline, errors, failovers, p50, p95) = row[:12]
    first, last, ptok, ctok, estimated = row[12:]
    cost = round(metered + amortized, pricing.DIGITS)
    span_start = start or first
    span_end = end or (last + timedelta(microseconds=1) if last is not None else None)
    fixed = fleet_usd = unserved = 0.0
    if span_start and span_end:
        periods = fleet_store.current(con, cfg, now) if fleet_periods is None else fleet_periods
        fixed = fleet.charged(periods, span_start, span_end, now, sources=sources, live_sources=LIVE_SOURCES)
        fleet_usd = pricing.fixed_cost(cfg.endpoints, span_start, min(span_end, max(now, span_start)))
        hourly = con.execute(
            f"""SELECT sum({_fleet_gpu_seconds_sql(cfg)}) FROM requests WHERE {clause}
                GROUP BY date_trunc('hour', ts)""",
            params,
        ).fetchall()
        unserved = (
            baselines.unserved_share([h[0] or 0.0 for h in hourly]) if cfg.tier_endpoints(Tier.DEDICATED) else 1.0
        )
    b = baselines.compute(
        baselines.Totals(
            requests=total,
            metered_usd=metered,
            fixed_usd=fixed,
            amortized_usd=amortized,
            primary_usd=at_primary_usd,
            premium_usd=baseline,
            dedicated_requests=ded,
            dedicated_primary_usd=ded_primary,
            fleet_usd=fleet_usd,
            fleet_unserved_share=unserved if total else 0.0,
        )
    )
    return {
        "total_requests": total,
        "serverless_requests": sl,
        "dedicated_requests": ded,
        "serverless_percentage": round(100 * sl / total, 2) if total else 0.0,
        "total_cost_usd": cost,
        "metered_cost_usd": round(metered, pricing.DIGITS),
        "amortized_cost_usd": round(amortized, pricing.DIGITS),
        "fixed_cost_usd": round(fixed, pricing.DIGITS),
        "average_cost_per_request": round(cost / total, 9) if total else 0.0,
        **b.as_dict(),
        "verdict": baselines.verdict(b, cfg.routing.serverless_model),
        "primary_model": cfg.routing.serverless_model,
        "premium_model": cfg.routing.premium_model,
        "premium_baseline_usd": round(baseline, pricing.DIGITS),
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
