"""Load and validate `sophia.toml`.

Every check names the key, the value it found and what is allowed, so a bad file stops
start-up with one line that says how to fix it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TIERS = ("serverless", "dedicated")
PRIVACY_MODES = ("off", "redacted", "on")
ENDPOINT_KINDS = ("simulated", "openai")
DEFAULT_CONFIG = "sophia.toml"
# Sections whose keys are validated by the module that uses them.
EXTRA_SECTIONS = ("server", "budgets", "alerts")


class ConfigError(ValueError):
    """A configuration value that is missing or not allowed."""


@dataclass(frozen=True)
class KeywordGroup:
    name: str
    words: tuple[str, ...]
    weight: float


@dataclass(frozen=True)
class ScorerSettings:
    # (minimum characters, weight), highest band first; the first band exceeded applies.
    length_bands: tuple[tuple[int, float], ...] = ((10_000, 0.3), (5_000, 0.2), (1_000, 0.1))
    keyword_groups: tuple[KeywordGroup, ...] = (
        KeywordGroup("analysis", ("analyze", "process", "generate", "training"), 0.1),
        KeywordGroup("context", ("remember", "context", "session", "stream"), 0.2),
    )
    max_tokens_over: int = 1_000
    max_tokens_weight: float = 0.3
    cap: float = 1.0


@dataclass(frozen=True)
class RoutingSettings:
    complexity_threshold: float = 0.7
    cost_threshold_usd: float = 0.10
    serverless_model: str = "llama-4-scout-17b-16e-instruct"
    premium_model: str = "llama-4-maverick-17b-128e-instruct-fp8"
    budget_model: str = "llama3.1-8b-instruct"
    dedicated_endpoint: str = "sophia-ai-core"
    bulk_endpoint: str = "sophia-data-pipeline"
    default_max_tokens: int = 512


@dataclass(frozen=True)
class FailoverSettings:
    max_retries: int = 1
    retry_backoff_s: float = 0.2
    failure_threshold: int = 3
    cooldown_s: float = 30.0
    connect_timeout_s: float = 5.0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = True
    ttl_s: float = 3600.0
    max_entries: int = 10_000


@dataclass(frozen=True)
class Simulation:
    """How a built-in simulated endpoint behaves."""

    ttft_ms: float = 250.0
    tpot_ms: float = 12.0
    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_factor: float = 10.0
    cut_rate: float = 0.0
    reply_tokens: int = 120
    report_usage: bool = True
    seed: int = 7


@dataclass(frozen=True)
class ModelPrice:
    name: str
    input_per_mtok: float
    output_per_mtok: float


@dataclass(frozen=True)
class Endpoint:
    name: str
    tier: str
    kind: str
    models: tuple[str, ...]
    base_url: str | None = None
    api_key_env: str | None = None
    hourly_usd: float = 0.0
    throughput_tps: float = 0.0
    prefill_tps: float = 0.0
    max_concurrency: int = 0
    simulation: Simulation = field(default_factory=Simulation)

    @property
    def simulated(self) -> bool:
        return self.kind == "simulated"


@dataclass(frozen=True)
class Config:
    endpoints: tuple[Endpoint, ...]
    models: tuple[ModelPrice, ...]
    scorer: ScorerSettings = field(default_factory=ScorerSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    failover: FailoverSettings = field(default_factory=FailoverSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    store_prompts: str = "off"
    flush_interval_s: float = 0.1
    path: str | None = None
    # Raw tables validated by the modules that own them (e.g. [server] by sophia.server.app).
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)

    def tier_endpoints(self, tier: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.tier == tier)

    def endpoint_for_model(self, model: str) -> Endpoint:
        for e in self.endpoints:
            if model in e.models:
                return e
        raise KeyError(model)

    @property
    def serverless(self) -> Endpoint:
        return self.endpoint_for_model(self.routing.serverless_model)

    def with_routing(self, **changes: Any) -> Config:
        return replace(self, routing=replace(self.routing, **changes))

    def with_scorer(self, **changes: Any) -> Config:
        return replace(self, scorer=replace(self.scorer, **changes))


# --- validation helpers --------------------------------------------------------------


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key} = {value!r} is not allowed: expected {allowed}")


def _get(table: dict, key: str, prefix: str, kind: type | tuple, default: Any, allowed: str):
    if key not in table:
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML booleans are ints in Python; never accept one where a number is expected.
    if isinstance(value, bool) and bool not in kinds:
        raise _fail(f"{prefix}{key}", value, allowed)
    if not isinstance(value, kinds):
        raise _fail(f"{prefix}{key}", value, allowed)
    return value


def _number(table, key, prefix, default, lo=0.0, hi=None, lo_open=False):
    allowed = f"a number {'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
    v = _get(table, key, prefix, (int, float), default, allowed)
    if (v < lo or (lo_open and v == lo)) or (hi is not None and v > hi):
        raise _fail(f"{prefix}{key}", v, allowed)
    return float(v)


def _int(table, key, prefix, default, lo=0, hi=None):
    allowed = f"a whole number >= {lo}" + (f" and <= {hi}" if hi is not None else "")
    v = _get(table, key, prefix, int, default, allowed)
    if v < lo or (hi is not None and v > hi):
        raise _fail(f"{prefix}{key}", v, allowed)
    return v


def _str(table, key, prefix, default, choices=None):
    allowed = "one of " + ", ".join(repr(c) for c in choices) if choices else "a non-empty string"
    v = _get(table, key, prefix, str, default, allowed)
    if v is None:
        return v
    if (choices and v not in choices) or not v.strip():
        raise _fail(f"{prefix}{key}", v, allowed)
    return v


def _check_keys(table: dict, known: set[str], prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}{key} is not a known setting: expected one of {', '.join(sorted(known))}")


# --- sections --------------------------------------------------------------------------


def _scorer(t: dict) -> ScorerSettings:
    p = "scorer."
    _check_keys(t, {"length_bands", "keywords", "max_tokens_over", "max_tokens_weight", "cap"}, p)
    d = ScorerSettings()
    bands = d.length_bands
    if "length_bands" in t:
        raw = t["length_bands"]
        ok = isinstance(raw, list) and all(
            isinstance(b, list)
            and len(b) == 2
            and isinstance(b[0], int)
            and not isinstance(b[0], bool)
            and isinstance(b[1], (int, float))
            and b[0] >= 0
            and 0 <= b[1] <= 1
            for b in raw
        )
        if not ok:
            raise _fail(p + "length_bands", raw, "a list of [characters, weight] pairs, weight in 0..1")
        bands = tuple(sorted(((int(c), float(w)) for c, w in raw), reverse=True))
    groups = d.keyword_groups
    if "keywords" in t:
        raw = t["keywords"]
        if not isinstance(raw, list):
            raise _fail(p + "keywords", raw, "a list of [[scorer.keywords]] tables")
        out = []
        for i, g in enumerate(raw):
            gp = f"{p}keywords[{i}]."
            if not isinstance(g, dict):
                raise _fail(f"{p}keywords[{i}]", g, "a table with name, words, weight")
            _check_keys(g, {"name", "words", "weight"}, gp)
            name = _str(g, "name", gp, None)
            words = g.get("words")
            if not (isinstance(words, list) and words and all(isinstance(w, str) and w.strip() for w in words)):
                raise _fail(gp + "words", words, "a non-empty list of words")
            if name is None:
                raise ConfigError(f"{gp}name is missing: give the keyword group a name")
            out.append(KeywordGroup(name, tuple(w.lower() for w in words), _number(g, "weight", gp, 0.1, 0, 1)))
        if len({g.name for g in out}) != len(out):
            raise _fail(p + "keywords", [g.name for g in out], "keyword groups with distinct names")
        groups = tuple(out)
    return ScorerSettings(
        length_bands=bands,
        keyword_groups=groups,
        max_tokens_over=_int(t, "max_tokens_over", p, d.max_tokens_over),
        max_tokens_weight=_number(t, "max_tokens_weight", p, d.max_tokens_weight, 0, 1),
        cap=_number(t, "cap", p, d.cap, 0, 1, lo_open=True),
    )


def _routing(t: dict) -> RoutingSettings:
    p = "routing."
    d = RoutingSettings()
    _check_keys(t, set(RoutingSettings.__dataclass_fields__), p)
    return RoutingSettings(
        complexity_threshold=_number(t, "complexity_threshold", p, d.complexity_threshold, 0, 1),
        cost_threshold_usd=_number(t, "cost_threshold_usd", p, d.cost_threshold_usd, 0),
        serverless_model=_str(t, "serverless_model", p, d.serverless_model),
        premium_model=_str(t, "premium_model", p, d.premium_model),
        budget_model=_str(t, "budget_model", p, d.budget_model),
        dedicated_endpoint=_str(t, "dedicated_endpoint", p, d.dedicated_endpoint),
        bulk_endpoint=_str(t, "bulk_endpoint", p, d.bulk_endpoint),
        default_max_tokens=_int(t, "default_max_tokens", p, d.default_max_tokens, 1, 1_000_000),
    )


def _failover(t: dict) -> FailoverSettings:
    p = "failover."
    d = FailoverSettings()
    _check_keys(t, set(FailoverSettings.__dataclass_fields__), p)
    return FailoverSettings(
        max_retries=_int(t, "max_retries", p, d.max_retries, 0, 10),
        retry_backoff_s=_number(t, "retry_backoff_s", p, d.retry_backoff_s, 0, 60),
        failure_threshold=_int(t, "failure_threshold", p, d.failure_threshold, 1, 1000),
        cooldown_s=_number(t, "cooldown_s", p, d.cooldown_s, 0, 86_400),
        connect_timeout_s=_number(t, "connect_timeout_s", p, d.connect_timeout_s, 0, 600, lo_open=True),
        timeout_s=_number(t, "timeout_s", p, d.timeout_s, 0, 3600, lo_open=True),
    )


def _cache(t: dict) -> CacheSettings:
    p = "cache."
    d = CacheSettings()
    _check_keys(t, set(CacheSettings.__dataclass_fields__), p)
    return CacheSettings(
        enabled=_get(t, "enabled", p, bool, d.enabled, "true or false"),
        ttl_s=_number(t, "ttl_s", p, d.ttl_s, 0, lo_open=True),
        max_entries=_int(t, "max_entries", p, d.max_entries, 1, 10_000_000),
    )


def _simulation(t: dict, p: str) -> Simulation:
    d = Simulation()
    _check_keys(t, set(Simulation.__dataclass_fields__), p)
    return Simulation(
        ttft_ms=_number(t, "ttft_ms", p, d.ttft_ms, 0, 600_000),
        tpot_ms=_number(t, "tpot_ms", p, d.tpot_ms, 0, 60_000),
        error_rate=_number(t, "error_rate", p, d.error_rate, 0, 1),
        slow_rate=_number(t, "slow_rate", p, d.slow_rate, 0, 1),
        slow_factor=_number(t, "slow_factor", p, d.slow_factor, 1, 1000),
        cut_rate=_number(t, "cut_rate", p, d.cut_rate, 0, 1),
        reply_tokens=_int(t, "reply_tokens", p, d.reply_tokens, 1, 100_000),
        report_usage=_get(t, "report_usage", p, bool, d.report_usage, "true or false"),
        seed=_int(t, "seed", p, d.seed, 0),
    )


_ENDPOINT_KEYS = {
    "name",
    "tier",
    "kind",
    "models",
    "model",
    "base_url",
    "api_key_env",
    "hourly_usd",
    "throughput_tps",
    "prefill_tps",
    "max_concurrency",
    "simulation",
}


def _endpoint(t: dict, i: int) -> Endpoint:
    p = f"endpoints[{i}]."
    if not isinstance(t, dict):
        raise _fail(f"endpoints[{i}]", t, "a [[endpoints]] table")
    _check_keys(t, _ENDPOINT_KEYS, p)
    name = _str(t, "name", p, None)
    if name is None:
        raise ConfigError(f"{p}name is missing: every endpoint needs a unique name")
    p = f"endpoints.{name}."
    tier = _str(t, "tier", p, None, TIERS)
    if tier is None:
        raise ConfigError(f"{p}tier is missing: expected one of 'serverless', 'dedicated'")
    kind = _str(t, "kind", p, "simulated", ENDPOINT_KINDS)
    models = t.get("models", [t["model"]] if "model" in t else None)
    if not (isinstance(models, list) and models and all(isinstance(m, str) and m for m in models)):
        raise _fail(p + "models", models, 'a non-empty list of model names (or model = "name")')
    base_url = _str(t, "base_url", p, None)
    if kind == "openai":
        if base_url is None:
            raise ConfigError(
                f"{p}base_url is missing: an 'openai' endpoint needs its URL, e.g. http://127.0.0.1:8000/v1"
            )
        if not base_url.startswith(("http://", "https://")):
            raise _fail(p + "base_url", base_url, "a URL starting with http:// or https://")
    api_key_env = _str(t, "api_key_env", p, None)
    if "api_key" in t:
        raise ConfigError(
            f"{p}api_key must not be written in the file: set api_key_env to the name of an environment variable"
        )
    dedicated = tier == "dedicated"
    hourly = _number(t, "hourly_usd", p, 0.0, 0)
    tps = _number(t, "throughput_tps", p, 0.0, 0)
    if dedicated and hourly <= 0:
        raise _fail(p + "hourly_usd", t.get("hourly_usd"), "a price > 0: dedicated GPUs are never free")
    if dedicated and tps <= 0:
        raise _fail(p + "throughput_tps", t.get("throughput_tps"), "output tokens per second > 0")
    sim = t.get("simulation", {})
    if not isinstance(sim, dict):
        raise _fail(p + "simulation", sim, "a table of simulation settings")
    return Endpoint(
        name=name,
        tier=tier,
        kind=kind,
        models=tuple(models),
        base_url=base_url,
        api_key_env=api_key_env,
        hourly_usd=hourly,
        throughput_tps=tps,
        prefill_tps=_number(t, "prefill_tps", p, 0.0, 0),
        max_concurrency=_int(t, "max_concurrency", p, 0, 0, 100_000),
        simulation=_simulation(sim, p + "simulation."),
    )


def _model(t: dict, i: int) -> ModelPrice:
    p = f"models[{i}]."
    if not isinstance(t, dict):
        raise _fail(f"models[{i}]", t, "a [[models]] table")
    _check_keys(t, {"name", "input_per_mtok", "output_per_mtok"}, p)
    name = _str(t, "name", p, None)
    if name is None:
        raise ConfigError(f"{p}name is missing: every priced model needs its name")
    p = f"models.{name}."
    for key in ("input_per_mtok", "output_per_mtok"):
        if key not in t:
            raise ConfigError(f"{p}{key} is missing: give the price in USD per 1M tokens")
    return ModelPrice(name, _number(t, "input_per_mtok", p, 0, 0), _number(t, "output_per_mtok", p, 0, 0))


def parse(data: dict, path: str | None = None) -> Config:
    """Build a validated Config from parsed TOML."""
    _check_keys(
        data, {"privacy", "scorer", "routing", "failover", "cache", "endpoints", "models", "log", *EXTRA_SECTIONS}, ""
    )
    for section in ("privacy", "scorer", "routing", "failover", "cache", "log", "server", "alerts"):
        if section in data and not isinstance(data[section], dict):
            raise _fail(section, data[section], f"a [{section}] table")
    privacy = data.get("privacy", {})
    _check_keys(privacy, {"store_prompts"}, "privacy.")
    log = data.get("log", {})
    _check_keys(log, {"flush_interval_s"}, "log.")
    raw_endpoints = data.get("endpoints")
    if not isinstance(raw_endpoints, list) or not raw_endpoints:
        raise ConfigError("endpoints is missing: declare at least one [[endpoints]] table")
    endpoints = tuple(_endpoint(t, i) for i, t in enumerate(raw_endpoints))
    models = tuple(_model(t, i) for i, t in enumerate(data.get("models", [])))
    cfg = Config(
        endpoints=endpoints,
        models=models,
        scorer=_scorer(data.get("scorer", {})),
        routing=_routing(data.get("routing", {})),
        failover=_failover(data.get("failover", {})),
        cache=_cache(data.get("cache", {})),
        store_prompts=_str(privacy, "store_prompts", "privacy.", "off", PRIVACY_MODES),
        # A crash may lose at most one flush interval: keep it within DESIGN's 200 ms.
        flush_interval_s=_number(log, "flush_interval_s", "log.", 0.1, 0.001, 0.2),
        path=path,
        extra={k: data[k] for k in EXTRA_SECTIONS if k in data},
    )
    _cross_check(cfg)
    return cfg


def _cross_check(cfg: Config) -> None:
    names = [e.name for e in cfg.endpoints]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail("endpoints.name", dupes[0], "unique endpoint names")
    priced = {m.name for m in cfg.models}
    for e in cfg.tier_endpoints("serverless"):
        for m in e.models:
            if m not in priced:
                raise ConfigError(
                    f"endpoints.{e.name}.models: {m!r} has no price: add a [[models]] table with name = {m!r}"
                )
    if not cfg.tier_endpoints("serverless"):
        raise ConfigError('endpoints: no serverless endpoint; declare one with tier = "serverless"')
    served = {m for e in cfg.tier_endpoints("serverless") for m in e.models}
    r = cfg.routing
    for key in ("serverless_model", "premium_model", "budget_model"):
        v = getattr(r, key)
        if v not in served:
            raise _fail(f"routing.{key}", v, "a model of a serverless endpoint: " + ", ".join(sorted(served)))
    dedicated = [e.name for e in cfg.tier_endpoints("dedicated")]
    for key in ("dedicated_endpoint", "bulk_endpoint"):
        v = getattr(r, key)
        if dedicated and v not in dedicated:
            raise _fail(f"routing.{key}", v, "a dedicated endpoint: " + ", ".join(dedicated))


def default_path() -> Path:
    return Path(os.environ.get("SOPHIA_CONFIG") or DEFAULT_CONFIG)


def load(path: str | os.PathLike | None = None) -> Config:
    """Load the configuration from `path`, $SOPHIA_CONFIG or ./sophia.toml."""
    p = Path(path) if path else default_path()
    if not p.exists():
        raise ConfigError(f"configuration file {p} not found: pass --config PATH or set SOPHIA_CONFIG")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
    try:
        return parse(data, str(p))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


SECRETS_FILE = Path(".streamlit") / "secrets.toml"


def load_secrets(path: str | os.PathLike = SECRETS_FILE) -> dict:
    """Keys from Streamlit's secrets file, for every process (app, CLI, API server); {} without one."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p} cannot be read ({type(e).__name__}): fix it or move it aside") from None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def api_key(endpoint: Endpoint, secrets: dict | None = None) -> str | None:
    """The endpoint's key from the environment, else from Streamlit's secrets dict."""
    if not endpoint.api_key_env:
        return None
    value = os.environ.get(endpoint.api_key_env)
    if not value and secrets:
        value = secrets.get(endpoint.api_key_env)
    return value or None
