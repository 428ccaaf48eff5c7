"""Budgets in the database: versioned like routing settings, and their spend from the log."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sophia.budgets import model as bmod
from sophia.config import Config
from sophia.log import metered
from sophia.log.settings_store import VersionStore

_STORE = VersionStore("budget_versions", "budgets")


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
    return latest.version, bmod.from_json(latest.document, cfg)


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
    return v.version, bmod.from_json(v.document, cfg)


def metered_spend(con, b: bmod.Budget, start: datetime, end: datetime, exclude_instance: str | None = None) -> float:
    """Metered spend of the log in `b`'s scope over [start, end)."""
    return metered.total(
        con, start, end, sources=b.sources, facets=bmod.scope_facets(b), exclude_instance=exclude_instance
    )


def hourly_metered(con, b: bmod.Budget, start: datetime, end: datetime) -> list[float]:
    """Metered spend an hour in `b`'s scope over [start, end), empty hours included."""
    return metered.hourly(con, start, end, sources=b.sources, facets=bmod.scope_facets(b))
