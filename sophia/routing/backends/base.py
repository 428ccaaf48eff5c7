"""What every backend is: the calls it answers, what it returns and streams, the errors it raises.

A backend receives the client's request body as it came (`body`) and sends it on unchanged but
for the model name (the routed model), the stream flags and the fields its endpoint is
configured not to accept (`upstream_body`). What comes back is the upstream's own choices and
usage, so tool calls, logprobs, refusals and several choices reach the client as sent.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

FIRST, WHOLE = "first", "whole"  # CallToken phases: waiting for the first token; for the rest


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # over every choice
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    details: Mapping | None = None  # the upstream's usage object as sent, passed on to the client


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed reply.

    `text` is choice 0's content delta (what the playground and the CLI show); `choices` is
    the upstream event's choices as sent (`{index, delta, logprobs, finish_reason}` each), or
    None for a chunk that is only text of choice 0. The last chunk carries the usage when reported.
    """

    text: str = ""
    usage: Usage | None = None
    choices: Sequence[Mapping] | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole (non-streamed) reply: the upstream's choices as sent
    (`{index, message: {role, content, tool_calls, refusal, ...}, logprobs, finish_reason}` each)."""

    choices: Sequence[Mapping]
    usage: Usage | None = None
    fingerprint: str | None = None

    @property
    def text(self) -> str:
        """Choice 0's message content (empty for a tool call)."""
        return message_text(self.choices)


@dataclass(frozen=True, slots=True)
class Embeddings:
    """An embeddings reply: the upstream's `data` list as sent, and its usage."""

    data: Sequence[Mapping]
    usage: Usage | None = None


def message_text(choices: Sequence[Mapping]) -> str:
    if not choices:
        return ""
    msg = choices[0].get("message") if isinstance(choices[0], Mapping) else None
    content = msg.get("content") if isinstance(msg, Mapping) else None
    return content if isinstance(content, str) else ""


def upstream_body(
    model: str,
    messages: Sequence[Mapping],
    max_tokens: int | None,
    body: Mapping | None,
    stream: bool,
    drop: Sequence[str] = (),
) -> dict[str, Any]:
    """The body sent upstream: the client's body with the routed model, the stream flags Sophia
    needs (usage on the last chunk) and without the fields the endpoint does not accept.

    A request with no client body (the playground, the CLI) sends messages and max_tokens.
    """
    if body is None:
        out: dict[str, Any] = {"model": model, "messages": list(messages)}
        if max_tokens is not None:
            out["max_tokens"] = max_tokens
    else:
        out = dict(body)  # the client's key order, the client's values
        out["model"] = model
        for key in drop:
            out.pop(key, None)
    if stream:
        out["stream"] = True
        opts = out.get("stream_options")
        out["stream_options"] = {**(opts if isinstance(opts, Mapping) else {}), "include_usage": True}
    return out


class CallToken:
    """One request's deadlines and its way out, shared by the router, the backend and the transport.

    `arm` starts an attempt: until its first token the deadline is `first_s` away (a response's
    headers for a whole reply, the first data event for a stream), then `total_s` from the
    attempt's start; no trickle of bytes or keep-alive comments moves either. The transport
    bounds every socket wait by `remaining()`; `cancel()` (the client went away) shuts the
    connection in use down at once, which wakes a thread blocked reading from it.
    """

    __slots__ = (
        "phase",
        "deadline",
        "stream",
        "cancelled",
        "_total",
        "_first_s",
        "_total_s",
        "_sock",
        "_lock",
        "_clock",
    )

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self.phase = FIRST
        self.deadline = float("inf")
        self.stream = False  # a stream's first token is its first data event, not its headers
        self._total = float("inf")
        self._first_s = self._total_s = 0.0
        self.cancelled = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def arm(self, first_s: float, total_s: float) -> None:
        now = self._clock()
        self.phase, self._first_s, self._total_s = FIRST, first_s, total_s
        self._total = now + total_s
        self.deadline = min(now + first_s, self._total)

    def first_token(self) -> None:
        """The first token arrived: from now on only the total deadline counts."""
        if self.phase == FIRST:
            self.phase, self.deadline = WHOLE, self._total

    def remaining(self) -> float:
        return self.deadline - self._clock()

    def expired(self) -> bool:
        return self._clock() >= self.deadline

    def which(self) -> str:
        """The deadline that fires next, in words (for the record)."""
        if self.phase == FIRST and self.deadline < self._total:
            return f"its first token within {self._first_s:g} s (failover.first_token_timeout_s)"
        return f"its whole reply within {self._total_s:g} s (failover.timeout_s)"

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
        if self.cancelled:  # cancelled while connecting
            self._shut(sock)

    def detach(self) -> None:
        with self._lock:
            self._sock = None

    def cancel(self) -> None:
        self.cancelled = True
        with self._lock:
            sock = self._sock
        self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket | None) -> None:
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class BackendError(Exception):
    """A failed call. `kind` is connect, timeout, http_status, malformed or cut_stream;
    `retryable` says whether trying again may help."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = True):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retryable = retryable


class Backend(Protocol):
    name: str
    simulated: bool

    def complete(
        self,
        model: str,
        messages: Sequence[Mapping],
        max_tokens: int | None,
        body: Mapping | None = None,
        token: CallToken | None = None,
    ) -> Reply: ...

    def stream(
        self,
        model: str,
        messages: Sequence[Mapping],
        max_tokens: int | None,
        body: Mapping | None = None,
        token: CallToken | None = None,
    ) -> Iterator[Chunk]: ...

    def embed(self, model: str, body: Mapping) -> Embeddings: ...

    def check(self) -> bool: ...

    def close(self) -> None: ...
