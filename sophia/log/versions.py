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


@dataclass(frozen=True)
class Version:
    version: int
    created_at: datetime
    origin: str
    note: str | None
    settings: dict


def _insert(con, settings: dict, origin: str, note: str | None) -> int:
    version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM settings_versions").fetchone()[0]
    con.execute(
        "INSERT INTO settings_versions VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?)",
        [version, digest(settings), origin, note, json.dumps(settings)],
    )
    return version


def history(con: duckdb.DuckDBPyConnection) -> list[Version]:
    rows = con.execute(
        "SELECT version, created_at, origin, note, settings FROM settings_versions ORDER BY version DESC"
    ).fetchall()
    return [Version(v, c, o, n, json.loads(s)) for v, c, o, n, s in rows]


def resolve(con: duckdb.DuckDBPyConnection, cfg: Config) -> tuple[int, Config]:
    """The active version and the configuration it gives.

    When the file's settings differ from the last ones seen from the file, the file was
    edited: it becomes a new version. Otherwise the newest version (perhaps applied from the
    tuning page) stays active.
    """
    mine = settings_of(cfg)
    last_file = con.execute(
        "SELECT digest FROM settings_versions WHERE origin = 'config' ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if last_file is None or last_file[0] != digest(mine):
        return _insert(con, mine, "config", None), cfg
    latest = history(con)[0]
    return latest.version, config_from(cfg, latest.settings)


def ensure(con: duckdb.DuckDBPyConnection, cfg: Config) -> int:
    """The active version number for `cfg` (see `resolve`)."""
    return resolve(con, cfg)[0]


def apply(con: duckdb.DuckDBPyConnection, cfg: Config, origin: str = "tuning", note: str | None = None) -> int:
    """Store `cfg`'s settings as the newest version; live routing uses it from the next request."""
    return _insert(con, settings_of(cfg), origin, note)


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two stored settings, one line per value."""
    out = []
    for section in ("routing", "scorer"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: {a.get(key)!r} → {b.get(key)!r}")
    return out
