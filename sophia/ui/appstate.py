"""Streamlit-free logic behind the app's pages: time ranges, the playground's conversation,
routing cards, the masked configuration and number formatting.

The pages only lay out widgets and call into here and `analytics`, so all of it is testable
without a browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sophia.config import Config
from sophia.money import pricing
from sophia.vocab import Capability, Status, Tier

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


def session_config(cfg: Config, complexity_threshold: float | None, cost_threshold_usd: float | None) -> Config:
    """The configuration with this session's thresholds (validated like the file's)."""
    changes: dict[str, float] = {}
    if complexity_threshold is not None:
        if not 0 <= complexity_threshold <= 1:
            raise ValueError(f"complexity threshold {complexity_threshold} is not allowed: expected 0 to 1")
        if complexity_threshold != cfg.routing.complexity_threshold:
            changes["complexity_threshold"] = float(complexity_threshold)
    if cost_threshold_usd is not None:
        if cost_threshold_usd < 0:
            raise ValueError(f"cost threshold {cost_threshold_usd} is not allowed: expected a price >= 0")
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


def usd(x: float | None) -> str:
    """Dollars with as many decimals as a small amount needs."""
    if x is None:
        return "—"
    a = abs(x)
    if a == 0:
        return "$0"
    sign = "-" if x < 0 else ""  # "-$5", never "$-5": a leading minus is how a delta reads as a fall
    if a >= 100:
        return f"{sign}${a:,.0f}"
    if a >= 1:
        return f"{sign}${a:,.2f}"
    if a >= 0.01:
        return f"{sign}${a:.4f}"
    return f"{sign}${a:.6f}"


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
