"""The [server] table: what `sophia serve` listens with, validated like the rest of the file."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sophia.config import Config, _check_keys, _fail, _get, _int, _number, _str, apikeys
from sophia.config.apikeys import ApiKey

DEFAULT_ALIAS = "sophia-auto"

# --- settings: the [server] table ------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    api_keys: tuple[ApiKey, ...] = ()
    rate_limit_per_minute: int = 600  # per key; 0 = no limit
    max_body_bytes: int = 4 * 1024 * 1024
    max_tokens_limit: int = 131_072
    app_url: str = "http://localhost:8501"
    aliases: tuple[str, ...] = (DEFAULT_ALIAS,)
    max_concurrency: int = 512  # requests routed at once (routing threads); more wait their turn
    refresh_interval_s: float = 5.0  # the runtime's background refresh (settings, budgets, health); 0 = off
    shutdown_timeout_s: float = 30.0  # graceful shutdown waits this long for in-flight requests
    access_log: bool = False
    upstream_http: str = "fast"  # "fast": routing.backends.transport; "httpx": httpx's own


SERVER_KEYS = {
    "api_keys",
    "rate_limit_per_minute",
    "max_body_bytes",
    "max_tokens_limit",
    "app_url",
    "aliases",
    "max_concurrency",
    "refresh_interval_s",
    "shutdown_timeout_s",
    "access_log",
    "upstream_http",
}


def parse_settings(raw: object, cfg: Config | None = None) -> ServerSettings:
    """Validate the [server] table (`cfg.extra["server"]`) in the style of sophia.config."""
    p = "server."
    if not isinstance(raw, dict):
        raise _fail("server", raw, "a [server] table")
    _check_keys(raw, SERVER_KEYS, p)
    d = ServerSettings()
    keys = apikeys.parse(raw["api_keys"], p) if "api_keys" in raw else ()
    app_url = _str(raw, "app_url", p, d.app_url)
    if not app_url.startswith(("http://", "https://")):
        raise _fail(p + "app_url", app_url, "a URL starting with http:// or https://")
    aliases = d.aliases
    if "aliases" in raw:
        a = raw["aliases"]
        if not (isinstance(a, list) and a and all(isinstance(x, str) and _NAME.fullmatch(x) for x in a)):
            raise _fail(p + "aliases", a, "a non-empty list of model names (letters, digits, . _ : / -)")
        if len(set(a)) != len(a):
            raise _fail(p + "aliases", a, "distinct names")
        aliases = tuple(a)
    if cfg is not None:
        served = {m for e in cfg.endpoints for m in e.models}
        clash = sorted(served.intersection(aliases))
        if clash:
            raise _fail(p + "aliases", clash[0], "names that are not configured models (a model name forces it)")
    return ServerSettings(
        api_keys=keys,
        rate_limit_per_minute=_int(raw, "rate_limit_per_minute", p, d.rate_limit_per_minute, 0, 10_000_000),
        max_body_bytes=_int(raw, "max_body_bytes", p, d.max_body_bytes, 1024, 1024**3),
        max_tokens_limit=_int(raw, "max_tokens_limit", p, d.max_tokens_limit, 1, 10_000_000),
        app_url=app_url,
        aliases=aliases,
        max_concurrency=_int(raw, "max_concurrency", p, d.max_concurrency, 1, 10_000),
        refresh_interval_s=_number(raw, "refresh_interval_s", p, d.refresh_interval_s, 0, 86_400),
        shutdown_timeout_s=_number(raw, "shutdown_timeout_s", p, d.shutdown_timeout_s, 0, 3600),
        access_log=_get(raw, "access_log", p, bool, d.access_log, "true or false"),
        upstream_http=_str(raw, "upstream_http", p, d.upstream_http, ("fast", "httpx")),
    )


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
