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
    choices: tuple | list | None = None  # the whole reply, as the upstream sent it
    fingerprint: str | None = None
    usage_details: Mapping | None = None


# Body fields that cannot change what the model writes: left out of the key.
NOT_OUTPUT = frozenset(
    ("model", "stream", "stream_options", "user", "metadata", "store", "service_tier", "prompt_cache_key")
    + ("safety_identifier",)
)


def cache_key(
    messages: Sequence[Mapping],
    max_tokens: int,
    force_tier: str | None,
    force_model: str | None,
    settings: str = "",
    body: Mapping | None = None,
    place: tuple[str, str] | None = None,
) -> str:
    """Same conversation, same limits and every other field that can change the output (sampling,
    tools, response format, seed, n), same forced choices, routed model and routing settings.

    The body keeps the client's key order: in a JSON schema the order of properties is the order
    a model writes them, so two orders are two requests."""
    fields = None if body is None else {k: v for k, v in body.items() if k not in NOT_OUTPUT}
    payload = json.dumps(
        [list(messages), max_tokens, force_tier, force_model, settings, fields, place], ensure_ascii=False
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
