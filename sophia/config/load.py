"""Read `sophia.toml` into a validated `Config`: every table, once, in every process."""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from pathlib import Path

from sophia.config.budgets import parse_alerts, parse_budgets
from sophia.config.checks import ConfigError, check_keys, fail, number, section, text
from sophia.config.server import parse_settings
from sophia.config.settings import (
    ENDPOINT_KINDS,
    PRIVACY_MODES,
    CacheSettings,
    Config,
    Endpoint,
    FailoverSettings,
    KeywordGroup,
    ModelPrice,
    RoutingSettings,
    ScorerSettings,
    Simulation,
)
from sophia.vocab import Capability, Tier, words

DEFAULT_CONFIG = "sophia.toml"
TABLES = ("privacy", "scorer", "routing", "failover", "cache", "log", "server", "alerts")


def _length_bands(t: dict, p: str, default: tuple) -> tuple[tuple[int, float], ...]:
    if "length_bands" not in t:
        return default
    raw = t["length_bands"]
    ok = isinstance(raw, list) and all(
        isinstance(b, list)
        and len(b) == 2
        and isinstance(b[0], int)
        and not isinstance(b[0], bool)
        and isinstance(b[1], (int, float))
        and 0 <= b[0] <= 100_000_000
        and 0 <= b[1] <= 1
        for b in raw
    )
    if not ok:
        allowed = "a list of [characters, weight] pairs, characters in 0..100,000,000, weight in 0..1"
        raise fail(p + "length_bands", raw, allowed)
    return tuple(sorted(((int(c), float(w)) for c, w in raw), reverse=True))


def _keyword_groups(t: dict, p: str, default: tuple) -> tuple[KeywordGroup, ...]:
    if "keywords" not in t:
        return default
    raw = t["keywords"]
    if not isinstance(raw, list):
        raise fail(p + "keywords", raw, "a list of [[scorer.keywords]] tables")
    out = []
    for i, g in enumerate(raw):
        gp = f"{p}keywords[{i}]."
        if not isinstance(g, dict):
            raise fail(f"{p}keywords[{i}]", g, "a table with name, words, weight")
        check_keys(g, {"name", "words", "weight"}, gp)
        name = text(g, "name", gp, None)
        group_words = g.get("words")
        if not (
            isinstance(group_words, list) and group_words and all(isinstance(w, str) and w.strip() for w in group_words)
        ):
            raise fail(gp + "words", group_words, "a non-empty list of words")
        if name is None:
            raise ConfigError(f"{gp}name is missing: give the keyword group a name")
        out.append(KeywordGroup(name, tuple(w.lower() for w in group_words), number(g, "weight", gp, 0.1, 0, 1)))
    if len({g.name for g in out}) != len(out):
        raise fail(p + "keywords", [g.name for g in out], "keyword groups with distinct names")
    return tuple(out)


def _names(t: dict, key: str, p: str, default: tuple | None, choices: tuple[str, ...] | None = None):
    """A list of distinct strings (from `choices` when given), as a tuple."""
    if key not in t:
        return default
    raw = t[key]
    allowed = "a list of " + ("names from " + ", ".join(choices) if choices else "field names")
    if not isinstance(raw, list) or not all(isinstance(v, str) and v.strip() for v in raw):
        raise fail(p + key, raw, allowed)
    bad = [v for v in raw if choices and v not in choices]
    if bad:
        raise fail(p + key, bad[0], allowed)
    return tuple(dict.fromkeys(raw))


_CAPABILITIES = words(Capability)


def _scorer(t: dict) -> ScorerSettings:
    p, d = "scorer.", ScorerSettings()
    return section(
        ScorerSettings,
        t,
        p,
        known={
            "length_bands",
            "keywords",
            "max_tokens_over",
            "max_tokens_weight",
            "cap",
            "score_system",
            "score_history",
        },
        length_bands=_length_bands(t, p, d.length_bands),
        keyword_groups=_keyword_groups(t, p, d.keyword_groups),
    )


