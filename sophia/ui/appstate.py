"""Streamlit-free logic behind the app's pages: time ranges, the playground's conversation,
routing cards, the masked configuration and number formatting.

The pages only lay out widgets and call into here and `analytics`, so all of it is testable
without a browser.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any

from sophia.config import Config, RoutingSettings
from sophia.money import pricing
from sophia.money.format import usd  # noqa: F401  (pages format money here)
from sophia.routing.features import MAX_TOKENS_LIMIT
from sophia.routing.policy import Decision
from sophia.vocab import Capability, Status, Tier, words

# --- time ranges ------------------------------------------------------------------------

RANGES: dict[str, timedelta | None] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Last 90 days": timedelta(days=90),
    "All time": None,
    "Custom": None,
}
DEFAULT_RANGE = "Last 7 days"
EXPORT_MAX_ROWS = 250_000  # a download is held in the app's memory: keep it well under 1 GB
DEMO_REQUESTS, DEMO_DAYS = 5_000, 14


def resolve_range(
    preset: str, now: datetime, custom: Sequence[date] | None = None
) -> tuple[datetime | None, datetime | None]:
    """[start, end) in naive UTC for a preset, or for a custom pair of dates (both inclusive).

    Raises ValueError with a message for the user when the choice cannot be used.
    """
    if preset not in RANGES:
        raise ValueError(f"time range {preset!r} is not one of: {', '.join(RANGES)}")
    if preset == "All time":
        return None, None
    if preset == "Custom":
        dates = [d for d in (custom or ()) if d is not None]
        if len(dates) != 2:
            raise ValueError("pick both a first and a last day for the custom range")
        first, last = dates
        if last < first:
            raise ValueError(f"the last day ({last}) is before the first day ({first}): swap them")
        return datetime.combine(first, time.min), datetime.combine(last + timedelta(days=1), time.min)
    # Round the end up to the next minute so that reruns within a minute share cache entries.
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - RANGES[preset], end


# --- the playground ---------------------------------------------------------------------


@dataclass
class Turn:
    """One message of the playground's conversation; assistant turns carry their routing."""

    role: str
    content: str
    routing: dict | None = None
    error: str | None = None


def prompt_messages(turns: Sequence[Turn]) -> list[dict]:
    """The conversation as chat messages: every turn except failed replies."""
    return [{"role": t.role, "content": t.content} for t in turns if t.error is None and t.content]


def _routing_range(name: str, fallback_hi: float) -> tuple[float, float]:
    """A routing setting's allowed range, as the configuration's own rule for it declares."""
    rule = next(f.metadata["rule"] for f in fields(RoutingSettings) if f.name == name)
    return float(rule.lo), float(rule.hi if rule.hi is not None else fallback_hi)


COMPLEXITY_RANGE = _routing_range("complexity_threshold", 1.0)
COST_RANGE = _routing_range("cost_threshold_usd", 10_000.0)
MAX_TOKENS_RANGE = (1, MAX_TOKENS_LIMIT)


def _number(v: object) -> bool:
    """A finite number that is not a boolean."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def session_config(cfg: Config, complexity_threshold: float | None, cost_threshold_usd: float | None) -> Config:
    """The configuration with this session's thresholds (validated like the file's)."""
    changes: dict[str, float] = {}
    if complexity_threshold is not None:
        lo, hi = COMPLEXITY_RANGE
        if not (_number(complexity_threshold) and lo <= complexity_threshold <= hi):
            raise ValueError(f"complexity threshold {complexity_threshold!r} is not allowed: expected {lo:g} to {hi:g}")
        if complexity_threshold != cfg.routing.complexity_threshold:
            changes["complexity_threshold"] = float(complexity_threshold)
    if cost_threshold_usd is not None:
        lo, hi = COST_RANGE
        if not (_number(cost_threshold_usd) and lo <= cost_threshold_usd <= hi):
            raise ValueError(
                f"cost threshold {cost_threshold_usd!r} is not allowed: expected a price >= {lo:g} and <= {hi:,.0f} USD"
            )
        if cost_threshold_usd != cfg.routing.cost_threshold_usd:
            changes["cost_threshold_usd"] = float(cost_threshold_usd)
    return cfg.with_routing(**changes) if changes else cfg


def model_choices(cfg: Config) -> list[str]:
    """Every chat model some endpoint serves, serverless first."""
    out: list[str] = []
    for tier in (Tier.SERVERLESS, Tier.DEDICATED):
        for e in cfg.tier_endpoints(tier):
            out += [m for m in e.models if m not in out and Capability.CHAT in cfg.capabilities(e, m)]
    return out


def breakdown_text(breakdown: Mapping[str, float]) -> str:
    """'length +0.1 · keywords:analysis +0.2' (parts that added nothing are left out)."""
    parts = [f"{k} +{v:g}" for k, v in breakdown.items() if v]
    return " · ".join(parts) if parts else "nothing added to the score"


def error_message(card: Mapping[str, Any]) -> str:
    """A readable sentence for a failed request."""
    status = card.get("status")
    err = card.get("error") or "the request failed"
    if status == Status.REFUSED:
        return f"Refused: {err}"
    if status == Status.CANCELLED:
        return "The reply was interrupted before it ended; what arrived is kept."
    return f"The request failed: {err}"


def markdown_safe(text: str) -> str:
    """Text as Markdown shows it literally: a `$` would otherwise start LaTeX ("$5 and $10")."""
    return text.replace("$", "\\$")


def shown(texts: Iterable[str], into: list[str]) -> Iterator[str]:
    """A reply's text as it streams, made Markdown-safe for display; the raw text goes to `into`."""
    for t in texts:
        into.append(t)
        yield markdown_safe(t)


