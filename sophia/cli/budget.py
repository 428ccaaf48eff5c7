"""`sophia budget`: show spend, state, forecast and alerts; set or delete a budget."""

from __future__ import annotations

import argparse
import json

from sophia.budgets import alerts as alerts_mod
from sophia.budgets import model as bmod
from sophia.cli.common import CLIError, need_db, opt, out, progress
from sophia.money.format import usd
from sophia.runtime import Runtime


def _minute(iso: str) -> str:
    """An ISO UTC time as people read it: to the minute."""
    return iso[:16].replace("T", " ") + " UTC"


def cmd_budget(args: argparse.Namespace) -> int:
    if args.budget_cmd is None:
        need_db(args)
    rt = Runtime.open(opt(args, "config"), opt(args, "db"), on_wait=progress)
    try:
        if args.budget_cmd == "set":
            return _set(args, rt)
        if args.budget_cmd == "delete":
            return _delete(args, rt)
        rows, recent = _state(rt)
    finally:
        rt.close()
    _print_state(args, rows, recent)
    return 0


def _set(args: argparse.Namespace, rt: Runtime) -> int:
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
    out(
        args,
        {"version": version, "budget": new.as_dict()},
        f"budget '{new.name}' saved ({new.scope}, {usd(new.amount_usd)} a {new.period}, "
        f"{new.action} at the limit); budgets version {version}",
    )
    return 0


def _delete(args: argparse.Namespace, rt: Runtime) -> int:
    kept = [b for b in rt.guard.budgets if b.name != args.name]
    if len(kept) == len(rt.guard.budgets):
        names = ", ".join(b.name for b in rt.guard.budgets) or "none"
        raise CLIError(f"no budget named {args.name!r} (budgets: {names})")
    version = rt.save_budgets(kept, origin="cli")
    out(args, {"version": version, "deleted": args.name}, f"budget '{args.name}' deleted; version {version}")
    return 0


def _state(rt: Runtime) -> tuple[list[dict], list[dict]]:
    """Every budget's state with its forecast, and the recent alerts, times as ISO UTC."""
    rt.guard.check_time()
    rt.check_forecasts()
    rt.notifier.drain()
    forecasts = rt.forecasts()
    with rt.reader() as cur:
        recent = alerts_mod.recent(cur, 20)
    rows = [
        {
            **s,
            "period_start": s["period_start"].isoformat() + "Z",
            "period_end": s["period_end"].isoformat() + "Z",
            "forecast": forecasts[s["name"]].as_dict(),
        }
        for s in rt.guard.snapshot()
    ]
    alerts = [
        {**a, "period_start": a["period_start"].isoformat() + "Z", "created_at": a["created_at"].isoformat() + "Z"}
        for a in recent
    ]
    return rows, alerts


def _print_state(args: argparse.Namespace, rows: list[dict], alerts: list[dict]) -> None:
    if opt(args, "json"):
        print(json.dumps({"budgets": rows, "alerts": alerts}, indent=2))
        return
    if not rows:
        print("no budget is set: add one with `sophia budget set NAME --amount USD [--scope ...] [--period ...]`")
    for r in rows:
        f = r["forecast"]
        runs_out = f" — runs out {_minute(f['runs_out_at'])}" if f["runs_out_at"] else ""
        print(
            f"{r['name']:<20} {r['scope']:<28} per {r['period']:<5} {usd(r['spent_usd']):>10} of "
            f"{usd(r['amount_usd'])} ({r['percent']:.0f}%, {r['state']}) reserved {usd(r['reserved_usd'])}; "
            f"forecast at period end {usd(f['projected_usd'])} (likely range {usd(f['projected_low_usd'])} to "
            f"{usd(f['projected_high_usd'])}){runs_out}"
        )
    for a in alerts[:10]:
        print(f"alert {_minute(a['created_at'])}: {a['message']}")
