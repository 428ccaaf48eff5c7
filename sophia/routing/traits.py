"""What a chat request uses beyond text: the capabilities it needs from a model, and the facts
the log keeps of it (tools, JSON mode, images, choices), read once from the client's body."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sophia.vocab import Capability


@dataclass(frozen=True, slots=True)
class Traits:
    needs: frozenset[str]  # capabilities a model must have to serve the request
    uses_tools: bool = False
    response_format: str | None = None  # text | json_object | json_schema, as asked
    images: int = 0
    audio: int = 0
    choices: int = 1  # n
    extra_chars: int = 0  # characters sent besides message text (tool definitions, tool calls)
    deterministic: bool = False  # temperature 0 or a seed: the same request gets the same answer


PLAIN = Traits(frozenset((Capability.CHAT,)))


def _dumped(v: object) -> int:
    try:
        return len(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError):
        return 0


def _message_parts(messages: Sequence[Mapping]) -> tuple[int, int, int]:
    """(images, audio parts, characters of tool calls and function calls in the messages)."""
    images = audio = extra = 0
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        content = m.get("content")
        if isinstance(content, list):
            for p in content:
                kind = p.get("type") if isinstance(p, Mapping) else None
                if kind == "image_url":
                    images += 1
                elif kind == "input_audio":
                    audio += 1
        for key in ("tool_calls", "function_call"):
            if m.get(key):
                extra += _dumped(m[key])
    return images, audio, extra


def _text_chars(messages: Sequence[Mapping]) -> int:
    return sum(len(m["content"]) for m in messages if isinstance(m, Mapping) and isinstance(m.get("content"), str))


def traits(messages: Sequence[Mapping], body: Mapping | None, size: int = 0) -> Traits:
    """The traits of a request; a request without a client body (playground, CLI) is plain text.

    `size` is the body's length in bytes when known: with tool definitions or a JSON schema,
    everything but the messages' text counts in the estimate at its size as sent (no second
    serialization on the hot path)."""
    images, audio, extra = _message_parts(messages)
    if body is None:
        if not (images or audio or extra):
            return PLAIN
        body = {}
    needs = {Capability.CHAT}
    tools = body.get("tools") or body.get("functions")
    choice = body.get("tool_choice", body.get("function_call"))
    uses_tools = bool(tools) and choice != "none"
    if tools and not size:
        extra += _dumped(tools)
    if uses_tools:
        needs.add(Capability.TOOLS)
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "json_object":
        needs.add(Capability.JSON_MODE)
    elif kind == "json_schema":
        needs.add(Capability.JSON_SCHEMA)
        if not size:
            extra += _dumped(fmt.get("json_schema"))
    if size and (tools or kind == "json_schema"):
        extra = max(extra, size - _text_chars(messages))
    if images:
        needs.add(Capability.VISION)
    if audio:
        needs.add(Capability.AUDIO)
    if body.get("logprobs"):
        needs.add(Capability.LOGPROBS)
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    if n > 1:
        needs.add(Capability.N)
    temperature = body.get("temperature")
    deterministic = temperature == 0 or body.get("seed") is not None
    return Traits(frozenset(needs), uses_tools, kind, images, audio, n, extra, deterministic)
