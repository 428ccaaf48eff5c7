"""Reported usage far past what a request allowed: recorded and costed as reported, and flagged."""

from __future__ import annotations

from sophia.routing.features import Features
from sophia.routing.result import ChatRequest

# Reported usage this far past the request's own bound is recorded and costed as reported, and
# flagged: an upstream that bills 100 x max_tokens must not go unseen.
ANOMALY_FACTOR = 4
PROMPT_SLACK_TOKENS = 2_000  # tools, images and templates an estimate from the text cannot see


def choices_asked(req: ChatRequest) -> int:
    n = req.body.get("n") if req.body else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def usage_anomaly(prompt_tokens: int, completion_tokens: int, f: Features, choices: int = 1) -> str | None:
    """Why reported usage is far past what the request allowed, or None."""
    bound = ANOMALY_FACTOR * f.max_tokens * choices
    if f.max_tokens and completion_tokens > bound:
        return f"completion_tokens {completion_tokens:,} > {ANOMALY_FACTOR} x max_tokens {f.max_tokens:,}" + (
            f" x n {choices}" if choices > 1 else ""
        )
    if prompt_tokens > ANOMALY_FACTOR * f.est_prompt_tokens + PROMPT_SLACK_TOKENS:
        bound = f"{ANOMALY_FACTOR} x the estimate {f.est_prompt_tokens:,} + {PROMPT_SLACK_TOKENS:,}"
        return f"prompt_tokens {prompt_tokens:,} > {bound}"
    return None