def _routing(t: dict) -> RoutingSettings:
    p, d = "routing.", RoutingSettings()
    names = (
        "serverless_model",
        "premium_model",
        "budget_model",
        "dedicated_endpoint",
        "bulk_endpoint",
        "embeddings_model",
    )
    return section(RoutingSettings, t, p, **{k: text(t, k, p, getattr(d, k)) for k in names})


_ENDPOINT_KEYS = set(Endpoint.__dataclass_fields__) | {"model"}


def _endpoint(t: dict, i: int) -> Endpoint:
    p = f"endpoints[{i}]."
    if not isinstance(t, dict):
        raise fail(f"endpoints[{i}]", t, "a [[endpoints]] table")
    check_keys(t, _ENDPOINT_KEYS, p)
    name = text(t, "name", p, None)
    if name is None:
        raise ConfigError(f"{p}name is missing: every endpoint needs a unique name")
    p = f"endpoints.{name}."
    tier = text(t, "tier", p, None, words(Tier))
    if tier is None:
        raise ConfigError(f"{p}tier is missing: expected one of 'serverless', 'dedicated'")
    kind = text(t, "kind", p, "simulated", ENDPOINT_KINDS)
    models = t.get("models", [t["model"]] if "model" in t else None)
    if not (isinstance(models, list) and models and all(isinstance(m, str) and m for m in models)):
        raise fail(p + "models", models, 'a non-empty list of model names (or model = "name")')
    base_url = text(t, "base_url", p, None)
    if kind == "openai":
        if base_url is None:
            raise ConfigError(
                f"{p}base_url is missing: an 'openai' endpoint needs its URL, e.g. http://127.0.0.1:8000/v1"
            )
        if not base_url.startswith(("http://", "https://")):
            raise fail(p + "base_url", base_url, "a URL starting with http:// or https://")
    api_key_env = text(t, "api_key_env", p, None)
    if "api_key" in t:
        raise ConfigError(
            f"{p}api_key must not be written in the file: set api_key_env to the name of an environment variable"
        )
    dedicated = tier == Tier.DEDICATED
    hourly = number(t, "hourly_usd", p, 0.0, 0, 1e6)
    tps = number(t, "throughput_tps", p, 0.0, 0, 1e9)
    if dedicated and hourly <= 0:
        raise fail(p + "hourly_usd", t.get("hourly_usd"), "a price > 0: dedicated GPUs are never free")
    if dedicated and tps <= 0:
        raise fail(p + "throughput_tps", t.get("throughput_tps"), "output tokens per second > 0")
    sim = t.get("simulation", {})
    if not isinstance(sim, dict):
        raise fail(p + "simulation", sim, "a table of simulation settings")
    return section(
        Endpoint,
        t,
        p,
        known=_ENDPOINT_KEYS,
        name=name,
        tier=tier,
        kind=kind,
        models=tuple(models),
        base_url=base_url,
        api_key_env=api_key_env,
        hourly_usd=hourly,
        throughput_tps=tps,
        simulation=section(Simulation, sim, p + "simulation."),
        capabilities=_names(t, "capabilities", p, Endpoint.capabilities, _CAPABILITIES),
        drop_params=_names(t, "drop_params", p, ()),
    )


def _model(t: dict, i: int) -> ModelPrice:
    p = f"models[{i}]."
    if not isinstance(t, dict):
        raise fail(f"models[{i}]", t, "a [[models]] table")
    check_keys(t, _MODEL_KEYS, p)
    name = text(t, "name", p, None)
    if name is None:
        raise ConfigError(f"{p}name is missing: every priced model needs its name")
    p = f"models.{name}."
    for key in ("input_per_mtok", "output_per_mtok"):
        if key not in t:
            raise ConfigError(f"{p}{key} is missing: give the price in USD per 1M tokens")
    return section(
        ModelPrice,
        t,
        p,
        known=_MODEL_KEYS,
        name=name,
        input_per_mtok=number(t, "input_per_mtok", p, 0, 0, 1e4),
        output_per_mtok=number(t, "output_per_mtok", p, 0, 0, 1e4),
        capabilities=_names(t, "capabilities", p, None, _CAPABILITIES),
    )