# --- the playground's controls ------------------------------------------------------------

AUTO = "Auto"  # the tier or model choice that lets the policy decide
TIER, MODEL, MAX_TOKENS, COMPLEXITY, COST = "pg_tier", "pg_model", "pg_max_tokens", "pg_complexity", "pg_cost"


@dataclass(frozen=True)
class Controls:
    """This session's playground settings, checked: what the router is given."""

    tier: str | None  # None: the policy decides
    model: str | None
    max_tokens: int | None  # None: the configuration's default
    complexity_threshold: float
    cost_threshold_usd: float

    def forced(self) -> bool:
        return self.tier is not None or self.model is not None or self.max_tokens is not None


def control_defaults(cfg: Config) -> dict[str, Any]:
    """Every control of the playground at its default (session-state key -> value)."""
    return {
        TIER: AUTO,
        MODEL: AUTO,
        MAX_TOKENS: None,
        COMPLEXITY: cfg.routing.complexity_threshold,
        COST: cfg.routing.cost_threshold_usd,
    }


def max_tokens_help(cfg: Config) -> str:
    lo, hi = MAX_TOKENS_RANGE
    return (
        f"A whole number from {lo:,} to {hi:,}; empty: the configuration's default "
        f"({cfg.routing.default_max_tokens:,}). Over {cfg.scorer.max_tokens_over:,} adds "
        f"{cfg.scorer.max_tokens_weight:g} to the complexity score."
    )


def complexity_help(cfg: Config) -> str:
    lo, hi = COMPLEXITY_RANGE
    return (
        f"From {lo:g} to {hi:g} (the configuration: {cfg.routing.complexity_threshold:.2f}). "
        "Scores above it go to a dedicated GPU (high-complexity)."
    )


def cost_help(cfg: Config) -> str:
    lo, hi = COST_RANGE
    return (
        f"USD, from ${lo:,.0f} to ${hi:,.0f} (the configuration: {usd(cfg.routing.cost_threshold_usd)}). "
        "An estimated serverless cost above it goes to a dedicated GPU (cost-optimization)."
    )


def _check_max_tokens(v: object, cfg: Config) -> int | None:
    if v is None:
        return None
    lo, hi = MAX_TOKENS_RANGE
    if not (_number(v) and v == int(v) and lo <= v <= hi):
        raise ValueError(
            f"max_tokens {v!r} is not allowed: expected a whole number from {lo:,} to {hi:,}, "
            f"or empty for the default ({cfg.routing.default_max_tokens:,})"
        )
    return int(v)


def _check_threshold(v: object, cfg: Config, key: str) -> float:
    """A session threshold, checked by the same rule as `session_config` (None is not one)."""
    if v is None:
        raise ValueError(f"{'complexity' if key == COMPLEXITY else 'cost'} threshold is empty: expected a number")
    if key == COMPLEXITY:
        session_config(cfg, v, None)
    else:
        session_config(cfg, None, v)
    return float(v)


def _check_choice(v: object, options: Sequence[str], what: str) -> str | None:
    if v not in options:
        raise ValueError(f"{what} {v!r} is not one of: {', '.join(options)}")
    return None if v == AUTO else str(v)


def tier_options() -> list[str]:
    return [AUTO, *words(Tier)]


def model_options(cfg: Config) -> list[str]:
    return [AUTO, *model_choices(cfg)]


def _checks(cfg: Config) -> dict[str, Any]:
    tiers, models = tier_options(), model_options(cfg)
    return {
        TIER: lambda v: _check_choice(v, tiers, "tier"),
        MODEL: lambda v: _check_choice(v, models, "model"),
        MAX_TOKENS: lambda v: _check_max_tokens(v, cfg),
        COMPLEXITY: lambda v: _check_threshold(v, cfg, COMPLEXITY),
        COST: lambda v: _check_threshold(v, cfg, COST),
    }


