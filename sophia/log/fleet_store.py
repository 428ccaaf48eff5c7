"""The fleet's history in the database: which dedicated endpoints ran, at what price, and when.

The configured fleet is kept in step with the configuration file: `sync` opens a period for a
dedicated endpoint that appears (or changes price) and closes the period of one that left.
The first fleet ever seen starts at the first request this deployment routed (it served that
traffic), or now. Traffic that brings its own past (demo traffic, an import with
`--charge-fleet`) can ask for the configured fleet over its own span: `charge_span`.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from sophia.config import Config
from sophia.money.fleet import FleetPeriod
from sophia.vocab import LIVE_SOURCES, Tier

_LIVE = ", ".join(f"'{s}'" for s in LIVE_SOURCES)


def _configured(cfg: Config) -> dict[str, float]:
    return {e.name: float(e.hourly_usd) for e in cfg.tier_endpoints(Tier.DEDICATED)}


def sync(con: duckdb.DuckDBPyConnection, cfg: Config, now: datetime) -> None:
    """Bring the configured fleet's periods in step with `cfg` at `now`."""
    want = _configured(cfg)
    first_live = con.execute(f"SELECT min(ts) FROM requests WHERE source IN ({_LIVE})").fetchone()[0]
    rows = con.execute(
        "SELECT rowid, endpoint, hourly_usd, start_ts FROM fleet_periods WHERE source IS NULL AND end_ts IS NULL"
    ).fetchall()
    any_before = con.execute("SELECT count(*) FROM fleet_periods WHERE source IS NULL").fetchone()[0] > 0
    running = {}
    for rowid, ep, hourly, _start in rows:
        if want.get(ep) != hourly:
            con.execute("UPDATE fleet_periods SET end_ts = ? WHERE rowid = ?", [now, rowid])
        else:
            running[ep] = rowid
    start = now if any_before or first_live is None else min(now, first_live)
    for ep, hourly in want.items():
        if ep not in running:
            con.execute("INSERT INTO fleet_periods VALUES (?, ?, ?, NULL, NULL, now()::TIMESTAMP)", [ep, hourly, start])
    if first_live is not None:
        # Live traffic logged before the first period began (an older log, a back-dated clock)
        # was served by that first fleet: it ran from then.
        con.execute(
            """UPDATE fleet_periods SET start_ts = ?
               WHERE source IS NULL AND start_ts > ?
                 AND start_ts = (SELECT min(start_ts) FROM fleet_periods WHERE source IS NULL)""",
            [first_live, first_live],
        )


def charge_span(con: duckdb.DuckDBPyConnection, cfg: Config, source: str, start: datetime, end: datetime) -> None:
    """Charge the configured fleet's GPU-hours over [start, end) to traffic `source` (asked for
    by demo traffic and by imports with --charge-fleet); a span already charged is widened."""
    for ep, hourly in _configured(cfg).items():
        row = con.execute(
            "SELECT rowid, start_ts, end_ts FROM fleet_periods WHERE source = ? AND endpoint = ?", [source, ep]
        ).fetchone()
        if row is None:
            con.execute(
                "INSERT INTO fleet_periods VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP)", [ep, hourly, start, end, source]
            )
        else:
            con.execute(
                "UPDATE fleet_periods SET start_ts = ?, end_ts = ?, hourly_usd = ? WHERE rowid = ?",
                [min(row[1], start), max(row[2], end), hourly, row[0]],
            )


def periods(con: duckdb.DuckDBPyConnection) -> list[FleetPeriod]:
    """Every fleet period, oldest first."""
    rows = con.execute(
        "SELECT endpoint, hourly_usd, start_ts, end_ts, source FROM fleet_periods ORDER BY start_ts, endpoint"
    ).fetchall()
    return [FleetPeriod(*r) for r in rows]


def synced(con: duckdb.DuckDBPyConnection, cfg: Config, now: datetime) -> list[FleetPeriod]:
    """The fleet's periods after bringing the configured fleet in step with `cfg`."""
    sync(con, cfg, now)
    return periods(con)
