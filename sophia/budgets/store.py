"""Budgets in the database: versioned like routing settings, and their spend from the log."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sophia.budgets import model as bmod
from sophia.config import Config, ConfigError
from sophia.log import metered
from sophia.log.settings_store import VersionStore

_STORE = VersionStore("budget_versions", "budgets")


logger = logging.getLogger(__name__)


def _stored(document: str, version: int, cfg: Config) -> list[bmod.Budget] | None:
    """A stored version's budgets, or None when it no longer passes today's checks (saved before
    a bound existed, or naming an endpoint the configuration dropped): it is skipped, not fatal."""
    try:
        return bmod.from_json(document, cfg)
    except (ConfigError, ValueError) as e:
        logger.warning("budget version %s is not valid any more (%s): using the file's budgets", version, e)
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(con, cfg: Config) -> tuple[int, list[bmod.Budget]]:
    """The active budgets: the file's when they changed since last seen, else the newest version."""
    mine = list(cfg.budgets)
    text = bmod.to_json(mine)
    seeded = _STORE.seed(con, text, _digest(text))
    if seeded is not None:
        return seeded, mine
    latest = _STORE.latest(con)
    stored = _stored(latest.document, latest.version, cfg)
    return (latest.version, stored) if stored is not None else (latest.version, mine)


def save(con, budgets: list[bmod.Budget], origin: str, note: str | None = None) -> int:
    names = [b.name for b in budgets]
    if len(set(names)) != len(names):
        raise ValueError("budget names must be unique")
    text = bmod.to_json(budgets)
    return _STORE.insert(con, text, _digest(text), origin, note)


def latest_version(con) -> int:
    return _STORE.latest_version(con)


def latest(con, cfg: Config) -> tuple[int, list[bmod.Budget]]:
    """The newest stored version and its budgets (saved by this or another process)."""
    v = _STORE.latest(con)
    stored = _stored(v.document, v.version, cfg)
    return v.version, stored if stored is not None else list(cfg.budgets)


def metered_spend(con, b: bmod.Budget, start: datetime, end: datetime, exclude_instance: str | None = None) -> float:
    """Metered spend of the log in `b`'s scope over [start, end)."""
    return metered.total(
        con, start, end, sources=b.sources, facets=bmod.scope_facets(b), exclude_instance=exclude_instance
    )


def hourly_metered(con, b: bmod.Budget, start: datetime, end: datetime) -> list[float]:
    """Metered spend an hour in `b`'s scope over [start, end), empty hours included."""
    return metered.hourly(con, start, end, sources=b.sources, facets=bmod.scope_facets(b))
