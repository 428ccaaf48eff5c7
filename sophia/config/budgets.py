"""Budgets and alerts as the configuration declares them: [[budgets]] tables and [alerts].

What a budget covers and how its spend and forecast are computed live in `sophia.budgets`;
here is only what a budget is and the checks a TOML table, a page form or the CLI go through.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sophia.config.checks import ConfigError, check_keys, fail
from sophia.vocab import LIVE_SOURCES, BudgetAction, Period, Tier, words

if TYPE_CHECKING:
    from sophia.config.settings import Config

SCOPE_KINDS = ("global", "tier", "endpoint", "model")


@dataclass(frozen=True)
class Budget:
    name: str
    scope: str  # "global", "tier:serverless", "endpoint:NAME", "model:NAME"
    period: str
    amount_usd: float
    soft_limit: float = 0.8
    action: str = BudgetAction.DOWNGRADE
    sources: tuple[str, ...] = LIVE_SOURCES

    @property
    def scope_kind(self) -> str:
        return self.scope.split(":", 1)[0]

    @property
    def scope_value(self) -> str | None:
        return self.scope.split(":", 1)[1] if ":" in self.scope else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["sources"] = list(self.sources)
        return d


@dataclass(frozen=True)
class AlertSettings:
    timezone: str = "UTC"
    webhook_url_env: str | None = None
    forecast_window_hours: float = 24.0


MAX_AMOUNT_USD = 1e9  # a budget beyond a billion dollars is a typo, and would overflow the displays


def _real(v: object) -> bool:
    """A finite number that is not a TOML boolean."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def parse_budget(raw: dict, cfg: Config, where: str = "budgets") -> Budget:
    """A validated budget from a TOML table, a page form or the CLI."""
    if not isinstance(raw, dict):
        raise fail(where, raw, "a table with name, scope, period, amount_usd")
    check_keys(raw, {"name", "scope", "period", "amount_usd", "soft_limit", "action", "sources"}, f"{where}.")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 80:
        raise fail(f"{where}.name", name, "a name of 1 to 80 characters")
    p = f"budgets.{name}."
    scope = raw.get("scope", "global")
    check_scope(scope, cfg, p + "scope")
    period = raw.get("period", Period.MONTH)
    if period not in words(Period):
        raise fail(p + "period", period, "one of " + ", ".join(words(Period)))
    amount = raw.get("amount_usd")
    if not (_real(amount) and 0 < amount <= MAX_AMOUNT_USD):
        raise fail(p + "amount_usd", amount, f"an amount in USD > 0 and <= {MAX_AMOUNT_USD:,.0f}")
    soft = raw.get("soft_limit", 0.8)
    if not (_real(soft) and 0 < soft <= 1):
        raise fail(p + "soft_limit", soft, "a share of the amount, > 0 and <= 1 (0.8 = 80%)")
    action = raw.get("action", BudgetAction.DOWNGRADE)
    if action not in words(BudgetAction):
        raise fail(p + "action", action, "one of " + ", ".join(words(BudgetAction)))
    sources = raw.get("sources", list(LIVE_SOURCES))
    if not (isinstance(sources, (list, tuple)) and sources and all(isinstance(s, str) and s for s in sources)):
        raise fail(p + "sources", sources, "a non-empty list of sources, e.g. ['playground', 'cli', 'api']")
    return Budget(name.strip(), scope, period, float(amount), float(soft), action, tuple(sources))


def check_scope(scope, cfg: Config, key: str = "scope") -> None:
    allowed = "global, tier:serverless, tier:dedicated, endpoint:NAME or model:NAME"
    if not isinstance(scope, str):
        raise fail(key, scope, allowed)
    kind, _, value = scope.partition(":")
    if kind not in SCOPE_KINDS or (kind == "global") != (value == ""):
        raise fail(key, scope, allowed)
    if kind == "tier" and value not in words(Tier):
        raise fail(key, scope, "tier:serverless or tier:dedicated")
    if kind == "endpoint" and value not in {e.name for e in cfg.endpoints}:
        raise fail(key, scope, "endpoint: one of " + ", ".join(e.name for e in cfg.endpoints))
    served = sorted({m for e in cfg.endpoints for m in e.models})
    if kind == "model" and value not in served:
        raise fail(key, scope, "model: one of " + ", ".join(served))


def parse_budgets(raw: object, cfg: Config) -> tuple[Budget, ...]:
    """The file's [[budgets]] tables, with unique names."""
    if not isinstance(raw, list):
        raise fail("budgets", raw, "[[budgets]] tables")
    budgets = tuple(parse_budget(b, cfg, f"budgets[{i}]") for i, b in enumerate(raw))
    names = [b.name for b in budgets]
    if len(set(names)) != len(names):
        raise fail("budgets.name", sorted(n for n in names if names.count(n) > 1)[0], "unique budget names")
    return budgets


def parse_alerts(raw: dict) -> AlertSettings:
    if not isinstance(raw, dict):
        raise fail("alerts", raw, "an [alerts] table")
    check_keys(raw, {"timezone", "webhook_url_env", "forecast_window_hours"}, "alerts.")
    tz = raw.get("timezone", "UTC")
    zone(tz, "alerts.timezone")
    env = raw.get("webhook_url_env")
    if env is not None and (not isinstance(env, str) or not env.strip()):
        raise fail("alerts.webhook_url_env", env, "the name of an environment variable holding the webhook URL")
    if "webhook_url" in raw:
        raise ConfigError("alerts.webhook_url must not be written in the file: set webhook_url_env instead")
    window = raw.get("forecast_window_hours", 24.0)
    if not (_real(window) and 1 <= window <= 24 * 90):
        raise fail("alerts.forecast_window_hours", window, "a number of hours from 1 to 2160")
    return AlertSettings(tz, env, float(window))


def zone(name: str, key: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise fail(key, name, "an IANA time zone such as 'UTC' or 'Europe/Paris'") from None
