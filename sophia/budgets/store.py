"""Budgets in the database: versioned like routing settings, and their spend from the log."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sophia.budgets import model as bmod
from sophia.config import Config


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(con, cfg: Config) -> tuple[int, list[bmod.Budget]]:
    """The active budgets: the file's when they changed since last seen, else the newest version."""
    mine, _ = bmod.from_config(cfg)
    text = bmod.to_json(mine)
    last_file = con.execute(
        "SELECT digest FROM budget_versions WHERE origin = 'config' ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if last_file is None or last_file[0] != _digest(text):
        return save(con, mine, "config"), mine
    version, raw = con.execute("SELECT version, budgets FROM budget_versions ORDER BY version DESC LIMIT 1").fetchone()
    return version, bmod.from_json(raw, cfg)


def save(con, budgets: list[bmod.Budget], origin: str, note: str | None = None) -> int:
    names = [b.name for b in budgets]
    if len(set(names)) != len(names):
        raise ValueError("budget names must be unique")
    text = bmod.to_json(budgets)
    version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM budget_versions").fetchone()[0]
    con.execute(
        "INSERT INTO budget_versions VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?)",
        [version, _digest(text), origin, note, text],
    )
    return version


def latest_version(con) -> int:
    return con.execute("SELECT coalesce(max(version), 0) FROM budget_versions").fetchone()[0]


def metered_spend(con, b: bmod.Budget, start: datetime, end: datetime, exclude_instance: str | None = None) -> float:
    """Metered spend of the log in `b`'s scope over [start, end)."""
    clause, params = bmod.scope_sql(b)
    if exclude_instance:
        clause += " AND coalesce(instance, '') <> ?"
        params.append(exclude_instance)
    return con.execute(
        f"SELECT coalesce(sum(metered_cost_usd), 0) FROM requests WHERE ts >= ? AND ts < ? AND {clause}",
        [start, end, *params],
    ).fetchone()[0]


def hourly_metered(con, b: bmod.Budget, start: datetime, end: datetime) -> list[float]:
    """Metered spend an hour in `b`'s scope over [start, end), empty hours included."""
    clause, params = bmod.scope_sql(b)
    rows = dict(
        con.execute(
            f"SELECT date_trunc('hour', ts) AS h, sum(metered_cost_usd) FROM requests "
            f"WHERE ts >= ? AND ts < ? AND {clause} GROUP BY 1",
            [start, end, *params],
        ).fetchall()
    )
    hours = max(int((end - start).total_seconds() // 3600), 1)
    base = start.replace(minute=0, second=0, microsecond=0)
    return [float(rows.get(base + timedelta(hours=i), 0.0) or 0.0) for i in range(hours)]
