"""The `sophia` command line. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from sophia import config as config_mod
from sophia.analysis import replay
from sophia.budgets import alerts as alerts_mod
from sophia.budgets import model as bmod
from sophia.budgets import spend
from sophia.ingest import demo, importers
from sophia.log import stats, versions
from sophia.log.db import Database, DatabaseBusy, DatabaseError, default_path
from sophia.routing import views as reference
from sophia.routing.features import RequestError
from sophia.routing.router import ChatRequest, Router
from sophia.runtime import Runtime


class CLIError(Exception):
    """A usage problem, reported in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other error here
        raise CLIError(f"{message} (see `{self.prog} --help`)")


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", default=argparse.SUPPRESS, help="database file (default: $SOPHIA_DB or data/sophia.duckdb)")
    p.add_argument(
        "--config", default=argparse.SUPPRESS, help="configuration file (default: $SOPHIA_CONFIG or sophia.toml)"
    )
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return p


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not allowed: expected a whole number >= 1")
    return v


def _when(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time such as 2026-01-31T12:00:00Z") from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _max_tokens(text: str) -> int:
    from sophia.routing.features import MAX_TOKENS_LIMIT

    v = _positive(text)
    if v > MAX_TOKENS_LIMIT:
        raise argparse.ArgumentTypeError(f"{v:,} is not allowed: expected at most {MAX_TOKENS_LIMIT:,}")
    return v


def _unit(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"{v} is not allowed: expected a number from 0 to 1")
    return v


def _nonneg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v < 0 or v != v:
        raise argparse.ArgumentTypeError(f"{v} is not allowed: expected a number >= 0")
    return v


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = _Parser(prog="sophia", description="Route, record and steer LLM traffic.", parents=[common])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("route", parents=[common], help="show the routing decision for a prompt (nothing is called)")
    r.add_argument("text")
    r.add_argument("--max-tokens", type=_max_tokens)

    c = sub.add_parser("chat", parents=[common], help="route a prompt, call the endpoint, record and print the reply")
    c.add_argument("text")
    c.add_argument("--max-tokens", type=_max_tokens)
    c.add_argument("--tier", choices=("serverless", "dedicated"))
    c.add_argument("--model", help="force a configured model")

    s = sub.add_parser("stats", parents=[common], help="routing statistics over the log")
    s.add_argument("--source", action="append", help="only this source (repeatable)")

    d = sub.add_parser("demo", parents=[common], help="write realistic demo traffic into the log")
    d.add_argument("--days", type=_positive, default=14)
    d.add_argument("--requests", type=_positive, default=5000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--if-empty", action="store_true", help="only when the log holds no request yet")

    i = sub.add_parser("import", parents=[common], help="import traffic from a file into the log")
    i.add_argument("path")
    i.add_argument("--format", required=True, choices=importers.FORMATS)
    i.add_argument("--source", help="source name in the log (default: the file's name)")
    i.add_argument("--ts-col")
    i.add_argument("--ts-unit", choices=importers.TS_UNITS, default="iso")
    i.add_argument(
        "--start", type=_when, help="numeric times are offsets from this ISO time (default: now minus the trace's span)"
    )
    i.add_argument("--prompt-tokens-col")
    i.add_argument("--completion-tokens-col")
    i.add_argument("--prompt-col")
    i.add_argument("--model-col")
    i.add_argument("--latency-col")
    i.add_argument("--exclude", help="JSONL of prompts to leave out (key eval_prompt), e.g. contaminated ones")

    rp = sub.add_parser("replay", parents=[common], help="replay logged or imported traffic under other settings")
    rp.add_argument("--source", action="append", help="only this source (repeatable)")
    rp.add_argument("--since", type=_when, help="from this ISO time (UTC)")
    rp.add_argument("--until", type=_when, help="up to this ISO time (UTC)")
    rp.add_argument("--complexity-threshold", type=_unit)
    rp.add_argument("--cost-threshold", type=_nonneg, help="USD")
    rp.add_argument("--sweep", action="store_true", help="print the policy over 101 complexity thresholds")

    b = sub.add_parser("budget", parents=[common], help="budgets: spend, state, forecast, alerts; set or delete")
    bsub = b.add_subparsers(dest="budget_cmd", metavar="ACTION", parser_class=_Parser)
    bs = bsub.add_parser("set", parents=[common], help="add or change a budget")
    bs.add_argument("name")
    bs.add_argument("--scope", default="global", help="global, tier:NAME, endpoint:NAME or model:NAME")
    bs.add_argument("--period", choices=("day", "week", "month"), default="month")
    bs.add_argument("--amount", type=_nonneg, required=True, help="USD per period")
    bs.add_argument("--soft", type=_unit, default=0.8, help="soft limit as a share of the amount (default 0.8)")
    bs.add_argument("--action", choices=("downgrade", "dedicated-only", "block"), default="downgrade")
    bs.add_argument("--sources", help="comma-separated sources counted (default playground,cli,api)")
    bd = bsub.add_parser("delete", parents=[common], help="remove a budget")
    bd.add_argument("name")

    x = sub.add_parser("export", parents=[common], help="export spend as CSV")
    xsub = x.add_subparsers(dest="export_what", metavar="WHAT", parser_class=_Parser)
    xs = xsub.add_parser("spend", parents=[common], help="spend by period and group")
    xs.add_argument("--by", choices=("day", "week", "month"), default="day")
    xs.add_argument(
        "--group", action="append", default=[], help="tier, endpoint or model (repeatable or comma-separated)"
    )
    xs.add_argument("--source", action="append", help="only this source (repeatable)")
    xs.add_argument("--out", help="file to write (default: standard output)")
    xr = xsub.add_parser("requests", parents=[common], help="the request log's rows as CSV")
    xr.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
    xr.add_argument("--since", type=_when, help="from this ISO time (UTC)")
    xr.add_argument("--until", type=_when, help="up to this ISO time (UTC)")
    xr.add_argument("--out", help="file to write (default: standard output)")

    sm = sub.add_parser(
        "simulate", parents=[common], help="simulate a fleet: monthly cost, utilization, latency, cheapest GPU count"
    )
    traffic = sm.add_mutually_exclusive_group()
    traffic.add_argument("--source", action="append", help="logged or imported traffic of this source (repeatable)")
    traffic.add_argument("--profile", help="synthetic traffic from a profile file (TOML or JSON)")
    sm.add_argument("--scale", type=float, default=1.0, help="times the arrival rate (default 1)")
    sm.add_argument("--gpus", type=int, help="GPUs of the primary dedicated type (default: the configured servers)")
    sm.add_argument("--gpu-hourly", type=float, help="USD per GPU-hour")
    sm.add_argument("--throughput", type=float, help="output tokens/s of one GPU at saturation")
    sm.add_argument("--max-concurrency", type=_positive, help="requests in one GPU's batch")
    sm.add_argument("--slo-ms", type=float, default=500.0, help="target p95 time to first token, ms (default 500)")
    sm.add_argument("--policy", choices=("router", "dedicated-first", "serverless", "dedicated"), default="router")
    sm.add_argument("--optimize", action="store_true", help="find the cheapest GPU count meeting the target")

    v = sub.add_parser("serve", parents=[common], help="run the OpenAI-compatible API server")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=_positive, default=8000)
    v.add_argument("--workers", type=_positive, default=1)
    return p


def _opt(args, name, default=None):
    return getattr(args, name, default)


def _progress(waited: float) -> None:
    if waited > 0.5 and sys.stderr.isatty():
        print(f"\rwaiting for the database (in use by another process) {waited:4.1f} s", end="", file=sys.stderr)


def _out(args, data, text: str) -> None:
    if _opt(args, "json"):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def cmd_route(args) -> int:
    cfg = config_mod.load(_opt(args, "config"))
    path = _opt(args, "db") or default_path()
    if path != ":memory:" and Path(path).exists():  # the policy version live routing uses now
        db = Database(path)
        try:
            with db.cursor(on_wait=_progress) as cur:
                _, cfg = versions.resolve(cur, cfg)
        finally:
            db.close()
    router = Router(cfg, writer=None, backends={})
    d = router.decide(ChatRequest([{"role": "user", "content": args.text}], args.max_tokens))
    out = d.as_dict()
    lines = [
        f"{d.tier} · {d.endpoint} · {d.model}",
        f"reason: {d.reason}",
        f"complexity: {d.complexity:.2f} (" + ", ".join(f"{k} +{v:g}" for k, v in d.breakdown.items() if v) + ")",
        f"estimated serverless cost: ${d.estimated_cost_usd:.6f}",
    ]
    _out(args, out, "\n".join(lines))
    return 0


def cmd_chat(args) -> int:
    rt = Runtime.open(_opt(args, "config"), _opt(args, "db"), on_wait=_progress)
    try:
        req = ChatRequest(
            [{"role": "user", "content": args.text}],
            args.max_tokens,
            force_tier=args.tier,
            force_model=args.model,
            source="cli",
        )
        res = rt.router.chat(req)
    finally:
        rt.close()
    out = reference.chat_response(res)
    if not res.ok:
        out["error"] = res.error
        if _opt(args, "json"):
            print(json.dumps(out, indent=2))
        print(f"sophia: error: {res.error}", file=sys.stderr)
        return 1
    sim = " (simulated)" if res.simulated else ""
    est = " (estimated)" if res.usage_estimated else ""
    _out(
        args,
        out,
        f"{res.text}\n\n— {res.tier} · {res.endpoint}{sim} · {res.model} · {res.reason} · "
        f"${res.cost_usd:.6f} · {res.prompt_tokens}+{res.completion_tokens} tokens{est} · {res.latency_ms:.0f} ms",
    )
    return 0


def _need_db(args) -> str:
    path = _opt(args, "db") or default_path()
    if path != ":memory:" and not Path(path).exists():
        raise CLIError(
            f"no database at {path}: run `sophia demo` to load demo traffic or `sophia chat TEXT` to route a request"
        )
    return path


def cmd_stats(args) -> int:
    cfg = config_mod.load(_opt(args, "config"))
    db = Database(_need_db(args))
    with db.cursor(on_wait=_progress) as cur:
        data = stats.stats(cur, cfg, args.source)
    db.close()
    if not data["total_requests"]:
        _out(args, data, "the log holds no request yet" + (f" from {', '.join(args.source)}" if args.source else ""))
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
    _out(args, data, "\n".join(lines))
    return 0


def cmd_demo(args) -> int:
    cfg = config_mod.load(_opt(args, "config"))
    db = Database(_opt(args, "db"))
    try:
        with db.cursor(on_wait=_progress) as cur:
            version = versions.ensure(cur, cfg)
            existing = cur.execute("SELECT count(*) FROM requests").fetchone()[0]
        if args.if_empty and existing:
            _out(
                args,
                {"written": 0, "existing": existing},
                f"the log already holds {existing:,} requests; no demo traffic written",
            )
            return 0
        table = demo.generate(cfg, args.requests, args.days, args.seed)
        n = demo.write(db, table, version)
    finally:
        db.close()
    _out(
        args,
        {"written": n, "source": "demo", "days": args.days, "db": db.path},
        f"wrote {n:,} demo requests over {args.days} days into {db.path} (source 'demo')",
    )
    return 0


def _exclusions(path: str | None) -> set[str]:
    if not path:
        return set()
    out = set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                obj = json.loads(line)
                out.add(obj["eval_prompt"] if isinstance(obj, dict) else str(obj))
            except (ValueError, KeyError):
                raise CLIError(f"--exclude {path}: line {n} is not a JSON object with eval_prompt") from None
    return out


def cmd_import(args) -> int:
    cfg = config_mod.load(_opt(args, "config"))
    db = Database(_opt(args, "db"))
    mapping = importers.Mapping(
        args.ts_col,
        args.ts_unit,
        args.prompt_tokens_col,
        args.completion_tokens_col,
        args.prompt_col,
        args.model_col,
        args.latency_col,
        args.start,
    )
    tty = sys.stderr.isatty() and not _opt(args, "json")

    def progress(frac: float, msg: str) -> None:
        if tty:
            print(f"\r[{'#' * int(frac * 20):<20}] {msg[:70]:<70}", end="" if frac < 1 else "\n", file=sys.stderr)

    try:
        with db.cursor(on_wait=_progress) as cur:
            version = versions.ensure(cur, cfg)
        report = importers.import_file(
            db,
            cfg,
            args.path,
            args.format,
            source=args.source,
            mapping=mapping,
            exclude_prompts=_exclusions(args.exclude),
            policy_version=version,
            progress=progress,
        )
    finally:
        db.close()
    if _opt(args, "json"):
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.summary())
        importers.print_problems(report)
    return 0


