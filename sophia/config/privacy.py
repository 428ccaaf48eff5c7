"""What of a prompt may be stored: nothing, a redacted copy, or the text."""

from __future__ import annotations

import re

_PATTERNS = (
    (re.compile(r"\b(?:sk|pk|rk|api|key|token)[-_][A-Za-z0-9_\-]{12,}\b", re.I), "[secret]"),
    (re.compile(r"\bBearer\s+[A-Za-z0-9._\-]{8,}", re.I), "Bearer [secret]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    (re.compile(r"\+?\d[\d ()\-]{7,}\d"), "[number]"),
)


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def stored_text(text: str | None, mode: str) -> str | None:
    """Text as the privacy setting allows it to be logged."""
    if text is None or mode == "off":
        return None
    return redact(text) if mode == "redacted" else text
