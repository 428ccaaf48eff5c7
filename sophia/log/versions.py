"""Routing settings as numbered versions in the database, so every record names its policy.

The configuration file seeds a version whenever its settings change; the tuning page and
rollbacks add versions on top. The newest version is the one live routing uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb

from sophia.config import Config
from sophia.config.policy_settings import config_from, digest, settings_of
from sophia.log.settings_store import VersionStore


@dataclass(frozen=True)
class Version:
    version: int
    created_at: datetime
    origin: str
    note: str | None
    settings: dict


_STORE = VersionStore("settings_versions", "settings")


def latest(con: duckdb.DuckDBPyConnection) -> Version | None:
    """The newest version (one row read, for the refresh that runs every few seconds); None in
    a log that holds none yet (a new file)."""
    v = _STORE.latest(con)
    if v is None:
        return None
    return Version(v.version, v.created_at, v.origin, v.note, json.loads(v.document))


def history(con: duckdb.DuckDBPyConnection) -> list[Version]:
    """Every policy version, newest first."""
    return [Version(v.version, v.created_at, v.origin, v.note, json.loads(v.document)) for v in _STORE.history(con)]


def resolve(con: duckdb.DuckDBPyConnection, cfg: Config) -> tuple[int, Config]:
    """The active version and the configuration it gives.

    When the file's settings differ from the last ones seen from the file, the file was
    edited: it becomes a new version. Otherwise the newest version (perhaps applied from the
    tuning page) stays active.
    """
    mine = settings_of(cfg)
    seeded = _STORE.seed(con, json.dumps(mine), digest(mine))
    if seeded is not None:
        return seeded, cfg
    latest = _STORE.latest(con)
    return latest.version, config_from(cfg, json.loads(latest.document))


def ensure(con: duckdb.DuckDBPyConnection, cfg: Config) -> int:
    """The active version number for `cfg` (see `resolve`)."""
    return resolve(con, cfg)[0]


def apply(con: duckdb.DuckDBPyConnection, cfg: Config, origin: str = "tuning", note: str | None = None) -> int:
    """Store `cfg`'s settings as the newest version; live routing uses it from the next request."""
    settings = settings_of(cfg)
    return _STORE.insert(con, json.dumps(settings), digest(settings), origin, note)


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two stored settings, one line per value."""
    out = []
    for section in ("routing", "scorer"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: {a.get(key)!r} → {b.get(key)!r}")
    return out