def cmd_replay(args) -> int:
    if args.since and args.until and args.until <= args.since:
        raise CLIError(f"--until {args.until:%Y-%m-%d %H:%M} is not after --since {args.since:%Y-%m-%d %H:%M}")
    base = config_mod.load(_opt(args, "config"))
    db = Database(_need_db(args))
    try:
        with db.cursor(on_wait=_progress) as cur:
            _, cfg = versions.resolve(cur, base)
            traffic = replay.load(cur, args.source, args.since, args.until)
    finally:
        db.close()
    if not traffic.n:
        raise CLIError("no request matches the selection: check --source, --since and --until (see `sophia stats`)")
    changes = {}
    if args.complexity_threshold is not None:
        changes["complexity_threshold"] = args.complexity_threshold
    if args.cost_threshold is not None:
        changes["cost_threshold_usd"] = args.cost_threshold
    cfg = cfg.with_routing(**changes)
    tiers = replay.label_tiers(traffic)
    prepared = replay.prepare(traffic, cfg, tiers)
    if args.sweep:
        sw = replay.sweep(traffic, cfg, tiers=tiers, prepared=prepared)
        out = {"sweep": sw.to_dict(orient="records")}
        if tiers and traffic.labelled.any():
            c = replay.curve(traffic, sw, tiers)
            out |= {
                "weak_quality": c.weak,
                "strong_quality": c.strong,
                "apgr": c.apgr,
                "random_apgr": c.random_apgr,
                "oracle_apgr": c.oracle_apgr,
                "tiers": tiers,
            }
        text = sw[["threshold", "dedicated_share", "metered_cost_usd", "amortized_cost_usd", "quality"]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}"
        )
        if "apgr" in out:
            text += (
                f"\nquality gap recovered (APGR): policy {out['apgr']:.3f}, random {out['random_apgr']:.3f}, "
                f"oracle {out['oracle_apgr']:.3f}"
            )
        _out(args, out, text)
        return 0
    r = replay.replay(traffic, cfg, tiers, prepared).as_dict()
    q = f"{r['quality']:.1%} of {r['labelled_requests']:,} labelled" if r["quality"] is not None else "no labels"
    _out(
        args,
        r,
        "\n".join(
            [
                f"requests     {r['requests']:,}: {r['serverless']:,} serverless, {r['dedicated']:,} dedicated",
                f"cost         metered ${r['metered_cost_usd']:,.4f}, dedicated share ${r['amortized_cost_usd']:,.4f}, "
                f"GPU-hours ${r['fixed_cost_usd']:,.2f}",
                "latency      "
                + ", ".join(f"{k} p50 {v['p50']:.0f} ms / p95 {v['p95']:.0f} ms" for k, v in r["latency_ms"].items()),
                f"quality      {q}",
                f"changed      {r['changed_decisions']:,} decisions differ from the log "
                f"({r['runtime_only_decisions']:,} runtime-only decisions not compared)",
            ]
        ),
    )
    return 0


