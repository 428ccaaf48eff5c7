"""The `sophia` argument parser and its argument types (argparse stays in the cli layer).

Building the parser imports nothing heavy (no pandas, numpy, pyarrow, duckdb, httpx): it runs
before every command, `sophia --help` included. Every numeric option is checked here, with its
range in the message, before any work.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import math
import operator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sophia.cli.common import CLIError
from sophia.config.budgets import MAX_AMOUNT_USD
from sophia.routing.features import MAX_TOKENS_LIMIT
from sophia.vocab import BudgetAction, Period, Tier, words

MAX_PORT = 65_535
MAX_WORKERS = 64  # server processes on one machine; beyond the cores they only contend

_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}


def _literal(node: ast.expr) -> Any:
    """A literal, or arithmetic on literals (2**32 - 1); ValueError for anything else."""
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_literal(node.left), _literal(node.right))
    return ast.literal_eval(node)


class _Constants:
    """A module's top-level constants read from its source without importing it; any other
    attribute imports the module. The import and demo commands' choices and limits live beside
    their code, and importing that (pandas, pyarrow) would cost every command a second at start-up."""

    def __init__(self, module: str) -> None:
        self._module = module
        self._values: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        if self._values is None:
            self._values = {}
            spec = importlib.util.find_spec(self._module)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
                    target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
                    if isinstance(node, ast.AnnAssign) and node.value is not None:
                        target = node.target
                    if isinstance(target, ast.Name):
                        try:
                            self._values[target.id] = _literal(node.value)
                        except (ValueError, TypeError, SyntaxError):  # not a constant: the module has it
                            self._values.pop(target.id, None)
        return self._values

    def __getattr__(self, name: str) -> Any:
        values = self._read()
        if name in values:
            return values[name]
        return getattr(importlib.import_module(self._module), name)


demo = _Constants("sophia.ingest.demo")
importers = _Constants("sophia.ingest.importers")


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
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= v <= MAX_TOKENS_LIMIT:
        raise argparse.ArgumentTypeError(
            f"{v:,} is not allowed: expected a whole number >= 1 and <= {MAX_TOKENS_LIMIT:,}"
        )
    return v


def _unit(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"{v} is not allowed: expected a number from 0 to 1")
    return v


def _finite(
    text: str, lo: float = -math.inf, hi: float = math.inf, expected: str = "a finite number", lo_open: bool = False
) -> float:
    """A finite number from lo to hi (above lo when lo_open); the error says `expected`."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: expected {expected}") from None
    if not (math.isfinite(v) and (lo < v if lo_open else lo <= v) and v <= hi):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: expected {expected}")
    return v


def _nonneg(text: str) -> float:
    return _finite(text, 0, expected="a finite number >= 0")


def _amount(text: str) -> float:
    """USD of a budget: > 0 and at most MAX_AMOUNT_USD (the bound the configuration checks)."""
    return _finite(text, 0, MAX_AMOUNT_USD, f"an amount in USD > 0 and <= {MAX_AMOUNT_USD:,.0f}", lo_open=True)


def _share(text: str) -> float:
    """A share of a budget's amount: > 0 and <= 1 (0.8 = 80%)."""
    return _finite(text, 0, 1, "a share > 0 and <= 1 (0.8 = 80%)", lo_open=True)


def _bounded(lo: int, hi: int, what: str):
    """A whole number from lo to hi."""

    def check(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v:,} is not allowed: expected {what} from {lo:,} to {hi:,}")
        return v

    return check


MAX_COST_THRESHOLD = 10_000  # USD a request, as the configuration allows


def _cost_threshold(text: str) -> float:
    v = _finite(text)
    if not 0 <= v <= MAX_COST_THRESHOLD:
        raise argparse.ArgumentTypeError(f"{v:g} is not allowed: expected USD from 0 to {MAX_COST_THRESHOLD:,}")
    return v


EARLIEST = datetime(1970, 1, 1)


