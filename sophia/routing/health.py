"""Endpoint health: consecutive failures put an endpoint in cool-down; a check brings it back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class EndpointHealth:
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    successes: int = 0
    failures: int = 0
    last_error: str | None = None
    last_latency_ms: float | None = None


class Health:
    def __init__(
        self,
        names: Iterable[str],
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = {n: EndpointHealth() for n in names}

    def unhealthy(self) -> frozenset[str]:
        """Endpoints cooling down now. After the cool-down an endpoint is tried again
        (half-open): one more failure sends it straight back."""
        now = self._clock()
        return frozenset(n for n, s in self._state.items() if s.cooldown_until > now)

    def success(self, name: str, latency_ms: float | None = None) -> None:
        with self._lock:
            s = self._state[name]
            s.consecutive_failures = 0
            s.cooldown_until = 0.0
            s.successes += 1
            if latency_ms is not None:
                s.last_latency_ms = latency_ms

    def failure(self, name: str, error: str) -> None:
        with self._lock:
            s = self._state[name]
            s.consecutive_failures += 1
            s.failures += 1
            s.last_error = error
            if s.consecutive_failures >= self.failure_threshold:
                s.cooldown_until = self._clock() + self.cooldown_s

    def due_for_check(self) -> list[str]:
        """Endpoints that failed enough to cool down: a health check may re-admit them."""
        return [n for n, s in self._state.items() if s.consecutive_failures >= self.failure_threshold]

    def state(self, name: str) -> str:
        s = self._state[name]
        if s.cooldown_until > self._clock():
            return "cooling-down"
        if s.consecutive_failures >= self.failure_threshold:
            return "probing"
        return "degraded" if s.consecutive_failures else "healthy"

    def snapshot(self) -> dict[str, dict]:
        now = self._clock()
        with self._lock:
            return {
                n: {
                    "state": self.state(n),
                    "consecutive_failures": s.consecutive_failures,
                    "cooldown_remaining_s": max(0.0, round(s.cooldown_until - now, 1)),
                    "successes": s.successes,
                    "failures": s.failures,
                    "last_error": s.last_error,
                    "last_latency_ms": s.last_latency_ms,
                }
                for n, s in self._state.items()
            }