def cmd_budget(args) -> int:
    if args.budget_cmd is None:
        _need_db(args)
    rt = Runtime.open(_opt(args, "config"), _opt(args, "db"), on_wait=_progress)
    try:
        if args.budget_cmd == "set":
            raw = {
                "name": args.name,
                "scope": args.scope,
                "period": args.period,
                "amount_usd": args.amount,
                "soft_limit": args.soft,
                "action": args.action,
            }
            if args.sources:
                raw["sources"] = [x.strip() for x in args.sources.split(",") if x.strip()]
            new = bmod.parse_budget(raw, rt.cfg)
            kept = [b for b in rt.guard.budgets if b.name != new.name]
            version = rt.save_budgets([*kept, new], origin="cli")
            _out(
                args,
                {"version": version, "budget": new.as_dict()},
                f"budget '{new.name}' saved ({new.scope}, ${new.amount_usd:,.2f} a {new.period}, "
                f"{new.action} at the limit); budgets version {version}",
            )
            return 0
        if args.budget_cmd == "delete":
            kept = [b for b in rt.guard.budgets if b.name != args.name]
            if len(kept) == len(rt.guard.budgets):
                names = ", ".join(b.name for b in rt.guard.budgets) or "none"
                raise CLIError(f"no budget named {args.name!r} (budgets: {names})")
            version = rt.save_budgets(kept, origin="cli")
            _out(args, {"version": version, "deleted": args.name}, f"budget '{args.name}' deleted; version {version}")
            return 0
        rt.guard.check_time()
        rt.check_forecasts()
        rt.notifier.drain()
        forecasts = rt.forecasts()
        with rt.reader() as cur:
            recent = alerts_mod.recent(cur, 20)
        rows = []
        for s in rt.guard.snapshot():
            rows.append(
                {
                    **s,
                    "period_start": s["period_start"].isoformat() + "Z",
                    "period_end": s["period_end"].isoformat() + "Z",
                    "forecast": forecasts[s["name"]].as_dict(),
                }
            )
    finally:
        rt.close()
    alerts_out = [
        {**a, "period_start": a["period_start"].isoformat() + "Z", "created_at": a["created_at"].isoformat() + "Z"}
        for a in recent
    ]
    if _opt(args, "json"):
        print(json.dumps({"budgets": rows, "alerts": alerts_out}, indent=2))
        return 0
    if not rows:
        print("no budget is set: add one with `sophia budget set NAME --amount USD [--scope ...] [--period ...]`")
    for r in rows:
        f = r["forecast"]
        out = f" — runs out {f['runs_out_at']}" if f["runs_out_at"] else ""
        print(
            f"{r['name']:<20} {r['scope']:<28} per {r['period']:<5} ${r['spent_usd']:>10,.2f} of "
            f"${r['amount_usd']:,.2f} ({r['percent']:.0f}%, {r['state']}) reserved ${r['reserved_usd']:,.4f}; "
            f"forecast ${f['projected_usd']:,.2f} [{f['projected_low_usd']:,.2f}–{f['projected_high_usd']:,.2f}]{out}"
        )
    for a in alerts_out[:10]:
        print(f"alert {a['created_at']}: {a['message']}")
    return 0


