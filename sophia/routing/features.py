"""What a routing decision needs, computed once per request and stored with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
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
    images: int = 0  # image parts, counted in est_prompt_tokens at the model's per-image estimate

    def group_count(self, words: Iterable[str]) -> int:
        return sum(1 for w in words if w in self.keywords)


def estimate_tokens(chars):
    """ceil(chars / 4): the estimate used until a real tokenizer is configured (ints or arrays)."""
    return -(-chars // CHARS_PER_TOKEN)


_SYSTEM_ROLES = frozenset(("system", "developer"))


def _content_text(i: int, m: object) -> str:
    if not isinstance(m, Mapping):
        raise RequestError(f"messages[{i}] must be an object with role and content")
    content = m.get("content")
    if isinstance(content, list):  # OpenAI content parts: the text parts (images are counted apart)
        return "".join(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    if content is None:
        return ""
    if not isinstance(content, str):
        raise RequestError(f"messages[{i}].content must be a string, not {type(content).__name__}")
    return content


def prompt_text(messages: Sequence[Mapping]) -> str:
    """Every message's text joined with a newline: what is stored and counted for cost."""
    return "\n".join(_content_text(i, m) for i, m in enumerate(messages))


def scored_text(messages: Sequence[Mapping], scorer: ScorerSettings) -> str:
    """The text that is scored: every message's, or without the system prompt and earlier turns."""
    if scorer.score_system and scorer.score_history:
        return prompt_text(messages)
    start = 0
    if not scorer.score_history:  # the last turn: from the last user message on
        users = [i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "user"]
        start = users[-1] if users else 0
    return "\n".join(
        _content_text(i, m)
        for i, m in enumerate(messages)
        if i >= start and (scorer.score_system or not (isinstance(m, Mapping) and m.get("role") in _SYSTEM_ROLES))
    )


@lru_cache(maxsize=64)
def vocabulary(scorer: ScorerSettings) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for g in scorer.keyword_groups:
        for w in g.words:
            seen.setdefault(w, None)
    return tuple(seen)


def features_of_text(
    text: str, max_tokens: int, n_messages: int, vocab: Sequence[str], est_prompt_tokens: int | None = None
) -> Features:
    lower = text.lower()
    chars = len(text)
    return Features(
        prompt_chars=chars,
        est_prompt_tokens=estimate_tokens(chars) if est_prompt_tokens is None else est_prompt_tokens,
        max_tokens=max_tokens,
        n_messages=n_messages,
        keywords=tuple(w for w in vocab if w in lower),
    )


def extract(
    messages: Sequence[Mapping],
    max_tokens: int | None,
    scorer: ScorerSettings,
    default_max_tokens: int,
    *,
    extra_chars: int = 0,
    images: int = 0,
    image_tokens: int = 0,
) -> Features:
    """Features of a chat request. `max_tokens` None means the configured default.

    The scorer reads `scored_text`; the prompt-token estimate counts everything sent: every
    message's text, `extra_chars` (tool definitions, tool calls) and each image at `image_tokens`.
    """
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content} objects")
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise RequestError(
            f"max_tokens = {max_tokens!r} is not allowed: expected a whole number from 1 to {MAX_TOKENS_LIMIT:,}"
        )
    everything = prompt_text(messages)
    scored = everything if scorer.score_system and scorer.score_history else scored_text(messages, scorer)
    est = estimate_tokens(len(everything) + extra_chars) + images * image_tokens
    f = features_of_text(scored, max_tokens, len(messages), vocabulary(scorer), est)
    return replace(f, images=images) if images else f