def _past_instant(text: str) -> datetime:
    """`now`, or an ISO 8601 time from 1970 up to now (UTC, naive)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    if text.strip().lower() == "now":
        return now
    try:
        t = _when(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not `now` or an ISO 8601 time such as 2026-01-31T12:00:00Z"
        ) from None
    if not EARLIEST <= t <= now:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: expected a time from 1970-01-01 up to now, or `now`")
    return t


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
    r.add_argument("--max-tokens", type=_max_tokens, help=f"reply tokens to plan for, 1 to {MAX_TOKENS_LIMIT:,}")

    c = sub.add_parser("chat", parents=[common], help="route a prompt, call the endpoint, record and print the reply")
    c.add_argument("text")
    c.add_argument("--max-tokens", type=_max_tokens, help=f"most reply tokens, 1 to {MAX_TOKENS_LIMIT:,}")
    c.add_argument("--tier", choices=words(Tier))
    c.add_argument("--model", help="force a configured model")

    s = sub.add_parser("stats", parents=[common], help="routing statistics over the log")
    s.add_argument("--source", action="append", help="only this source (repeatable)")

    d = sub.add_parser("demo", parents=[common], help="write realistic demo traffic into the log")
    d.add_argument(
        "--days",
        type=_bounded(1, demo.MAX_DAYS, "a number of days"),
        default=14,
        help=f"days of traffic, 1 to {demo.MAX_DAYS:,} (14)",
    )
    d.add_argument(
        "--requests",
        type=_bounded(1, demo.MAX_REQUESTS, "a number of requests"),
        default=5000,
        help=f"requests written, 1 to {demo.MAX_REQUESTS:,} (5,000)",
    )
    d.add_argument(
        "--seed",
        type=_bounded(0, demo.MAX_SEED, "a seed"),
        default=0,
        help=f"0 to {demo.MAX_SEED:,} (0); the same seed gives the same requests, so running it again adds nothing",
    )
    d.add_argument("--if-empty", action="store_true", help="only when the log holds no request yet")


def _add_traffic(sub, common: argparse.ArgumentParser) -> None:
    i = sub.add_parser("import", parents=[common], help="import traffic from a file into the log")
    i.add_argument("path")
    i.add_argument("--format", required=True, choices=importers.FORMATS)
    i.add_argument(
        "--source",
        help="source name in the log, held by no other file (default: the file's name with a hyphen for the dot, "
        "calls.csv -> calls-csv; -2, -3, ... when another file holds that)",
    )
    i.add_argument(
        "--charge-fleet",
        action="store_true",
        help="charge the configured fleet's GPU-hours over the imported traffic's own span "
        "(default: imported traffic accrues no GPU-hours for its past)",
    )
    i.add_argument("--ts-col")
    i.add_argument("--ts-unit", choices=importers.TS_UNITS, default="iso")
    when = i.add_mutually_exclusive_group()
    when.add_argument(
        "--start",
        type=_when,
        help="ISO time of the first request: numeric times count from it, ISO times move to it "
        "(default: numeric times end now, ISO times stay)",
    )
    when.add_argument(
        "--shift-to",
        type=_past_instant,
        metavar="TIME",
        help="move the whole trace (numeric or ISO times) so that its last request is at TIME: `now` or an "
        "ISO time from 1970-01-01 up to now, e.g. 2026-01-31T12:00:00Z",
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
    rp.add_argument("--complexity-threshold", type=_unit, help="0 to 1 (default: the policy's)")
    rp.add_argument(
        "--cost-threshold",
        type=_cost_threshold,
        help=f"USD a request, 0 to {MAX_COST_THRESHOLD:,} (default: the policy's)",
    )
    rp.add_argument("--sweep", action="store_true", help="print the policy over 101 complexity thresholds")


def _add_budget(sub, common: argparse.ArgumentParser) -> None:
    b = sub.add_parser("budget", parents=[common], help="budgets: spend, state, forecast, alerts; set or delete")
    bsub = b.add_subparsers(dest="budget_cmd", metavar="ACTION", parser_class=_Parser)
    bs = bsub.add_parser("set", parents=[common], help="add or change a budget")
    bs.add_argument("name")
    bs.add_argument("--scope", default="global", help="global, tier:NAME, endpoint:NAME or model:NAME")
    bs.add_argument("--period", choices=words(Period), default=Period.MONTH.value)
    bs.add_argument("--amount", type=_amount, required=True, help=f"USD per period, > 0 and <= {MAX_AMOUNT_USD:,.0f}")
    bs.add_argument(
        "--soft", type=_share, default=0.8, help="soft limit as a share of the amount, > 0 and <= 1 (default 0.8)"
    )
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
    xs.add_argument("--out", help="file to write, in a folder that exists (default: standard output)")
    xr = xsub.add_parser("requests", parents=[common], help="the request log's rows as CSV")
    xr.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
    xr.add_argument("--since", type=_when, help="from this ISO time (UTC)")
    xr.add_argument("--until", type=_when, help="up to this ISO time (UTC)")
    xr.add_argument("--out", help="file to write, in a folder that exists (default: standard output)")


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
    sm.add_argument(
        "--max-gpus", type=float, help="the optimizer's largest fleet, and largest autoscaled pool, 1 to 1,024 (32)"
    )
    sm.add_argument(
        "--reference",
        action="store_true",
        help="the reference deployment's published figures: what they assume, what the simulator computes, "
        "which of them contradict each other",
    )
    au = sm.add_argument_group("autoscaling (any of these simulates the GPU type autoscaled, beside the fleet)")
    au.add_argument("--autoscale-min", type=float, metavar="N", help="instances always running, 0 to 1,024 (5)")
    au.add_argument("--autoscale-max", type=float, metavar="N", help="most instances, 1 to 1,024 (50)")
    au.add_argument(
        "--target-utilization", type=float, metavar="X", help="share of a full batch aimed at, 0.05 to 1 (0.7)"
    )
    au.add_argument(
        "--scale-up-delay",
        type=float,
        metavar="S",
        help="seconds from requesting an instance to serving, 0 to 3,600 (5)",
    )
    au.add_argument(
        "--cool-down",
        type=float,
        metavar="S",
        help="seconds of lower load before releasing instances, 0 to 3,600 (300)",
    )


def _add_serve(sub, common: argparse.ArgumentParser) -> None:
    v = sub.add_parser("serve", parents=[common], help="run the OpenAI-compatible API server")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=_bounded(1, MAX_PORT, "a port"), default=8000, help="1 to 65,535 (default 8000)")
    v.add_argument(
        "--workers",
        type=_bounded(1, MAX_WORKERS, "a number of processes"),
        default=1,
        help=f"server processes sharing the port, 1 to {MAX_WORKERS} (default 1)",
    )