def cmd_export(args) -> int:
    if args.export_what == "requests":
        return _export_requests(args)
    if args.export_what != "spend":
        raise CLIError("say what to export: `sophia export spend --by day|week|month` or `sophia export requests`")
    cfg = config_mod.load(_opt(args, "config"))
    _, alert_settings = bmod.from_config(cfg)
    groups = [g.strip() for item in args.group for g in item.split(",") if g.strip()]
    db = Database(_need_db(args))
    try:
        with db.cursor(on_wait=_progress) as cur:
            df = spend.spend(cur, cfg, args.by, groups, args.source, alert_settings.timezone)
    finally:
        db.close()
    text = spend.to_csv(df)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(df):,} rows to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _export_requests(args) -> int:
    """Every selected row, streamed batch by batch (no row limit), cells inert, no secrets."""
    from sophia.log import analytics, export

    cfg = config_mod.load(_opt(args, "config"))
    f = analytics.Filters(start=args.since, end=args.until, source=tuple(args.source)).validate()
    db = Database(_need_db(args))
    try:
        with db.cursor(on_wait=_progress) as cur:
            if args.out:
                with open(args.out, "wb") as out:
                    n = export.write_csv(cur, f, out, secrets=export.secret_values(cfg, config_mod.load_secrets()))
                print(f"wrote {n:,} bytes to {args.out}", file=sys.stderr)
            else:
                export.write_csv(
                    cur, f, sys.stdout.buffer, secrets=export.secret_values(cfg, config_mod.load_secrets())
                )
    finally:
        db.close()
    return 0


