"""Durable segment files for records that could not reach the database file.

A segment is a Parquet file written whole under a temporary name, synced, then renamed, so
a reader never sees half of one. Whichever process next holds the database ingests every
segment exactly once: rows whose request id is already logged are skipped, so a crash
between the insert and the file's removal cannot duplicate anything.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sophia.log.append import append_from

SUFFIX = ".parquet"
logger = logging.getLogger(__name__)


def pending(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.name.endswith(SUFFIX) for e in it)
    except FileNotFoundError:
        return False


def write_segment(folder: Path, table: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"segment-{uuid.uuid4().hex}"
    tmp = folder / f".{name}.tmp"
    final = folder / f"{name}{SUFFIX}"
    with open(tmp, "wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def ingest(con: duckdb.DuckDBPyConnection, folder: Path) -> int:
    """Move every segment into `requests`; returns the rows added."""
    try:
        files = sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
    except FileNotFoundError:
        return 0
    added = 0
    for path in files:
        try:
            con.execute("BEGIN TRANSACTION")
            n = append_from(con, "read_parquet(?)", [str(path)])
            con.execute("COMMIT")
        except duckdb.Error as e:
            con.execute("ROLLBACK")
            # Keep an unreadable segment aside rather than lose or retry it forever, and say so.
            bad = path.with_suffix(".bad")
            path.rename(bad)
            logger.error("inbox segment %s could not be ingested (%s); kept aside", bad, e)
            continue
        added += n
        path.unlink(missing_ok=True)
    return added
