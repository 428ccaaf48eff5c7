"""The [server] table: what `sophia serve` listens with, validated like the rest of the file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sophia.config import apikeys
from sophia.config.apikeys import ApiKey
from sophia.config.checks import FLAG, fail, in_range, one_of, section, text, whole

if TYPE_CHECKING:
    from sophia.config.settings import Config

DEFAULT_ALIAS = "sophia-auto"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")


@dataclass(frozen=True)
class ServerSettings:
    api_keys: tuple[ApiKey, ...] = ()
    rate_limit_per_minute: int = field(default=600, metadata=whole(0, 10_000_000))  # per key; 0 = no limit
    max_body_bytes: int = field(default=4 * 1024 * 1024, metadata=whole(1024, 1024**3))
    max_tokens_limit: int = field(default=131_072, metadata=whole(1, 10_000_000))
    app_url: str = "http://localhost:8501"
    aliases: tuple[str, ...] = (DEFAULT_ALIAS,)
    # requests routed at once (routing threads); more wait their turn
    max_concurrency: int = field(default=512, metadata=whole(1, 10_000))
    # the runtime's background refresh (settings, budgets, health); 0 = off
    refresh_interval_s: float = field(default=5.0, metadata=in_range(0, 86_400))
    # graceful shutdown waits this long for in-flight requests
    shutdown_timeout_s: float = field(default=30.0, metadata=in_range(0, 3600))
    access_log: bool = field(default=False, metadata=FLAG)
    # "fast": routing.backends.transport; "httpx": httpx's own
    upstream_http: str = field(default="fast", metadata=one_of("fast", "httpx"))


def parse_settings(raw: object, cfg: Config | None = None) -> ServerSettings:
    """Validate the [server] table; with `cfg`, aliases are checked against its models."""
    p = "server."
    if not isinstance(raw, dict):
        raise fail("server", raw, "a [server] table")
    d = ServerSettings()
    keys = apikeys.parse(raw["api_keys"], p) if "api_keys" in raw else ()
    app_url = text(raw, "app_url", p, d.app_url)
    if not app_url.startswith(("http://", "https://")):
        raise fail(p + "app_url", app_url, "a URL starting with http:// or https://")
    return section(ServerSettings, raw, p, api_keys=keys, app_url=app_url, aliases=_aliases(raw, p, d.aliases, cfg))


def _aliases(raw: dict, p: str, default: tuple[str, ...], cfg: Config | None) -> tuple[str, ...]:
    if "aliases" not in raw:
        aliases = default
    else:
        a = raw["aliases"]
        if not (isinstance(a, list) and a and all(isinstance(x, str) and _NAME.fullmatch(x) for x in a)):
            raise fail(p + "aliases", a, "a non-empty list of model names (letters, digits, . _ : / -)")
        if len(set(a)) != len(a):
            raise fail(p + "aliases", a, "distinct names")
        aliases = tuple(a)
    if cfg is not None:
        served = {m for e in cfg.endpoints for m in e.models}
        clash = sorted(served.intersection(aliases))
        if clash:
            raise fail(p + "aliases", clash[0], "names that are not configured models (a model name forces it)")
    return aliases
