"""Budgets: what they are, which spend they cover, their periods, and their forecasts.

A budget's spend in a period is the metered (per-token) spend of the requests in its scope
plus the GPU-hours of the dedicated endpoints in its scope, which accrue hour by hour
(each started hour is charged in full) whether the GPUs are busy or idle. Amortized
per-request shares are not added on top: they are the same GPU-hours seen per request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from sophia.config import Config, ConfigError
from sophia.money import pricing

PERIODS = ("day", "week", "month")
ACTIONS = ("downgrade", "dedicated-only", "block")
SCOPE_KINDS = ("global", "tier", "endpoint", "model")
LIVE_SOURCES = ("playground", "cli", "api")
STATES = ("ok", "soft", "hard")


@dataclass(frozen=True)
class Budget:
    name: str
    scope: str  # "global", "tier:serverless", "endpoint:NAME", "model:NAME"
    period: str
    amount_usd: float
    soft_limit: float = 0.8
    action: str = "downgrade"
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


# --- validation ---------------------------------------------------------------------------


def _fail(key: str, value, allowed: str) -> ConfigError:
    return ConfigError(f"{key} = {value!r} is not allowed: expected {allowed}")


def parse_budget(raw: dict, cfg: Config, where: str = "budgets") -> Budget:
    """A validated budget from a TOML table, a page form or the CLI."""
    if not isinstance(raw, dict):
        raise _fail(where, raw, "a table with name, scope, period, amount_usd")
    known = {"name", "scope", "period", "amount_usd", "soft_limit", "action", "sources"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}.{key} is not a known setting: expected one of {', '.join(sorted(known))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 80:
        raise _fail(f"{where}.name", name, "a name of 1 to 80 characters")
    p = f"budgets.{name}."
    scope = raw.get("scope", "global")
    check_scope(scope, cfg, p + "scope")
    period = raw.get("period", "month")
    if period not in PERIODS:
        raise _fail(p + "period", period, "one of " + ", ".join(PERIODS))
    amount = raw.get("amount_usd")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount <= 0:
        raise _fail(p + "amount_usd", amount, "an amount in USD > 0")
    soft = raw.get("soft_limit", 0.8)
    if isinstance(soft, bool) or not isinstance(soft, (int, float)) or not 0 < soft <= 1:
        raise _fail(p + "soft_limit", soft, "a share of the amount, > 0 and <= 1 (0.8 = 80%)")
    action = raw.get("action", "downgrade")
    if action not in ACTIONS:
        raise _fail(p + "action", action, "one of " + ", ".join(ACTIONS))
    sources = raw.get("sources", list(LIVE_SOURCES))
    if not (isinstance(sources, (list, tuple)) and sources and all(isinstance(s, str) and s for s in sources)):
        raise _fail(p + "sources", sources, "a non-empty list of sources, e.g. ['playground', 'cli', 'api']")
    return Budget(name.strip(), scope, period, float(amount), float(soft), action, tuple(sources))


def check_scope(scope, cfg: Config, key: str = "scope") -> None:
    allowed = "global, tier:serverless, tier:dedicated, endpoint:NAME or model:NAME"
    if not isinstance(scope, str):
        raise _fail(key, scope, allowed)
    kind, _, value = scope.partition(":")
    if kind not in SCOPE_KINDS or (kind == "global") != (value == ""):
        raise _fail(key, scope, allowed)
    if kind == "tier" and value not in ("serverless", "dedicated"):
        raise _fail(key, scope, "tier:serverless or tier:dedicated")
    if kind == "endpoint" and value not in {e.name for e in cfg.endpoints}:
        raise _fail(key, scope, "endpoint: one of " + ", ".join(e.name for e in cfg.endpoints))
    if kind == "model" and value not in {m for e in cfg.endpoints for m in e.models}:
        raise _fail(key, scope, "model: one of " + ", ".join(sorted({m for e in cfg.endpoints for m in e.models})))


def parse_alerts(raw: dict) -> AlertSettings:
    if not isinstance(raw, dict):
        raise _fail("alerts", raw, "an [alerts] table")
    known = {"timezone", "webhook_url_env", "forecast_window_hours"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"alerts.{key} is not a known setting: expected one of {', '.join(sorted(known))}")
    tz = raw.get("timezone", "UTC")
    zone(tz, "alerts.timezone")
    env = raw.get("webhook_url_env")
    if env is not None and (not isinstance(env, str) or not env.strip()):
        raise _fail("alerts.webhook_url_env", env, "the name of an environment variable holding the webhook URL")
    if "webhook_url" in raw:
        raise ConfigError("alerts.webhook_url must not be written in the file: set webhook_url_env instead")
    window = raw.get("forecast_window_hours", 24.0)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 1 <= window <= 24 * 90:
        raise _fail("alerts.forecast_window_hours", window, "a number of hours from 1 to 2160")
    return AlertSettings(tz, env, float(window))


def zone(name: str, key: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise _fail(key, name, "an IANA time zone such as 'UTC' or 'Europe/Paris'") from None


def from_config(cfg: Config) -> tuple[list[Budget], AlertSettings]:
    raw = cfg.extra.get("budgets", [])
    if not isinstance(raw, list):
        raise _fail("budgets", raw, "[[budgets]] tables")
    budgets = [parse_budget(b, cfg, f"budgets[{i}]") for i, b in enumerate(raw)]
    names = [b.name for b in budgets]
    if len(set(names)) != len(names):
        raise _fail("budgets.name", sorted(n for n in names if names.count(n) > 1)[0], "unique budget names")
    return budgets, parse_alerts(cfg.extra.get("alerts", {}))


def to_json(budgets: Sequence[Budget]) -> str:
    return json.dumps([b.as_dict() for b in budgets], sort_keys=True)


def from_json(text: str, cfg: Config) -> list[Budget]:
    return [parse_budget(b, cfg) for b in json.loads(text)]


# --- scope ------------------------------------------------------------------------------


def covers(b: Budget, tier: str, endpoint: str, model: str) -> bool:
    """Whether a request served by (tier, endpoint, model) counts toward `b`."""
    kind, value = b.scope_kind, b.scope_value
    return (
        kind == "global"
        or (kind == "tier" and value == tier)
        or (kind == "endpoint" and value == endpoint)
        or (kind == "model" and value == model)
    )


def fixed_endpoints(b: Budget, cfg: Config) -> list:
    """The dedicated endpoints whose GPU-hours count toward `b`."""
    return [
        e
        for e in cfg.tier_endpoints("dedicated")
        if covers(b, e.tier, e.name, e.models[0]) or (b.scope_kind == "model" and b.scope_value in e.models)
    ]


def scope_sql(b: Budget) -> tuple[str, list]:
    """SQL selecting the log rows whose metered spend counts toward `b`."""
    kind, value = b.scope_kind, b.scope_value
    clause = {"global": "TRUE", "tier": "tier = ?", "endpoint": "endpoint = ?", "model": "model = ?"}[kind]
    params = [] if kind == "global" else [value]
    clause += f" AND source IN ({', '.join('?' for _ in b.sources)})"
    return clause, params + list(b.sources)


# --- periods ----------------------------------------------------------------------------


def period_bounds(period: str, at_utc: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar period holding `at_utc` (naive UTC), as naive UTC [start, end)."""
    local = at_utc.replace(tzinfo=ZoneInfo("UTC")).astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":  # ISO weeks start on Monday
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)

    def utc(t: datetime) -> datetime:  # local wall time -> naive UTC, across DST changes
        return t.replace(tzinfo=tz).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)

    return utc(start), utc(end)


