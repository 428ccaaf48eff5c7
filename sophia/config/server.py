"""The [server] table: what `sophia serve` listens with, validated like the rest of the file.

Where `GET /dashboard` sends a browser (`app_url`): the URL the file sets; without one, the URL
the app last recorded beside the database it uses (`<database>.app.json`, written by `make run`
as it starts the app and by the app itself when it serves a page, removed when the app exits);
without either, http://localhost:8501, where `streamlit run app.py` listens by default.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sophia.config import apikeys
from sophia.config.apikeys import ApiKey
from sophia.config.checks import FLAG, fail, in_range, one_of, section, whole

if TYPE_CHECKING:
    from sophia.config.settings import Config

DEFAULT_ALIAS = "sophia-auto"
DEFAULT_APP_URL = "http://localhost:8501"
APP_URL_SUFFIX = ".app.json"  # beside the database: <database>.app.json
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
_URL = re.compile(r"https?://[^\s/?#]+(/\S*)?", re.IGNORECASE)
MAX_URL = 2048


def _is_url(v: object) -> bool:
    return isinstance(v, str) and len(v) <= MAX_URL and _URL.fullmatch(v) is not None


@dataclass(frozen=True)
class ServerSettings:
    api_keys: tuple[ApiKey, ...] = ()
    rate_limit_per_minute: int = field(default=600, metadata=whole(0, 10_000_000))  # per key; 0 = no limit
    max_body_bytes: int = field(default=4 * 1024 * 1024, metadata=whole(1024, 1024**3))
    max_tokens_limit: int = field(default=131_072, metadata=whole(1, 10_000_000))
    app_url: str = ""  # empty: the URL the running app recorded (see `app_url_for`)
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
    app_url = raw.get("app_url", d.app_url)
    if "app_url" in raw and not _is_url(app_url):
        raise fail(p + "app_url", app_url, f"a URL of up to {MAX_URL} characters starting with http:// or https://")
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


# --- the app's URL, recorded beside the database -------------------------------------------


def app_url_file(db_path: str | os.PathLike) -> Path:
    return Path(str(db_path) + APP_URL_SUFFIX)


def record_app_url(db_path: str | os.PathLike, url: str) -> None:
    """Record the URL an app serves the database `db_path` on (atomically: a reader never sees half)."""
    if not _is_url(url):
        raise ValueError(f"app URL {url!r} is not allowed: expected a URL starting with http:// or https://")
    path = app_url_file(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url}), encoding="utf-8")
    os.replace(tmp, path)


def forget_app_url(db_path: str | os.PathLike, url: str) -> None:
    """Remove the record when it still names `url` (another app may have recorded its own since)."""
    if recorded_app_url(db_path) == url:
        app_url_file(db_path).unlink(missing_ok=True)


def recorded_app_url(db_path: str | os.PathLike) -> str | None:
    """The URL recorded for `db_path`, or None (no record, or one that is not a usable URL)."""
    try:
        url = json.loads(app_url_file(db_path).read_text(encoding="utf-8")).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if _is_url(url) else None


def app_url_for(settings: ServerSettings, db_path: str | os.PathLike | None) -> str:
    """Where /dashboard sends a browser: the configured URL, else the recorded one, else the default."""
    if settings.app_url:
        return settings.app_url
    recorded = recorded_app_url(db_path) if db_path else None
    return recorded or DEFAULT_APP_URL
