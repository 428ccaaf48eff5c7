"""Schema migrations: an ordered list of small functions, each recorded once when applied."""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from sophia.log import schema


def m001_requests(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(schema.create_requests_sql())


def m002_settings_versions(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """CREATE TABLE IF NOT EXISTS settings_versions (
             version INTEGER PRIMARY KEY,
             created_at TIMESTAMP NOT NULL,
             digest VARCHAR NOT NULL,
             origin VARCHAR NOT NULL,   -- 'config' (the file) or where it was applied from
             note VARCHAR,
             settings JSON NOT NULL
           )"""
    )


def m003_imports(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """CREATE TABLE IF NOT EXISTS imports (
             import_id VARCHAR PRIMARY KEY,  -- the file's SHA-256 and format: a second import adds nothing
             path VARCHAR NOT NULL,
             format VARCHAR NOT NULL,
             source VARCHAR NOT NULL,
             imported_at TIMESTAMP NOT NULL,
             rows_imported BIGINT NOT NULL,
             rows_skipped BIGINT NOT NULL
           )"""
    )


def m004_request_labels(con: duckdb.DuckDBPyConnection) -> None:
    # Per-model correctness (and real output length) of labelled evaluation prompts.
    con.execute(
        """CREATE TABLE IF NOT EXISTS request_labels (
             request_id VARCHAR NOT NULL,
             model VARCHAR NOT NULL,
             correct BOOLEAN NOT NULL,
             completion_tokens INTEGER
           )"""
    )


def m005_request_instance(con: duckdb.DuckDBPyConnection) -> None:
    # The process that routed a request, so a process can tell its own spend from others'.
    con.execute("ALTER TABLE requests ADD COLUMN IF NOT EXISTS instance VARCHAR")


def m006_alerts(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """CREATE TABLE IF NOT EXISTS alerts (
             budget VARCHAR NOT NULL,
             kind VARCHAR NOT NULL,          -- soft | hard | forecast
             period_start TIMESTAMP NOT NULL,
             created_at TIMESTAMP NOT NULL,
             spent_usd DOUBLE NOT NULL,
             amount_usd DOUBLE NOT NULL,
             message VARCHAR NOT NULL,
             delivered BOOLEAN,              -- webhook outcome; NULL when there is no webhook
             PRIMARY KEY (budget, kind, period_start)
           )"""
    )


def m007_budget_versions(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """CREATE TABLE IF NOT EXISTS budget_versions (
             version INTEGER PRIMARY KEY,
             created_at TIMESTAMP NOT NULL,
             digest VARCHAR NOT NULL,
             origin VARCHAR NOT NULL,
             note VARCHAR,
             budgets JSON NOT NULL
           )"""
    )


# What a gateway request used and what came back (added with the pass-through of the whole API).
REPLY_COLUMNS = (
    ("operation", "VARCHAR"),  # chat | embeddings
    ("finish_reason", "VARCHAR"),
    ("tool_calls", "INTEGER"),
    ("choices", "INTEGER"),
    ("uses_tools", "BOOLEAN"),
    ("response_format", "VARCHAR"),
    ("images", "INTEGER"),
    ("cached_prompt_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
)


def m008_request_reply(con: duckdb.DuckDBPyConnection) -> None:
    for name, kind in REPLY_COLUMNS:
        con.execute(f"ALTER TABLE requests ADD COLUMN IF NOT EXISTS {name} {kind}")


def m009_fleet_periods(con: duckdb.DuckDBPyConnection) -> None:
    # When each dedicated endpoint was part of the fleet: GPU-hours accrue only then.
    con.execute(
        """CREATE TABLE IF NOT EXISTS fleet_periods (
             endpoint VARCHAR NOT NULL,
             hourly_usd DOUBLE NOT NULL,
             start_ts TIMESTAMP NOT NULL,
             end_ts TIMESTAMP,               -- NULL: still part of the fleet
             source VARCHAR,                 -- NULL: the configured fleet; else the traffic that asked for it
             created_at TIMESTAMP NOT NULL
           )"""
    )


def m010_failover_cause(con: duckdb.DuckDBPyConnection) -> None:
    # Why a request left its first endpoint (timeout, 5xx, ...): error_kind is cleared once served.
    con.execute("ALTER TABLE requests ADD COLUMN IF NOT EXISTS failover_cause VARCHAR")


def m011_wide_usage(con: duckdb.DuckDBPyConnection) -> None:
    # Token counts as an upstream reports them: 32 bits dropped the row of a count past 2^31 - 1.
    for name in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "reasoning_tokens"):
        con.execute(f"ALTER TABLE requests ALTER COLUMN {name} SET DATA TYPE BIGINT")
    con.execute("ALTER TABLE requests ADD COLUMN IF NOT EXISTS usage_anomaly VARCHAR")


MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [
    m001_requests,
    m002_settings_versions,
    m003_imports,
    m004_request_labels,
    m005_request_instance,
    m006_alerts,
    m007_budget_versions,
    m008_request_reply,
    m009_fleet_periods,
    m010_failover_cause,
    m011_wide_usage,
]


class ForeignDatabase(RuntimeError):
    """The file holds a `requests` table that is not a Sophia request log."""


def _check_not_foreign(con: duckdb.DuckDBPyConnection) -> None:
    # A migration must never alter another program's table: a file whose `requests` table
    # lacks the log's first columns is refused before anything is written to it.
    cols = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'requests' AND table_schema = 'main'"
        ).fetchall()
    }
    missing = [c for c in ("request_id", "ts", "source", "tier", "prompt_tokens") if c not in cols]
    if cols and missing:
        raise ForeignDatabase(
            f"its `requests` table is not a Sophia request log (it lacks {', '.join(missing)}): "
            "point --db at Sophia's log, or at a new file to start one"
        )


def apply(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply the migrations this database lacks, each in its own transaction."""
    _check_not_foreign(con)
    con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    done = {r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            fn(con)
            con.execute("INSERT INTO _migrations VALUES (?, now()::TIMESTAMP)", [fn.__name__])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(fn.__name__)
    return applied
