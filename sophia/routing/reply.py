"""A reply's choices: a stream's deltas assembled into whole messages (for the record and the
cache), the facts the log keeps of them, and a whole reply streamed back as deltas (a cache hit).

The merge follows the OpenAI stream format: per choice `index`, strings (content, refusal,
function arguments) are concatenated, `tool_calls` fragments are merged by their own `index`,
`logprobs` lists are extended, and the last `finish_reason` wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sophia.routing.backends.base import Chunk


def _merge(into: dict, delta: Mapping) -> None:
    for key, v in delta.items():
        if v is None:
            continue
        if key == "tool_calls" and isinstance(v, list):
            calls = into.setdefault("tool_calls", [])
            for frag in v:
                if isinstance(frag, Mapping):
                    _merge_call(calls, frag)
        elif isinstance(v, str) and key != "role":
            into[key] = (into.get(key) or "") + v
        elif isinstance(v, Mapping):
            sub = into.get(key)
            if not isinstance(sub, dict):
                sub = into[key] = {}
            _merge(sub, v)
        else:
            into[key] = v


def _merge_call(calls: list, frag: Mapping) -> None:
    i = frag.get("index")
    i = i if isinstance(i, int) and not isinstance(i, bool) else len(calls) - (1 if frag.get("id") is None else 0)
    while len(calls) <= i:
        calls.append({})
    body = {k: v for k, v in frag.items() if k != "index"}
    _merge(calls[i], body)


class Assembly:
    """The choices of a stream so far, as whole `{index, message, logprobs, finish_reason}` choices."""

    __slots__ = ("_choices",)

    def __init__(self) -> None:
        self._choices: dict[int, dict] = {}

    def _choice(self, i: int) -> dict:
        c = self._choices.get(i)
        if c is None:
            c = self._choices[i] = {
                "index": i,
                "message": {"role": "assistant", "content": None},
                "logprobs": None,
                "finish_reason": None,
            }
        return c

    def add(self, chunk: Chunk) -> None:
        if chunk.choices is None:
            if chunk.text:
                msg = self._choice(0)["message"]
                msg["content"] = (msg["content"] or "") + chunk.text
            return
        for ch in chunk.choices:
            if not isinstance(ch, Mapping):
                continue
            i = ch.get("index", 0)
            c = self._choice(i if isinstance(i, int) and not isinstance(i, bool) else 0)
            delta = ch.get("delta")
            if isinstance(delta, Mapping):
                _merge(c["message"], delta)
            lp = ch.get("logprobs")
            if isinstance(lp, Mapping):
                have = c["logprobs"] if isinstance(c["logprobs"], dict) else {}
                for key, v in lp.items():
                    if isinstance(v, list):
                        have[key] = (have.get(key) or []) + v
                c["logprobs"] = have
            if ch.get("finish_reason") is not None:
                c["finish_reason"] = ch["finish_reason"]

    @property
    def choices(self) -> list[dict]:
        return [self._choices[i] for i in sorted(self._choices)]


def finish_reason(choices: Sequence[Mapping]) -> str | None:
    """Choice 0's finish reason as the upstream gave it."""
    return choices[0].get("finish_reason") if choices and isinstance(choices[0], Mapping) else None


def tool_calls(choices: Sequence[Mapping]) -> int:
    """Tool calls (and legacy function calls) over every choice."""
    n = 0
    for c in choices:
        msg = c.get("message") if isinstance(c, Mapping) else None
        if isinstance(msg, Mapping):
            calls = msg.get("tool_calls")
            n += len(calls) if isinstance(calls, list) else 0
            n += 1 if msg.get("function_call") else 0
    return n


def completion_text(choices: Sequence[Mapping]) -> str:
    """Every character the choices wrote (content, refusals, tool arguments): for an estimate."""
    out = []
    for c in choices:
        msg = c.get("message") if isinstance(c, Mapping) else None
        if not isinstance(msg, Mapping):
            continue
        for key in ("content", "refusal"):
            if isinstance(msg.get(key), str):
                out.append(msg[key])
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping) and isinstance(fn.get("arguments"), str):
                out.append(fn["arguments"])
    return "".join(out)


def as_chunks(choices: Sequence[Mapping]) -> list[Chunk]:
    """A whole reply as stream deltas: each choice's message in one delta, then its finish reason."""
    out = []
    for c in choices:
        msg = dict(c.get("message") or {})
        msg.pop("role", None)
        if isinstance(msg.get("tool_calls"), list):
            msg["tool_calls"] = [{"index": k, **call} for k, call in enumerate(msg["tool_calls"])]
        i = c.get("index", 0)
        text = msg.get("content") if i == 0 and isinstance(msg.get("content"), str) else ""
        delta = {k: v for k, v in msg.items() if v is not None}
        body = {"index": i, "delta": delta, "logprobs": c.get("logprobs"), "finish_reason": None}
        out.append(Chunk(text, choices=[body]))
        end = {"index": i, "delta": {}, "logprobs": None, "finish_reason": c.get("finish_reason")}
        out.append(Chunk("", choices=[end]))
    return out
