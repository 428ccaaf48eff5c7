"""Commands about single requests and the log as a whole: route, chat, stats, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sophia import config as config_mod
from sophia.cli.common import need_db, opt, out, progress
from sophia.ingest import demo
from sophia.log import analytics, stats, versions
from sophia.log.db import Database, default_path
from sophia.routing import views as reference
from sophia.routing.result import ChatRequest
from sophia.routing.router import Router
from sophia.runtime import Runtime
from sophia.vocab import Source


def cmd_route(args: argparse.Namespace) -> int:
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
        f"complexity: {d.complexity:.2f} (" + ", ".join(f"{k} +{v:g}" for k, v in d.breakdown.items() if v) + ")",
        f"estimated serverless cost: ${d.estimated_cost_usd:.6f}",
    ]
    out(args, d.as_dict(), "\n".join(lines))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
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
        f"cost              ${data['total_cost_usd']:,.4f} (metered ${data['metered_cost_usd']:,.4f} + "
        f"dedicated share ${data['amortized_cost_usd']:,.4f}); ${data['average_cost_per_request']:.6f} a request",
        f"GPU-hours (fixed) ${data['fixed_cost_usd']:,.2f} over {data['first_request']} → {data['last_request']}",
        f"savings           ${data['cost_savings_usd']:,.4f} ({data['cost_savings_percentage']}%) against all on "
        f"{cfg.routing.premium_model}",
        f"errors            {data['error_requests']:,}; failovers {data['failover_requests']:,}",
        f"latency           p50 {data['latency_p50_ms']} ms, p95 {data['latency_p95_ms']} ms",
    ]
    out(args, data, "\n".join(lines))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
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
        table = demo.generate(cfg, args.requests, args.days, args.seed)
        n = demo.write(db, table, version)
    finally:
        db.close()
    out(
        args,
        {"written": n, "source": Source.DEMO, "days": args.days, "db": db.path},
        f"wrote {n:,} demo requests over {args.days} days into {db.path} (source 'demo')",
    )
    return 0
