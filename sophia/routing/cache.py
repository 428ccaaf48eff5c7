"""Exact-match response cache with a time to live."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cachetools import TTLCache


@dataclass(frozen=True)
class CachedReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    tier: str
    endpoint: str
    model: str


def cache_key(
    messages: Sequence[Mapping], max_tokens: int, force_tier: str | None, force_model: str | None, settings: str = ""
) -> str:
    """Same conversation, same limits, same forced choices, same routing settings."""
    payload = json.dumps(
        [list(messages), max_tokens, force_tier, force_model, settings], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache: TTLCache = TTLCache(maxsize=max_entries, ttl=ttl_s, timer=clock)
        self._lock = threading.Lock()  # TTLCache is not thread-safe

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: str, reply: CachedReply) -> None:
        with self._lock:
            self._cache[key] = reply

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