def repair_controls(state: MutableMapping[str, Any], cfg: Config) -> list[str]:
    """Put every control whose value cannot be used (not a number, out of range, no longer a
    choice) back to its default, before the widgets are drawn; what was wrong, one line each."""
    defaults, problems = control_defaults(cfg), []
    for key, check in _checks(cfg).items():
        if key not in state:
            state[key] = defaults[key]
            continue
        try:
            check(state[key])
        except (ValueError, TypeError) as e:
            problems.append(f"{e}; it is back to its default")
            state[key] = defaults[key]
    return problems


def read_controls(values: Mapping[str, Any], cfg: Config) -> Controls:
    """The controls' values, checked; ValueError with a one-line message when one cannot be used."""
    checks = _checks(cfg)
    tier, model = checks[TIER](values[TIER]), checks[MODEL](values[MODEL])
    max_tokens = checks[MAX_TOKENS](values[MAX_TOKENS])
    complexity, cost = checks[COMPLEXITY](values[COMPLEXITY]), checks[COST](values[COST])
    if tier and model:
        served_by = cfg.endpoint_for_model(model).tier
        if served_by != tier:
            raise ValueError(
                f"model {model} is served by the {served_by} tier, not {tier}: set Tier to Auto or {served_by}, "
                "or pick a model of that tier"
            )
    return Controls(tier, model, max_tokens, complexity, cost)


# --- the playground's suggestions -----------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    title: str  # what the prompt shows about routing
    prompt: str


SUGGESTIONS = (
    Suggestion("A short question", "What is the capital of Australia?"),
    Suggestion("Keywords add to the score", "Analyze the quarterly sales figures and generate a report."),
    Suggestion("High complexity", "Remember the context of this session and analyze the training data."),
)


def route_label(d: Decision | None) -> str:
    """Where a request goes, in a few words: 'dedicated · high-complexity · score 0.80'."""
    if d is None:
        return "cannot be routed with these settings"
    return f"{d.tier} · {d.reason} · score {d.complexity:.2f}"


# --- the sidebar and the endpoints page ---------------------------------------------------


@dataclass
class AppInfo:
    config_path: str
    db_path: str
    endpoints: int
    simulated: list[str] = field(default_factory=list)
    real: list[str] = field(default_factory=list)

    @property
    def backends(self) -> str:
        if not self.real:
            return "simulated"
        if not self.simulated:
            return "real"
        return "mixed"


def app_info(cfg: Config, db_path: str) -> AppInfo:
    return AppInfo(
        config_path=cfg.path or "(built in)",
        db_path=db_path,
        endpoints=len(cfg.endpoints),
        simulated=[e.name for e in cfg.endpoints if e.simulated],
        real=[e.name for e in cfg.endpoints if not e.simulated],
    )


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"((?:key|token|secret|password|sig)[^=&]*=)[^&]+", re.I)


def mask_url(url: str | None) -> str | None:
    """A URL without credentials (user:pass@, ?key=...)."""
    if not url:
        return url
    url = _URL_CREDENTIALS.sub("***@", url)
    return _SECRET_QUERY.sub(r"\1***", url)


def masked_config(cfg: Config, env: Mapping[str, str] | None = None) -> dict:
    """The active configuration for display: key names and whether they are set, never values."""
    env = os.environ if env is None else env
    endpoints = []
    for e in cfg.endpoints:
        d = asdict(e)
        d["base_url"] = mask_url(e.base_url)
        if e.api_key_env:
            d["api_key"] = "set (hidden)" if env.get(e.api_key_env) else f"not set: export {e.api_key_env}=..."
        endpoints.append(d)
    return {
        "config_file": cfg.path,
        "privacy": {"store_prompts": cfg.store_prompts},
        "routing": asdict(cfg.routing),
        "scorer": asdict(cfg.scorer),
        "failover": asdict(cfg.failover),
        "cache": asdict(cfg.cache),
        "log": {"flush_interval_s": cfg.flush_interval_s},
        "endpoints": endpoints,
        "models": [asdict(m) for m in cfg.models],
        "fixed_cost_per_hour_usd": pricing.hourly_fixed(cfg.endpoints),
    }


# --- formatting -------------------------------------------------------------------------


def ms(x: float | None) -> str:
    if x is None or x != x:  # None or NaN
        return "—"
    return f"{x / 1000:.2f} s" if x >= 10_000 else f"{x:,.0f} ms"


def pct(x: float | None, digits: int = 1) -> str:
    """A share as a percentage; a tiny non-zero share is shown as such, not as 0."""
    if x is None or x != x:
        return "—"
    floor = 10**-digits
    if 0 < 100 * x < floor:
        return f"<{floor:g}%"
    return f"{100 * x:.{digits}f}%"
