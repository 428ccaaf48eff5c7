"""What a routing decision needs, computed once per request and stored with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from sophia.config import ScorerSettings

CHARS_PER_TOKEN = 4
MAX_TOKENS_LIMIT = 1_000_000  # no model writes more in one reply; the log keeps it in 32 bits


class RequestError(ValueError):
    """A chat request that cannot be routed as given."""


@dataclass(frozen=True, slots=True)
class Features:
    prompt_chars: int
    est_prompt_tokens: int
    max_tokens: int
    n_messages: int
    keywords: tuple[str, ...]  # distinct keywords found, in scorer order

    def group_count(self, words: Iterable[str]) -> int:
        return sum(1 for w in words if w in self.keywords)


def estimate_tokens(chars):
    """ceil(chars / 4): the estimate used until a real tokenizer is configured (ints or arrays)."""
    return -(-chars // CHARS_PER_TOKEN)


def prompt_text(messages: Sequence[Mapping]) -> str:
    """Every message's content joined with a newline: the text that is scored."""
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise RequestError(f"messages[{i}] must be an object with role and content")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: score the text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string, not {type(content).__name__}")
        parts.append(content)
    return "\n".join(parts)


@lru_cache(maxsize=64)
def vocabulary(scorer: ScorerSettings) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for g in scorer.keyword_groups:
        for w in g.words:
            seen.setdefault(w, None)
    return tuple(seen)


def features_of_text(text: str, max_tokens: int, n_messages: int, vocab: Sequence[str]) -> Features:
    lower = text.lower()
    chars = len(text)
    return Features(
        prompt_chars=chars,
        est_prompt_tokens=estimate_tokens(chars),
        max_tokens=max_tokens,
        n_messages=n_messages,
        keywords=tuple(w for w in vocab if w in lower),
    )


def extract(
    messages: Sequence[Mapping], max_tokens: int | None, scorer: ScorerSettings, default_max_tokens: int
) -> Features:
    """Features of a chat request. `max_tokens` None means the configured default."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content} objects")
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise RequestError(
            f"max_tokens = {max_tokens!r} is not allowed: expected a whole number from 1 to {MAX_TOKENS_LIMIT:,}"
        )
    return features_of_text(prompt_text(messages), max_tokens, len(messages), vocabulary(scorer))
