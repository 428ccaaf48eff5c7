"""The one way records enter the log: a whole table per statement, idempotent by request id.

The writer thread, bulk imports, demo traffic and inbox segments all append through here, so
a batch written twice (a retry after a failure, a segment ingested again after a crash) never
duplicates a request (DESIGN invariant 2). The caller holds the database.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

_VIEW = "_sophia_append"


def append_from(cur: duckdb.DuckDBPyConnection, source: str, params: list | None = None) -> int:
    """Insert the rows of `source` (a table name or a table function such as `read_parquet(?)`)
    whose request id is not logged yet; returns the rows added."""
    row = cur.execute(
        f"""INSERT INTO requests BY NAME
            SELECT s.* FROM {source} s
            WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.request_id = s.request_id)""",
        params or [],
    ).fetchone()
    return int(row[0]) if row else 0


def append(cur: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Append an Arrow table of records in one statement, skipping request ids already logged."""
    cur.register(_VIEW, table)
    try:
        return append_from(cur, _VIEW)
    finally:
        cur.unregister(_VIEW)
