"""The `sophia` argument parser and its argument types (argparse stays in the cli layer)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from sophia.cli.common import CLIError
from sophia.ingest import importers
from sophia.routing.features import MAX_TOKENS_LIMIT
from sophia.vocab import BudgetAction, Period, Tier, words


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


# --- argument types -----------------------------------------------------------------------


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


# --- the commands -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = _Parser(prog="sophia", description="Route, record and steer LLM traffic.", parents=[common])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_routing(sub, common)
    _add_traffic(sub, common)
    _add_budget(sub, common)
    _add_export(sub, common)
    _add_simulate(sub, common)
    _add_serve(sub, common)
    return p


def _add_routing(sub, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser("route", parents=[common], help="show the routing decision for a prompt (nothing is called)")
    r.add_argument("text")
    r.add_argument("--max-tokens", type=_max_tokens)

    c = sub.add_parser("chat", parents=[common], help="route a prompt, call the endpoint, record and print the reply")
    c.add_argument("text")
    c.add_argument("--max-tokens", type=_max_tokens)
    c.add_argument("--tier", choices=words(Tier))
    c.add_argument("--model", help="force a configured model")

    s = sub.add_parser("stats", parents=[common], help="routing statistics over the log")
    s.add_argument("--source", action="append", help="only this source (repeatable)")

    d = sub.add_parser("demo", parents=[common], help="write realistic demo traffic into the log")
    d.add_argument("--days", type=_positive, default=14)
    d.add_argument("--requests", type=_positive, default=5000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--if-empty", action="store_true", help="only when the log holds no request yet")


def _add_traffic(sub, common: argparse.ArgumentParser) -> None:
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


def _add_budget(sub, common: argparse.ArgumentParser) -> None:
    b = sub.add_parser("budget", parents=[common], help="budgets: spend, state, forecast, alerts; set or delete")
    bsub = b.add_subparsers(dest="budget_cmd", metavar="ACTION", parser_class=_Parser)
    bs = bsub.add_parser("set", parents=[common], help="add or change a budget")
    bs.add_argument("name")
    bs.add_argument("--scope", default="global", help="global, tier:NAME, endpoint:NAME or model:NAME")
    bs.add_argument("--period", choices=words(Period), default=Period.MONTH.value)
    bs.add_argument("--amount", type=_nonneg, required=True, help="USD per period")
    bs.add_argument("--soft", type=_unit, default=0.8, help="soft limit as a share of the amount (default 0.8)")
    bs.add_argument("--action", choices=words(BudgetAction), default=BudgetAction.DOWNGRADE.value)
    bs.add_argument("--sources", help="comma-separated sources counted (default playground,cli,api)")
    bd = bsub.add_parser("delete", parents=[common], help="remove a budget")
    bd.add_argument("name")


def _add_export(sub, common: argparse.ArgumentParser) -> None:
    x = sub.add_parser("export", parents=[common], help="export spend as CSV")
    xsub = x.add_subparsers(dest="export_what", metavar="WHAT", parser_class=_Parser)
    xs = xsub.add_parser("spend", parents=[common], help="spend by period and group")
    xs.add_argument("--by", choices=words(Period), default=Period.DAY.value)
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


def _add_simulate(sub, common: argparse.ArgumentParser) -> None:
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
    sm.add_argument("--policy", choices=("router", "dedicated-first", *words(Tier)), default="router")
    sm.add_argument("--optimize", action="store_true", help="find the cheapest GPU count meeting the target")


def _add_serve(sub, common: argparse.ArgumentParser) -> None:
    v = sub.add_parser("serve", parents=[common], help="run the OpenAI-compatible API server")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=_positive, default=8000)
    v.add_argument("--workers", type=_positive, default=1)