def cmd_simulate(args) -> int:
    from sophia.sim import simulator

    cfg = config_mod.load(_opt(args, "config"))
    path = _opt(args, "db") or default_path()
    db = None
    if args.profile is None or path == ":memory:" or Path(path).exists():
        db = Database(_need_db(args))
    try:
        data, text = simulator.simulate_command(args, cfg, db, on_wait=_progress)
    finally:
        if db is not None:
            db.close()
    _out(args, data, text)
    return 0


def cmd_serve(args) -> int:
    from sophia.server import app as server  # the ASGI stack is only imported when serving

    return server.run(
        host=args.host, port=args.port, workers=args.workers, config_path=_opt(args, "config"), db_path=_opt(args, "db")
    )


COMMANDS = {
    "route": cmd_route,
    "chat": cmd_chat,
    "stats": cmd_stats,
    "demo": cmd_demo,
    "serve": cmd_serve,
    "import": cmd_import,
    "replay": cmd_replay,
    "budget": cmd_budget,
    "export": cmd_export,
    "simulate": cmd_simulate,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except CLIError as e:
        print(f"sophia: error: {e}", file=sys.stderr)
        return 2
    except (
        config_mod.ConfigError,
        RequestError,
        DatabaseBusy,
        DatabaseError,
        ValueError,
        OSError,
        importers.ImportFailed,
    ) as e:
        print(f"sophia: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sophia: interrupted", file=sys.stderr)
        return 130
