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
from sophia.money import fleet
from sophia.money.fleet import FleetPeriod
from sophia.vocab import LIVE_SOURCES, Tier

_LIVE = ", ".join(f"'{s}'" for s in LIVE_SOURCES)
_FIELDS = "endpoint, hourly_usd, start_ts, end_ts, source"  # in FleetPeriod's order


def _configured(cfg: Config) -> dict[str, float]:
    return {e.name: float(e.hourly_usd) for e in cfg.tier_endpoints(Tier.DEDICATED)}


def _first_live(con: duckdb.DuckDBPyConnection) -> datetime | None:
    return con.execute(f"SELECT min(ts) FROM requests WHERE source IN ({_LIVE})").fetchone()[0]


def sync(con: duckdb.DuckDBPyConnection, cfg: Config, now: datetime) -> None:
    """Bring the configured fleet's periods in step with `cfg` at `now` (`fleet.in_step`), writing
    only what changed. Called when a configuration is opened, never on a read."""
    rows = con.execute(f"SELECT rowid, {_FIELDS} FROM fleet_periods ORDER BY start_ts, endpoint").fetchall()
    old = [FleetPeriod(*r[1:]) for r in rows]
    new = fleet.in_step(old, _configured(cfg), now, _first_live(con))
    for (rowid, *_), before, after in zip(rows, old, new, strict=False):
        if after != before:
            con.execute(
                "UPDATE fleet_periods SET start_ts = ?, end_ts = ? WHERE rowid = ?", [after.start, after.end, rowid]
            )
    for p in new[len(old) :]:
        con.execute(
            "INSERT INTO fleet_periods VALUES (?, ?, ?, ?, NULL, now()::TIMESTAMP)",
            [p.endpoint, p.hourly_usd, p.start, p.end],
        )


def current(con: duckdb.DuckDBPyConnection, cfg: Config, now: datetime) -> list[FleetPeriod]:
    """The fleet's periods as they stand with `cfg` at `now`, without writing: a read sees the
    configured fleet even where nothing has synced it yet."""
    return fleet.in_step(periods(con), _configured(cfg), now, _first_live(con))


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
    rows = con.execute(f"SELECT {_FIELDS} FROM fleet_periods ORDER BY start_ts, endpoint").fetchall()
    return [FleetPeriod(*r) for r in rows]
