"""The database file, held only while in use (DESIGN invariant 5).

DuckDB lets one process open a file at a time. Each process opens it on demand, shares the
one connection between its threads (a cursor each), and closes it after a short idle time or
after holding it for `max_hold_s`, so that the app, the CLI and the API server take turns.
A caller that finds the file busy waits and retries, reporting progress through `on_wait`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from sophia.log import inbox, migrations

logger = logging.getLogger(__name__)
MEMORY = ":memory:"


class DatabaseBusy(RuntimeError):
    """Another process held the database file for longer than we were willing to wait."""


class DatabaseError(RuntimeError):
    """The database file cannot be used (not a DuckDB file, unreadable, ...)."""


def _is_lock_error(e: Exception) -> bool:
    text = str(e).lower()
    return "lock" in text and ("could not set" in text or "conflicting" in text or "in use" in text)


def default_path() -> str:
    return os.environ.get("SOPHIA_DB") or str(Path("data") / "sophia.duckdb")


class Database:
    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        idle_s: float = 0.3,
        max_hold_s: float = 1.0,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = str(path) if path is not None else default_path()
        self.memory = self.path == MEMORY
        self.inbox = None if self.memory else Path(self.path + ".inbox")
        self.idle_s = idle_s
        self.max_hold_s = max_hold_s
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._ino: tuple[int, int] | None = None  # the open file's identity, to notice it being deleted
        self._users = 0
        self._opened_at = 0.0
        self._last_used = 0.0
        self._yield_until = 0.0
        self._closed = False
        self._janitor: threading.Thread | None = None
        self.opens = 0  # how many times the file was opened (for tests and benchmarks)
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    # --- holding the file ---------------------------------------------------------

    def _open(self) -> None:
        """Open the file (caller holds _lock); raises duckdb.IOException when busy."""
        try:
            con = duckdb.connect(self.path)
        except duckdb.IOException as e:
            if _is_lock_error(e):
                raise
            raise DatabaseError(f"cannot open database {self.path}: {e}") from None
        except duckdb.Error as e:
            raise DatabaseError(f"cannot open database {self.path}: {e}") from None
        try:
            migrations.apply(con)
            if self.inbox is not None:
                inbox.ingest(con, self.inbox)
        except migrations.ForeignDatabase as e:
            con.close()
            raise DatabaseError(f"cannot use database {self.path}: {e}") from None
        except BaseException:
            con.close()
            raise
        self._con = con
        self._ino = self._inode()
        self._opened_at = time.monotonic()
        self.opens += 1
        self._start_janitor()

    def try_acquire(self, *, polite: bool = False) -> duckdb.DuckDBPyConnection | None:
        """One attempt to hold the file; None when another process has it.

        `polite` callers (the writer) also step back right after a long hold, so that
        other processes get their turn.
        """
        with self._lock:
            if self._closed:
                raise DatabaseError("database is closed")
            if self._con is not None and self._users == 0 and not self.memory and self._inode() != self._ino:
                # The file was deleted or replaced under us: what we wrote now would go to a file
                # nobody can open again. Say so, and start on whatever is at the path now.
                logger.error(
                    "the database file %s was deleted or replaced while open; continuing with a new one at that path",
                    self.path,
                )
                self._con.close()
                self._con = None
            if self._con is None:
                if polite and time.monotonic() < self._yield_until:
                    return None
                try:
                    self._open()
                except duckdb.IOException:
                    return None
            self._users += 1
            return self._con

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            self._last_used = time.monotonic()

    def acquire(
        self, wait_s: float | None = None, on_wait: Callable[[float], None] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """Hold the file, waiting up to `wait_s` while another process has it."""
        wait_s = self.busy_timeout_s if wait_s is None else wait_s
        start = time.monotonic()
        delay = 0.01
        while True:
            con = self.try_acquire()
            if con is not None:
                return con
            waited = time.monotonic() - start
            if waited >= wait_s:
                raise DatabaseBusy(
                    f"database {self.path} is in use by another process (waited {waited:.1f} s); try again in a moment"
                )
            if on_wait is not None:
                on_wait(waited)
            time.sleep(min(delay * (0.5 + random.random()), max(wait_s - waited, 0.001)))
            delay = min(delay * 1.6, 0.1)

    @contextmanager
    def cursor(
        self, wait_s: float | None = None, on_wait: Callable[[float], None] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of this thread on the held file; the file is released afterwards."""
        con = self.acquire(wait_s, on_wait)
        try:
            if self.inbox is not None and inbox.pending(self.inbox):
                with self._lock:
                    inbox.ingest(con, self.inbox)
            cur = con.cursor()
            try:
                yield cur
            finally:
                cur.close()
        finally:
            self.release()

    def _inode(self) -> tuple[int, int] | None:
        """The file's identity (device, inode); None when nothing is at the path."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    # --- letting go -----------------------------------------------------------------

    def _start_janitor(self) -> None:
        if self.memory or (self._janitor and self._janitor.is_alive()):
            return
        self._janitor = threading.Thread(target=self._janitor_loop, name="sophia-db-janitor", daemon=True)
        self._janitor.start()

    def _janitor_loop(self) -> None:
        tick = min(self.idle_s, self.max_hold_s) / 3
        while True:
            time.sleep(tick)
            with self._lock:
                if self._closed or self._con is None:
                    return
                now = time.monotonic()
                idle = self._users == 0 and now - self._last_used >= self.idle_s
                held_long = self._users == 0 and now - self._opened_at >= self.max_hold_s
                if idle or held_long:
                    if held_long and not idle:
                        # Step back for a moment so a waiting process can take the file.
                        self._yield_until = now + 0.15
                    self._con.close()
                    self._con = None
                    return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._con is not None:
                self._con.close()
                self._con = None

    @property
    def is_open(self) -> bool:
        return self._con is not None
