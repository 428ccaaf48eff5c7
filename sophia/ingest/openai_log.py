"""OpenAI-style request logs: one JSON object a line with messages, and usage when known."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from sophia.ingest.columns import MAX_TOKENS_PER_ROW, Parsed
from sophia.ingest.readers import Problems, jsonl_rows
from sophia.routing import features


class _BadRow(ValueError):
    """A row that is reported and left out."""


class OpenAIReader:
    """Either a chat request with its response inline, or {"request": {...}, "response": {...}}."""

    fmt = "openai"

    def __init__(self, now: datetime) -> None:
        self.now = now  # the time of rows that carry no `created`

    def read(self, text: str, problems: Problems) -> Parsed:
        lines, ts, pt, ct, mt, texts, models = [], [], [], [], [], [], []
        for ln, obj in jsonl_rows(text, problems):
            try:
                row = self._row(obj)
            except _BadRow as e:
                problems.append((ln, str(e)))
                continue
            lines.append(ln)
            for col, v in zip((ts, pt, ct, mt, texts, models), row, strict=True):
                col.append(v)
        n = len(lines)
        return Parsed(
            np.asarray(lines, dtype=np.int64),
            np.asarray(ts, dtype="datetime64[us]"),
            np.asarray(pt, dtype=np.int64),
            np.asarray(ct, dtype=np.int64),
            np.zeros(n, dtype=bool),
            texts=texts,
            max_tokens=np.asarray(mt, dtype=np.int64),
            models=np.asarray(models, dtype=object),
        )

    def _row(self, obj: dict) -> tuple:
        """(time, prompt tokens, completion tokens, max_tokens, prompt text, model) of one row."""
        text = _prompt(obj)
        reply = obj.get("response") if isinstance(obj.get("response"), dict) else obj
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else obj.get("usage")
        answer = _answer(reply)
        p_tok = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        c_tok = usage.get("completion_tokens") if isinstance(usage, dict) else None
        # Usage the log does not report is estimated from the text.
        if not (isinstance(p_tok, int) and p_tok >= 0):
            p_tok = features.estimate_tokens(len(text))
        if not (isinstance(c_tok, int) and c_tok >= 0):
            c_tok = features.estimate_tokens(len(answer if isinstance(answer, str) else ""))
        created = obj.get("created", reply.get("created"))
        if created is not None and not (
            isinstance(created, (int, float)) and not isinstance(created, bool) and 0 <= created < 1e11
        ):
            raise _BadRow(f"created {str(created)[:40]!r} is not a Unix time in seconds")
        req_mt = obj.get("max_tokens")
        if req_mt is not None and not (isinstance(req_mt, int) and 0 < req_mt <= features.MAX_TOKENS_LIMIT):
            limit = features.MAX_TOKENS_LIMIT
            raise _BadRow(f"max_tokens {str(req_mt)[:40]!r} is not a whole number from 1 to {limit:,}")
        if p_tok > MAX_TOKENS_PER_ROW or c_tok > MAX_TOKENS_PER_ROW:
            raise _BadRow("usage token counts over 10,000,000 are not plausible")
        when = np.datetime64(int(created * 1e6), "us") if created is not None else np.datetime64(self.now, "us")
        max_tokens = req_mt if req_mt is not None else max(c_tok, 1)
        return when, p_tok, c_tok, max_tokens, text, obj.get("model", reply.get("model"))


def _prompt(obj: dict) -> str:
    msgs = obj.get("messages")
    if msgs is None and isinstance(obj.get("request"), dict):
        msgs = obj["request"].get("messages")
    try:
        text = features.prompt_text(msgs) if isinstance(msgs, list) and msgs else None
    except features.RequestError as e:
        raise _BadRow(str(e)) from None
    if text is None:
        raise _BadRow("no 'messages' list")
    return text


def _answer(reply: dict):
    choices = reply.get("choices") if isinstance(reply.get("choices"), list) else []
    if choices and isinstance(choices[0], dict):
        msg = choices[0].get("message") or {}
        return msg.get("content") or "" if isinstance(msg, dict) else ""
    return ""
