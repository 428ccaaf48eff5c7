"""Reading a chat completion request body by hand: fast, with OpenAI-style 400/404 errors.

What is accepted is declared once in `sophia.server.schema` (the tables here, and the models
the documentation shows).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sophia.config.server import DEFAULT_ALIAS, ServerSettings
from sophia.server.errors import bad, model_not_found, show
from sophia.server.schema import (
    CHOICES,
    HANDLED,
    MIN_TOKENS,
    NUMBER_RANGES,
    REFERENCE_FIELDS,
    ROLES,
    STOP_MAX,
    TYPED,
)

_ROLE_SET = frozenset(ROLES)
PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")  # a name safe to echo in a header or an error's param


@dataclass(frozen=True)
class ChatCall:
    """A validated request: what the router needs, and the parameters that were not forwarded."""

    messages: list
    max_tokens: int | None
    force_model: str | None
    stream: bool
    include_usage: bool
    ignored: tuple[str, ...]


def parse_chat(raw: bytes, settings: ServerSettings, models: frozenset[str], aliases: frozenset[str]) -> ChatCall:
    """Validate an OpenAI chat completion request body. Raises ApiError (400 or 404)."""
    return chat_call(parse_object(raw), raw, settings, models, aliases)


def parse_object(raw: bytes) -> dict:
    """The body as a JSON object, or a 400."""
    body = _loads(raw)
    if not isinstance(body, dict):
        raise bad(f"The request body must be a JSON object, not {type(body).__name__}.")
    return body


def chat_call(
    body: dict, raw: bytes, settings: ServerSettings, models: frozenset[str], aliases: frozenset[str]
) -> ChatCall:
    """Check a parsed body field by field (in the order of the errors a client sees first)."""
    model = _model_name(body)
    messages = _check_messages(body.get("messages"))
    max_tokens = _max_tokens(body, settings.max_tokens_limit)
    stream, include_usage = _stream_flags(body)
    _check_n(body.get("n"))
    ignored = _ignored_params(body)
    _no_lone_surrogates(raw, body)
    force = _forced_model(model, models, aliases)
    return ChatCall(messages, max_tokens, force, stream, include_usage, ignored)


# --- the steps -------------------------------------------------------------------------------


def _loads(raw: bytes) -> Any:
    def constant(name: str):
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(raw, parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        detail = f" ({e.msg} at character {e.pos})" if isinstance(e, json.JSONDecodeError) else ""
        raise bad(
            "We could not parse the JSON body of your request" + detail + ". The body must be a JSON object in UTF-8."
        ) from None


def _model_name(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad(f"model = {show(model)} is not allowed: expected a model name, e.g. {DEFAULT_ALIAS!r}.", "model")
    return model


def _check_messages(msgs: object) -> list:
    if not isinstance(msgs, list):
        raise bad(f"messages = {show(msgs)} is not allowed: expected an array of message objects.", "messages")
    if not msgs:
        raise bad("messages is empty: expected at least one message.", "messages", "empty_array")
    for i, m in enumerate(msgs):
        _check_message(f"messages[{i}]", m)
    return msgs


def _check_message(p: str, m: object) -> None:
    if not isinstance(m, dict):
        raise bad(f"{p} = {show(m)} is not allowed: expected an object with role and content.", p)
    role = m.get("role")
    if not isinstance(role, str) or role not in _ROLE_SET:
        raise bad(f"{p}.role = {show(role)} is not allowed: expected one of {', '.join(ROLES)}.", f"{p}.role")
    _check_content(p, role, m.get("content"))
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise bad(f"{p}.name must be a string.", f"{p}.name")


def _check_content(p: str, role: str, content: object) -> None:
    if content is None:
        if role != "assistant":
            raise bad(f"{p}.content is missing: a {role} message needs a string or an array of parts.", f"{p}.content")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad(
                    f"{p}.content[{j}] = {show(part)} is not allowed: expected an object with a type.",
                    f"{p}.content[{j}]",
                )
            if (part["type"] == "text" or "text" in part) and not isinstance(part.get("text"), str):
                raise bad(f"{p}.content[{j}].text must be a string.", f"{p}.content[{j}].text")
    elif not isinstance(content, str):
        raise bad(
            f"{p}.content = {show(content)} is not allowed: expected a string, an array of parts or null.",
            f"{p}.content",
        )


def _opt_int(body: dict, name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad(
            f"{name} = {show(v)} is not allowed: expected a whole number from {lo} to {hi}.",
            name,
            "integer_below_min_value" if isinstance(v, int) and not isinstance(v, bool) and v < lo else None,
        )
    return v


def _max_tokens(body: dict, limit: int) -> int | None:
    max_tokens = _opt_int(body, "max_tokens", MIN_TOKENS, limit)
    mct = _opt_int(body, "max_completion_tokens", MIN_TOKENS, limit)
    return max_tokens if mct is None else mct


def _stream_flags(body: dict) -> tuple[bool, bool]:
    """(stream, stream_options.include_usage)."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad(f"stream = {show(stream)} is not allowed: expected true or false.", "stream")
    opts = body.get("stream_options")
    if opts is None:
        return bool(stream), False
    if not isinstance(opts, dict):
        raise bad(f"stream_options = {show(opts)} is not allowed: expected an object.", "stream_options")
    iu = opts.get("include_usage")
    if iu is not None and not isinstance(iu, bool):
        raise bad("stream_options.include_usage must be true or false.", "stream_options.include_usage")
    return bool(stream), bool(iu)


