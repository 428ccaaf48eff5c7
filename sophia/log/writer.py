"""One writer thread per process: records go on a queue and reach the log in batches.

Putting a record on the queue is all the request path pays. The thread appends each batch as
one Arrow table straight into the database when it can hold the file (through `append`, so a
batch retried after a failure cannot duplicate a request), and otherwise writes it
as a durable segment into the inbox beside it (see `inbox`). A clean close flushes everything;
a crash loses at most one flush interval.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time

import duckdb

from sophia.log import inbox, schema
from sophia.log.append import append
from sophia.log.db import Database, DatabaseError

logger = logging.getLogger(__name__)


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class Writer:
    def __init__(self, db: Database, flush_interval_s: float = 0.1, max_batch: int = 100_000) -> None:
        self.db = db
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = False
        self.written = 0  # rows that reached the database file directly
        self.spilled = 0  # rows that went to the inbox
        self.errors: list[str] = []
        self._held: list[dict] = []  # a batch that failed to write, tried again first
        self._thread = threading.Thread(target=self._run, name="sophia-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def put(self, record: dict) -> None:
        """Queue one record (a dict of schema columns). Never touches the database."""
        self._q.put(record)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything queued so far is written (to the file or the inbox).
        False when that did not happen in time (the records stay queued)."""
        if not self._thread.is_alive():
            return self._q.empty() and not self._held
        marker = _Flush()
        self._q.put(marker)
        return marker.done.wait(timeout)

    def close(self) -> None:
        if self._stop:
            return
        if not self.flush(60):
            self._report("closing with records that could not be written (see the errors above)")
        self._stop = True
        self._q.put(_Flush())
        self._thread.join(timeout=30)

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            try:
                first = self._q.get(timeout=self.flush_interval_s)
            except queue.Empty:
                continue
            batch, markers = [], []
            item = first
            deadline = time.monotonic() + self.flush_interval_s
            while True:
                if isinstance(item, _Flush):
                    markers.append(item)
                else:
                    batch.append(item)
                if markers or len(batch) >= self.max_batch:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    # Gather for the rest of the interval: fewer, larger appends.
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._q.get(timeout=left)
                    except queue.Empty:
                        break
            batch = self._held + batch
            self._held = []
            if batch:
                try:
                    self._write(batch)
                except Exception as e:  # a full disk, a broken file: keep the records, try again
                    self._report(f"{len(batch)} records could not be written yet ({e}); retrying")
                    self._held = batch
                    time.sleep(min(self.flush_interval_s * 10, 1.0))
                    for m in markers:  # still owed: answered once the records are written
                        self._q.put(m)
                    continue
            for m in markers:
                m.done.set()

    def _write(self, batch: list[dict]) -> None:
        try:
            table = schema.to_arrow(batch)
        except Exception as e:  # a malformed record must not take the others down
            self._report(f"a batch could not be encoded ({e}); salvaging it record by record")
            table = self._salvage(batch)
            if table is None:
                return
        con = None
        try:
            con = self.db.try_acquire(polite=True)
        except DatabaseError as e:
            self._report(str(e))
        if con is not None:
            try:
                cur = con.cursor()
                try:
                    append(cur, table)
                finally:
                    cur.close()
                self.written += table.num_rows
                return
            except duckdb.Error as e:
                self._report(f"append failed, records kept in the inbox: {e}")
            finally:
                self.db.release()
        if self.db.inbox is None:
            self._report(f"{table.num_rows} records lost: in-memory database unavailable")
            return
        inbox.write_segment(self.db.inbox, table)
        self.spilled += table.num_rows

    def _salvage(self, batch: list[dict]):
        """Encode a batch that failed as a whole: text that is not valid Unicode (a lone surrogate
        from an upstream's reply) is stored with U+FFFD in its place; a record that still cannot be
        encoded is reported and dropped alone."""
        good = []
        for r in batch:
            r = {k: _text(v) for k, v in r.items()}
            try:
                schema.to_arrow([r])
            except Exception as e:
                self._report(f"record {r.get('request_id')} could not be encoded and was dropped: {e}")
                continue
            good.append(r)
        return schema.to_arrow(good) if good else None

    def _report(self, msg: str) -> None:
        self.errors.append(msg)
        logger.warning("%s", msg)


def _text(v):
    """Strings (and lists of strings) as valid UTF-8: unpaired surrogates become U+FFFD."""
    if isinstance(v, str):
        return v.encode("utf-8", "replace").decode("utf-8")
    if isinstance(v, list):
        return [_text(x) for x in v]
    return v
