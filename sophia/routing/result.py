"""What a request asks of the router, and what came of it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sophia.money import pricing
from sophia.routing import policy
from sophia.routing.backends.base import CallToken, Chunk
from sophia.routing.traits import PLAIN, Traits
from sophia.vocab import Operation, Source, Status

# ChatRequest.cache: read and write the response cache; skip reading it (a fresh answer that
# is then cached: Cache-Control no-cache); leave it alone (x-sophia-cache: off, no-store).
CACHE_USE, CACHE_REFRESH, CACHE_OFF = "use", "refresh", "off"


@dataclass
class ChatRequest:
    messages: Sequence[Mapping]
    max_tokens: int | None = None  # the completion limit that is scored and costed (per choice)
    force_tier: str | None = None
    force_model: str | None = None
    source: str = Source.API
    api_key_id: str | None = None
    request_id: str | None = None
    body: Mapping | None = None  # the client's request as sent: forwarded upstream unchanged
    body_bytes: int = 0  # its size as received, when known
    cache: str = CACHE_USE
    token: CallToken | None = None  # its deadlines and cancellation (the router makes one when None)


@dataclass
class Result:
    request_id: str
    decision: policy.Decision | None
    status: str  # ok | error | refused | cancelled
    text: str = ""
    tier: str | None = None
    endpoint: str | None = None
    model: str | None = None
    reason: str | None = None
    error: str | None = None
    error_kind: str | None = None
    # The kind of the first failure of a request that failed over (error_kind clears on success).
    failover_cause: str | None = None
    usage_anomaly: str | None = None  # reported usage far past what the request allowed
    upstream_ms: float = 0.0  # time inside the endpoints' calls, every attempt (not the backoff between)
    attempts: int = 0
    path: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    metered_cost_usd: float = 0.0
    amortized_cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    choices: list | None = None  # the reply's choices as the upstream sent them (assembled for a stream)
    fingerprint: str | None = None
    finish_reason: str | None = None
    tool_calls: int = 0
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    usage_details: Mapping | None = None  # the upstream's usage object, passed on to the client
    traits: Traits = PLAIN
    operation: str = Operation.CHAT
    cached: bool = False
    simulated: bool = False
    streamed: bool = False
    ts: datetime | None = None
    policy_version: int | None = None
    reservation: object | None = field(default=None, repr=False)
    recorded: bool = field(default=False, repr=False)

    @property
    def cost_usd(self) -> float:
        """What the request cost: metered for serverless, its GPU-time share for dedicated."""
        return round(self.metered_cost_usd + self.amortized_cost_usd, pricing.DIGITS)

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


class StreamHandle:
    """Iterate for the reply's chunks as they arrive (`chunk.text`: choice 0's text); `result`
    is set once the stream ends.

    Closing the handle (or dropping it) before the stream ends records the request as
    cancelled with what was received, even when iteration never began.
    """

    def __init__(self, gen: Iterator[Chunk], on_abandon: Callable[[], None]) -> None:
        self._gen = gen
        self._on_abandon = on_abandon
        self.result: Result | None = None
        self.live: Result | None = None  # the result being filled in; its routing is final at the first text

    def __iter__(self) -> Iterator[Chunk]:
        return self._gen

    def texts(self) -> Iterator[str]:
        """Choice 0's text as it arrives (what a chat window shows); leaving early closes the stream."""
        try:
            for chunk in self._gen:
                if chunk.text:
                    yield chunk.text
        finally:
            self.close()

    def close(self) -> None:
        never_ran = inspect.getgeneratorstate(self._gen) == inspect.GEN_CREATED
        self._gen.close()
        if never_ran:  # a generator that never ran has no `finally` to run: record it here (once)
            self._on_abandon()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finalizer
            pass