def _check_n(n: object) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n != CHOICES):
        raise bad(f"n = {show(n)} is not supported: Sophia returns exactly one choice (n = {CHOICES}).", "n")


def _ignored_params(body: dict) -> tuple[str, ...]:
    """Type-check every parameter that is not forwarded; their names (unknown ones too), once each."""
    ignored = []
    for key, v in body.items():
        if key in HANDLED or v is None:
            continue
        _check_ignored(key, v)
        ignored.append(key if PARAM_NAME.fullmatch(key) else "?")
    return tuple(dict.fromkeys(ignored))


def _check_ignored(key: str, v: object) -> None:
    if key in NUMBER_RANGES:
        lo, hi = NUMBER_RANGES[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise bad(f"{key} = {show(v)} is not allowed: expected a number from {lo:g} to {hi:g}.", key)
    elif key == "stop":
        if not (
            isinstance(v, str) or (isinstance(v, list) and len(v) <= STOP_MAX and all(isinstance(s, str) for s in v))
        ):
            raise bad(f"stop = {show(v)} is not allowed: expected a string or up to {STOP_MAX} strings.", key)
    elif key in TYPED:
        kinds = TYPED[key]
        if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
            raise bad(f"{key} = {show(v)} is not allowed: expected {' or '.join(k.__name__ for k in kinds)}.", key)


def _no_lone_surrogates(raw: bytes, body: dict) -> None:
    """Reject text that is not Unicode (a lone \\uD8xx escape): it could not be stored or sent on."""
    if b"\\ud" not in raw.lower():
        return
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad(
            "The request contains a lone surrogate escape (\\ud800-\\udfff): it is not valid Unicode text.", "messages"
        ) from None


def _forced_model(model: str, models: frozenset[str], aliases: frozenset[str]) -> str | None:
    """None for an alias (the router decides), the model itself when it is configured, else a 404."""
    if model in aliases:
        return None
    if model in models:
        return model
    raise model_not_found(
        f"The model {show(model, 80)} does not exist: ask for "
        f"{' or '.join(sorted(aliases))} to let Sophia route, or a configured model (GET /v1/models)."
    )


def reference_call(
    body: dict, raw: bytes, settings: ServerSettings, models: frozenset[str], aliases: frozenset[str]
) -> ChatCall:
    """The reference `POST /chat` body: only its own fields, `model` optional (the first alias)."""
    for key in body:
        if key not in REFERENCE_FIELDS:
            raise bad(
                f"{show(key)} is not a field of /chat: expected {', '.join(REFERENCE_FIELDS)}.",
                key if PARAM_NAME.fullmatch(key) else None,
            )
    if body.get("model") is None:
        body["model"] = settings.aliases[0]
    return chat_call(body, raw, settings, models, aliases)
