"""Budget alerts: recorded once per budget, kind and period, and optionally POSTed to a webhook.

Raising an alert only queues it; one thread records it in the database and delivers it, with
retries and back-off, so a slow or failing webhook never holds up a request. The webhook URL
comes from the environment and is never logged (it often carries a token).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from sophia.budgets.model import Budget
from sophia.log.db import Database, DatabaseBusy, DatabaseError
from sophia.money.format import usd

logger = logging.getLogger(__name__)


def message(b: Budget, kind: str, spent: float) -> str:
    pct = 100 * spent / b.amount_usd
    what = {
        "soft": f"passed its soft limit ({b.soft_limit:.0%})",
        "hard": "reached its limit",
        "forecast": "is forecast to run out before the period ends",
    }[kind]
    return f"budget '{b.name}' ({b.scope}, per {b.period}) {what}: {usd(spent)} of {usd(b.amount_usd)} ({pct:,.0f}%)"


def record(cur, b: Budget, kind: str, period_start: datetime, spent: float, now: datetime) -> bool:
    """Insert the alert unless this budget, kind and period already has one; True if new."""
    before = cur.execute(
        "SELECT count(*) FROM alerts WHERE budget = ? AND kind = ? AND period_start = ?", [b.name, kind, period_start]
    ).fetchone()[0]
    if before:
        return False
    cur.execute(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
        [b.name, kind, period_start, now, spent, b.amount_usd, message(b, kind, spent)],
    )
    return True


def raised(cur) -> list[tuple[str, str, datetime]]:
    """(budget, kind, period start) of every alert already raised, by any process."""
    return cur.execute("SELECT budget, kind, period_start FROM alerts").fetchall()


def recent(cur, limit: int = 50) -> list[dict]:
    rows = cur.execute(
        "SELECT budget, kind, period_start, created_at, spent_usd, amount_usd, message, delivered "
        "FROM alerts ORDER BY created_at DESC LIMIT ?",
        [limit],
    ).fetchall()
    keys = ("budget", "kind", "period_start", "created_at", "spent_usd", "amount_usd", "message", "delivered")
    return [dict(zip(keys, r, strict=True)) for r in rows]


class Notifier:
    """The alert thread of a process."""

    def __init__(
        self,
        db: Database,
        webhook_url: str | None = None,
        *,
        retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.db = db
        self._url = webhook_url
        self.retries, self.backoff_s, self.sleep = retries, backoff_s, sleep
        self._client = httpx.Client(timeout=timeout_s, transport=transport) if webhook_url else None
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.delivered = 0
        self.failed = 0
        self.recorded = 0
        self._thread = threading.Thread(target=self._run, name="sophia-alerts", daemon=True)
        self._thread.start()

    def raise_alert(self, b: Budget, kind: str, period_start: datetime, spent: float) -> None:
        """Queue an alert; returns at once."""
        self._q.put((b, kind, period_start, spent, datetime.now(UTC).replace(tzinfo=None)))

    def drain(self, timeout: float = 30.0) -> bool:
        done = threading.Event()
        self._q.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        self.drain(10)
        self._q.put(None)
        self._thread.join(5)
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            b, kind, start, spent, now = item
            try:
                with self.db.cursor() as cur:
                    new = record(cur, b, kind, start, spent, now)
            except (DatabaseBusy, DatabaseError) as e:
                logger.warning("alert for budget '%s' not recorded: %s", b.name, e)
                new = True  # still tell the webhook: an alert must not vanish with the file busy
            if not new:
                continue
            self.recorded += 1
            if self._client is not None:
                ok = self._post(b, kind, start, spent, now)
                try:
                    with self.db.cursor() as cur:
                        cur.execute(
                            "UPDATE alerts SET delivered = ? WHERE budget = ? AND kind = ? AND period_start = ?",
                            [ok, b.name, kind, start],
                        )
                except (DatabaseBusy, DatabaseError) as e:  # the alert itself is recorded
                    logger.warning("delivery of the alert for budget '%s' not recorded: %s", b.name, e)

    def _post(self, b: Budget, kind: str, start: datetime, spent: float, now: datetime) -> bool:
        body = {
            "budget": b.name,
            "scope": b.scope,
            "period": b.period,
            "period_start": start.isoformat() + "Z",
            "kind": kind,
            "spent_usd": round(spent, 6),
            "amount_usd": b.amount_usd,
            "message": message(b, kind, spent),
            "raised_at": now.isoformat() + "Z",
        }
        for attempt in range(self.retries):
            try:
                r = self._client.post(self._url, content=json.dumps(body), headers={"content-type": "application/json"})
                if r.status_code < 300:
                    self.delivered += 1
                    return True
                why = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                why = type(e).__name__  # never the URL: it may hold a token
            if attempt + 1 < self.retries:
                self.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
        logger.warning("alert webhook failed after %d tries (%s)", self.retries, why)
        return False


def webhook_url(env_name: str | None) -> str | None:
    return os.environ.get(env_name) if env_name else None
