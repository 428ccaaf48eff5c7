"""Numbered, append-only versions of a settings document, for routing policies and budgets alike.

A version table has the columns (version, created_at, digest, origin, note, <document>), the
document stored as JSON text. The configuration file seeds a version (origin `config`)
whenever its document changes; the app, the CLI and rollbacks add versions on top; the newest
version is the active one. Each user brings its own digest, so versions already stored keep
comparing equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

CONFIG = "config"  # the origin of versions seeded from the configuration file


@dataclass(frozen=True)
class Stored:
    version: int
    created_at: datetime
    origin: str
    note: str | None
    document: str  # JSON text


@dataclass(frozen=True)
class VersionStore:
    table: str  # a table created by a migration
    document: str  # its JSON column

    def insert(self, con: duckdb.DuckDBPyConnection, text: str, digest: str, origin: str, note: str | None) -> int:
        """Store `text` as the next version; returns its number."""
        version = self.latest_version(con) + 1
        con.execute(
            f"INSERT INTO {self.table} VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?)",
            [version, digest, origin, note, text],
        )
        return version

    def history(self, con: duckdb.DuckDBPyConnection) -> list[Stored]:
        """Every version, newest first."""
        rows = con.execute(
            f"SELECT version, created_at, origin, note, {self.document} FROM {self.table} ORDER BY version DESC"
        ).fetchall()
        return [Stored(*r) for r in rows]

    def latest(self, con: duckdb.DuckDBPyConnection) -> Stored | None:
        row = con.execute(
            f"SELECT version, created_at, origin, note, {self.document} FROM {self.table} ORDER BY version DESC LIMIT 1"
        ).fetchone()
        return Stored(*row) if row else None

    def latest_version(self, con: duckdb.DuckDBPyConnection) -> int:
        return con.execute(f"SELECT coalesce(max(version), 0) FROM {self.table}").fetchone()[0]

    def seed(self, con: duckdb.DuckDBPyConnection, text: str, digest: str) -> int | None:
        """A new `config` version when the file's document differs from the last one seen from
        the file (the file was edited); None when it did not change."""
        last = con.execute(
            f"SELECT digest FROM {self.table} WHERE origin = ? ORDER BY version DESC LIMIT 1", [CONFIG]
        ).fetchone()
        if last is not None and last[0] == digest:
            return None
        return self.insert(con, text, digest, CONFIG, None)
