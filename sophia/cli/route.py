"""Commands about single requests and the log as a whole: route, chat, stats, demo.

Each command imports what it uses when it runs: `sophia route` must not pay for the log's
analytics, the runtime or the demo generator (pandas, pyarrow) at start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sophia import config as config_mod
from sophia.cli.common import need_db, opt, out, progress
from sophia.vocab import Source


def breakdown_text(breakdown: dict[str, float]) -> str:
    """The parts of a complexity score that added something, largest first, for a person to read."""
    parts = sorted(((k, v) for k, v in breakdown.items() if v), key=lambda kv: -kv[1])
    return ", ".join(f"{k} +{v:.2f}" for k, v in parts) if parts else "no part added anything"


def latency_text(p50: float | None, p95: float | None, succeeded: int = 0) -> str:
    """Percentiles of successful requests; none when no request of the selection succeeded, or
    when those that did carry no latency (an imported trace without a latency column)."""
    if p50 is None or p95 is None:
        if succeeded:
            return f"— (none of the {succeeded:,} successful requests has a recorded latency)"
        return "— (no successful request to measure)"
    return f"p50 {p50:,.1f} ms, p95 {p95:,.1f} ms"


def cmd_route(args: argparse.Namespace) -> int:
    from sophia.log import versions
    from sophia.log.db import Database, default_path
    from sophia.routing.result import ChatRequest
    from sophia.routing.router import Router

    cfg = config_mod.load(opt(args, "config"))
    path = opt(args, "db") or default_path()
    if path != ":memory:" and Path(path).exists():  # the policy version live routing uses now
        db = Database(path)
        try:
            with db.cursor(on_wait=progress) as cur:
                _, cfg = versions.resolve(cur, cfg)
        finally:
            db.close()
    router = Router(cfg, writer=None, backends={})
    d = router.decide(ChatRequest([{"role": "user", "content": args.text}], args.max_tokens))
    lines = [
        f"{d.tier} · {d.endpoint} · {d.model}",
        f"reason: {d.reason}",
        f"complexity: {d.complexity:.2f} ({breakdown_text(d.breakdown)})",
        f"estimated serverless cost: ${d.estimated_cost_usd:.6f}",
    ]
    out(args, d.as_dict(), "\n".join(lines))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from sophia.routing import views as reference
    from sophia.routing.result import ChatRequest
    from sophia.runtime import Runtime

    rt = Runtime.open(opt(args, "config"), opt(args, "db"), on_wait=progress)
    try:
        req = ChatRequest(
            [{"role": "user", "content": args.text}],
            args.max_tokens,
            force_tier=args.tier,
            force_model=args.model,
            source=Source.CLI,
        )
        res = rt.router.chat(req)
    finally:
        rt.close()
    data = reference.chat_response(res)
    if not res.ok:
        data["error"] = res.error
        if opt(args, "json"):
            print(json.dumps(data, indent=2))
        print(f"sophia: error: {res.error}", file=sys.stderr)
        return 1
    sim = " (simulated)" if res.simulated else ""
    est = " (estimated)" if res.usage_estimated else ""
    out(
        args,
        data,
        f"{res.text}\n\n— {res.tier} · {res.endpoint}{sim} · {res.model} · {res.reason} · "
        f"${res.cost_usd:.6f} · {res.prompt_tokens}+{res.completion_tokens} tokens{est} · {res.latency_ms:.0f} ms",
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from sophia.log import stats
    from sophia.log.db import Database
    from sophia.money import baselines
    from sophia.money.format import usd

    cfg = config_mod.load(opt(args, "config"))
    db = Database(need_db(args))
    with db.cursor(on_wait=progress) as cur:
        data = stats.stats(cur, cfg, args.source)
    db.close()
    if not data["total_requests"]:
        out(args, data, "the log holds no request yet" + (f" from {', '.join(args.source)}" if args.source else ""))
        return 0
    lines = [
        f"requests          {data['total_requests']:,} ({data['serverless_requests']:,} serverless, "
        f"{data['dedicated_requests']:,} dedicated; {data['serverless_percentage']}% serverless)",
        f"cost              {usd(data['total_cost_usd'])} (metered {usd(data['metered_cost_usd'])} + "
        f"dedicated share {usd(data['amortized_cost_usd'])}); {usd(data['average_cost_per_request'])} a request",
        f"GPU-hours (fixed) {usd(data['fixed_cost_usd'])} while the fleet ran, "
        f"{data['first_request'][:16].replace('T', ' ')} → {data['last_request'][:16].replace('T', ' ')} UTC",
        f"actual total      {usd(data['actual_total_usd'])} (metered + GPU-hours)",
        f"baselines         all on {data['primary_model']} {usd(data['all_serverless_primary_usd'])} · "
        f"all on {data['premium_model']} {usd(data['all_premium_usd'])} · all on the dedicated fleet "
        f"{usd(data['all_dedicated_usd'])}"
        + (
            f" ({data['all_dedicated_unserved_share']:.0%} beyond its throughput)"
            if data["all_dedicated_unserved_share"]
            else ""
        ),
        f"savings           {usd(data['cost_savings_usd'])} ({data['cost_savings_percentage']:,.1f}%) against all on "
        f"{data['primary_model']}: {baselines.FORMULA}",
    ]
    lines += [f"                  {data['verdict']}"] if data["verdict"] else []
    lines += [
        f"errors            {data['error_requests']:,}; failovers {data['failover_requests']:,}",
        "latency           "
        + latency_text(data["latency_p50_ms"], data["latency_p95_ms"], data["total_requests"] - data["error_requests"]),
    ]
    out(args, data, "\n".join(lines))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sophia.ingest import demo
    from sophia.log import analytics, versions
    from sophia.log.db import Database

    cfg = config_mod.load(opt(args, "config"))
    db = Database(opt(args, "db"))
    try:
        with db.cursor(on_wait=progress) as cur:
            version = versions.ensure(cur, cfg)
            existing = analytics.bounds(cur)[0]
        if args.if_empty and existing:
            out(
                args,
                {"written": 0, "existing": existing},
                f"the log already holds {existing:,} requests; no demo traffic written",
            )
            return 0
        n = sum(demo.write(db, part, version, cfg) for part in demo.batches(cfg, args.requests, args.days, args.seed))
    finally:
        db.close()
    out(
        args,
        {"written": n, "source": Source.DEMO, "days": args.days, "db": db.path},
        demo.summary(n, args.requests, args.seed, args.days, db.path),
    )
    return 0