_MODEL_KEYS = set(ModelPrice.__dataclass_fields__)


def parse(data: dict, path: str | None = None) -> Config:
    """Build a validated Config from parsed TOML: every table, [server], [[budgets]] and [alerts] too."""
    check_keys(data, {"endpoints", "models", "budgets", *TABLES}, "")
    for name in TABLES:
        if name in data and not isinstance(data[name], dict):
            raise fail(name, data[name], f"a [{name}] table")
    privacy = data.get("privacy", {})
    check_keys(privacy, {"store_prompts"}, "privacy.")
    log = data.get("log", {})
    check_keys(log, {"flush_interval_s"}, "log.")
    raw_endpoints = data.get("endpoints")
    if not isinstance(raw_endpoints, list) or not raw_endpoints:
        raise ConfigError("endpoints is missing: declare at least one [[endpoints]] table")
    cfg = Config(
        endpoints=tuple(_endpoint(t, i) for i, t in enumerate(raw_endpoints)),
        models=tuple(_model(t, i) for i, t in enumerate(data.get("models", []))),
        scorer=_scorer(data.get("scorer", {})),
        routing=_routing(data.get("routing", {})),
        failover=section(FailoverSettings, data.get("failover", {}), "failover."),
        cache=section(CacheSettings, data.get("cache", {}), "cache."),
        store_prompts=text(privacy, "store_prompts", "privacy.", "off", PRIVACY_MODES),
        # A crash may lose at most one flush interval: keep it within DESIGN's 200 ms.
        flush_interval_s=number(log, "flush_interval_s", "log.", 0.1, 0.001, 0.2),
        path=path,
    )
    _cross_check(cfg)
    # Tables that refer to endpoints and models are checked against them.
    return replace(
        cfg,
        server=parse_settings(data.get("server", {}), cfg),
        budgets=parse_budgets(data.get("budgets", []), cfg),
        alerts=parse_alerts(data.get("alerts", {})),
    )


def _cross_check(cfg: Config) -> None:
    names = [e.name for e in cfg.endpoints]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise fail("endpoints.name", dupes[0], "unique endpoint names")
    priced = {m.name for m in cfg.models}
    serverless = cfg.tier_endpoints(Tier.SERVERLESS)
    for e in serverless:
        for m in e.models:
            if m not in priced:
                raise ConfigError(
                    f"endpoints.{e.name}.models: {m!r} has no price: add a [[models]] table with name = {m!r}"
                )
    if not serverless:
        raise ConfigError('endpoints: no serverless endpoint; declare one with tier = "serverless"')
    served = {m for e in serverless for m in e.models}
    r = cfg.routing
    for key in ("serverless_model", "premium_model", "budget_model"):
        v = getattr(r, key)
        if v not in served:
            raise fail(f"routing.{key}", v, "a model of a serverless endpoint: " + ", ".join(sorted(served)))
    em = r.embeddings_model
    if em is not None:
        try:
            ep = cfg.endpoint_for_model(em)
        except KeyError:
            raise fail("routing.embeddings_model", em, "a model of an endpoint (add it to its models)") from None
        if Capability.EMBEDDINGS not in cfg.capabilities(ep, em):
            raise ConfigError(
                f"routing.embeddings_model = {em!r}: the model cannot serve embeddings; "
                'give its [[models]] table capabilities = ["embeddings"]'
            )
    dedicated = [e.name for e in cfg.tier_endpoints(Tier.DEDICATED)]
    for key in ("dedicated_endpoint", "bulk_endpoint"):
        v = getattr(r, key)
        if dedicated and v not in dedicated:
            raise fail(f"routing.{key}", v, "a dedicated endpoint: " + ", ".join(dedicated))


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
