"""What every backend is: the calls it answers, the pieces it streams, the errors it raises."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Chunk:
    """A piece of a reply: text, and on the last chunk the usage when reported."""

    text: str = ""
    usage: Usage | None = None


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

    def complete(self, model: str, messages: Sequence[Mapping], max_tokens: int) -> tuple[str, Usage | None]: ...

    def stream(self, model: str, messages: Sequence[Mapping], max_tokens: int) -> Iterator[Chunk]: ...

    def check(self) -> bool: ...

    def close(self) -> None: ...
