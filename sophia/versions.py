"""Routing settings as numbered versions in the database, so every record names its policy."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import duckdb

from .config import Config


def settings_of(cfg: Config) -> dict:
    """The settings a decision depends on (scorer and routing), as plain JSON data."""
    return {"scorer": asdict(cfg.scorer), "routing": asdict(cfg.routing)}


def digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def ensure(con: duckdb.DuckDBPyConnection, cfg: Config, origin: str = "config", note: str | None = None) -> int:
    """The version number of these settings, adding a version when they are new."""
    s = settings_of(cfg)
    d = digest(s)
    row = con.execute(
        "SELECT version FROM settings_versions WHERE digest = ? ORDER BY version DESC LIMIT 1", [d]
    ).fetchone()
    if row:
        return row[0]
    version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM settings_versions").fetchone()[0]
    con.execute(
        "INSERT INTO settings_versions VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?)",
        [version, d, origin, note, json.dumps(s)],
    )
    return version
