"""The threads that run the synchronous router for the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


def _set_result(fut: asyncio.Future, value: object) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class RoutingPool:
    """The threads that run the synchronous router for the event loop.

    Lighter than ThreadPoolExecutor with run_in_executor (no concurrent Future, no chaining of
    two futures): a job goes on a queue with its asyncio future, and the thread that runs it
    sets the result with one call_soon_threadsafe. Threads start on demand, up to `size`; when
    all are busy, jobs wait in the queue. close() runs every queued job, then joins the threads.
    """

    def __init__(self, size: int, name: str = "sophia-route") -> None:
        self._size, self._name = size, name
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable, *args: object) -> None:
        """Run fn(*args) on a routing thread; its result is dropped (it must handle its errors)."""
        if self._closed:
            raise RuntimeError("the server is shutting down")
        self._q.put((fn, args))
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle thread will take it
            elif len(self._threads) < self._size:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()

    def busy(self) -> int:
        """Threads running a job now."""
        with self._lock:
            return len(self._threads) - self._idle

    def queued(self) -> int:
        """Jobs waiting for a thread (approximate, as SimpleQueue.qsize is)."""
        return self._q.qsize()

    def run(self, fn: Callable, *args: object) -> asyncio.Future:
        """fn(*args) on a routing thread, as an awaitable."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.submit(self._call, loop, fut, fn, args)
        return fut

    @staticmethod
    def _call(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, fn: Callable, args: tuple) -> None:
        try:
            value = fn(*args)
        except BaseException as e:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_set_exception, fut, e)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_result, fut, value)

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # submit()'s jobs handle their own errors; never lose the thread
                logger.exception("a routing job failed")
            with self._lock:
                self._idle += 1

    def close(self, timeout: float | None = None) -> bool:
        """Let every queued job run, then stop the threads; False if some are still busy at `timeout`."""
        with self._lock:
            first = not self._closed
            self._closed = True
            threads = list(self._threads)
        if first:
            for _ in threads:
                self._q.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
