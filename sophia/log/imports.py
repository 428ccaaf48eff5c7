"""Imported files in the log: which file became which source, and the labels it brought."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import duckdb
import pyarrow as pa

from sophia.log.append import append


@dataclass(frozen=True)
class ImportRow:
    import_id: str  # the file's SHA-256
    path: str
    format: str
    source: str
    imported: int
    skipped: int


def source_of(cur: duckdb.DuckDBPyConnection, import_id: str) -> str | None:
    """The source a file with this digest was imported as, or None if it never was."""
    row = cur.execute("SELECT source FROM imports WHERE import_id = ?", [import_id]).fetchone()
    return row[0] if row else None


def store(
    cur: duckdb.DuckDBPyConnection, row: ImportRow, requests: pa.Table, labels: pa.Table | None, now: datetime
) -> int:
    """The requests, their labels and the import's row, in one transaction: all or nothing.
    Returns the requests added (ids already logged are skipped, and the row says so)."""
    cur.execute("BEGIN TRANSACTION")
    try:
        added = append(cur, requests)
        row = replace(row, imported=added)
        if labels is not None:
            cur.register("_labels", labels)
            cur.execute("INSERT INTO request_labels SELECT * FROM _labels")
            cur.unregister("_labels")
        cur.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?)",
            [row.import_id, row.path, row.format, row.source, now, row.imported, row.skipped],
        )
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return added