def fixed_hourly(b: Budget, cfg: Config) -> float:
    return sum(e.hourly_usd for e in fixed_endpoints(b, cfg))


def fixed_accrued(b: Budget, cfg: Config, start: datetime, now: datetime, hourly: float | None = None) -> float:
    """GPU-hours charged so far this period: every started hour in full."""
    hourly = fixed_hourly(b, cfg) if hourly is None else hourly
    if not hourly or now <= start:
        return 0.0
    return round(hourly * pricing.charged_hours(start, now, whole_hours=True), pricing.DIGITS)


def state(spent: float, b: Budget) -> str:
    if spent >= b.amount_usd:
        return "hard"
    if spent >= b.soft_limit * b.amount_usd:
        return "soft"
    return "ok"


# --- forecast ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    burn_rate_usd_per_hour: float
    projected_usd: float
    projected_low_usd: float
    projected_high_usd: float
    runs_out_at: datetime | None  # naive UTC; None when it lasts the period

    def as_dict(self) -> dict:
        return {
            "burn_rate_usd_per_hour": round(self.burn_rate_usd_per_hour, 6),
            "projected_usd": round(self.projected_usd, 4),
            "projected_low_usd": round(self.projected_low_usd, 4),
            "projected_high_usd": round(self.projected_high_usd, 4),
            "runs_out_at": self.runs_out_at.isoformat() + "Z" if self.runs_out_at else None,
        }


def forecast(
    b: Budget, spent: float, hourly_metered: Sequence[float], fixed_per_hour: float, now: datetime, end: datetime
) -> Forecast:
    """Project the period's end from the trailing window's hourly metered spend.

    The rate is the window's mean metered spend an hour plus the GPU-hours; the range uses
    the 10th and 90th percentiles of the hourly spend.
    """
    h = np.asarray(hourly_metered, dtype=float)
    mean = float(h.mean()) if h.size else 0.0
    lo, hi = (float(np.percentile(h, 10)), float(np.percentile(h, 90))) if h.size else (0.0, 0.0)
    left = max((end - now).total_seconds() / 3600, 0.0)
    rate = mean + fixed_per_hour
    runs_out = None
    if spent >= b.amount_usd:
        runs_out = now
    elif rate > 0:
        t = now + timedelta(hours=(b.amount_usd - spent) / rate)
        runs_out = t if t < end else None
    return Forecast(
        rate,
        spent + rate * left,
        spent + (lo + fixed_per_hour) * left,
        spent + (max(hi, mean) + fixed_per_hour) * left,
        runs_out,
    )
