"""Per-key request rate limits: a token bucket per key.

Each key may send `per_minute` requests a minute: its bucket holds up to `per_minute` tokens
(a burst of one minute's allowance) and refills continuously at `per_minute / 60` a second. A
request takes one token; without one it is refused and told how long to wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str, per_minute: int) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        if per_minute <= 0:
            return 0.0
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
