"""The one way records enter the log: a whole table per statement, idempotent by request id.

The writer thread, bulk imports, demo traffic and inbox segments all append through here, so
a batch written twice (a retry after a failure, a segment ingested again after a crash) never
duplicates a request (DESIGN invariant 2). The caller holds the database.
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa

logger = logging.getLogger(__name__)

_VIEW = "_sophia_append"


def append_from(cur: duckdb.DuckDBPyConnection, source: str, params: list | None = None) -> int:
    """Insert the rows of `source` (a table name or a table function such as `read_parquet(?)`)
    whose request id is not logged yet; returns the rows added.

    A logged copy of a record has the same `ts`, so only the log's rows within the batch's time
    span can be duplicates: DuckDB reads just those row groups (by their min/max), and when
    there are none (a fresh import) the rows go in without a join, which would hold the whole
    batch in memory. A flush then costs the same on a log of ten million rows as on an empty one."""
    params = params or []
    lo, hi, nulls, dups = cur.execute(
        f"SELECT min(ts), max(ts), count(*) FILTER (WHERE request_id IS NULL), "
        f"count(request_id) - count(DISTINCT request_id) FROM {source}",
        params,
    ).fetchone()
    if nulls:
        logger.warning("%d records without a request id were not logged (every record needs one)", nulls)
    if dups:  # one record per id: a segment or batch that holds a request twice stores it once
        source = f"(SELECT DISTINCT ON (request_id) * FROM {source} WHERE request_id IS NOT NULL)"
    elif nulls:
        source = f"(SELECT * FROM {source} WHERE request_id IS NOT NULL)"
    if lo is None:  # no time to bound by: check the whole log
        check, bounds = "WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.request_id = s.request_id)", []
    elif cur.execute("SELECT 1 FROM requests WHERE ts BETWEEN ? AND ? LIMIT 1", [lo, hi]).fetchone():
        check = "WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.ts BETWEEN ? AND ? AND r.request_id = s.request_id)"
        bounds = [lo, hi]
    else:
        check, bounds = "", []
    row = cur.execute(f"INSERT INTO requests BY NAME SELECT s.* FROM {source} s {check}", [*params, *bounds]).fetchone()
    return int(row[0]) if row else 0


def append(cur: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Append an Arrow table of records in one statement, skipping request ids already logged."""
    cur.register(_VIEW, table)
    try:
        return append_from(cur, _VIEW)
    finally:
        cur.unregister(_VIEW)
