"""Reading a chat completion request body by hand: fast, with OpenAI-style 400/404 errors.

What is accepted is declared once in `sophia.server.schema` (the tables here, and the models
the documentation shows).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sophia import jsonio
from sophia.config.server import DEFAULT_ALIAS, ServerSettings
from sophia.server.errors import bad, model_not_found, show
from sophia.server.schema import (
    INT_RANGES,
    LOGIT_BIAS,
    MIN_TOKENS,
    NAME,
    NUMBER_RANGES,
    REFERENCE_FIELDS,
    RESPONSE_FORMATS,
    ROLES,
    STOP_MAX,
    TOOL_CHOICES,
    TOOLS_MAX,
    TYPED,
)

_ROLE_SET = frozenset(ROLES)
_NAME = re.compile(NAME)
PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")  # a name safe to echo in a header or an error's param


@dataclass(frozen=True)
class ChatCall:
    """A validated request: what the router needs, and the body to forward as it came."""

    messages: list
    max_tokens: int | None
    force_model: str | None
    stream: bool
    include_usage: bool
    body: dict
    size: int = 0  # bytes of the body as received


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
    _check_fields(body)
    _no_lone_surrogates(raw, body)
    force = _forced_model(model, models, aliases)
    return ChatCall(messages, max_tokens, force, stream, include_usage, body, len(raw))


# --- the steps -------------------------------------------------------------------------------


def _loads(raw: bytes) -> Any:
    def constant(name: str):
        raise ValueError(f"{name} is not valid JSON")

    try:
        return jsonio.loads(raw)  # the fast path; anything it refuses is read again below, to say why
    except ValueError:
        pass
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
    calls = m.get("tool_calls")
    _check_content(p, role, m.get("content"), bool(calls) or m.get("function_call") is not None)
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise bad(f"{p}.name must be a string.", f"{p}.name")
    if role == "tool" and not isinstance(m.get("tool_call_id"), str):
        raise bad(
            f"{p}.tool_call_id is missing: a tool message answers the tool call with that id.", f"{p}.tool_call_id"
        )
    if calls is not None:
        if role != "assistant" or not isinstance(calls, list):
            raise bad(f"{p}.tool_calls is only allowed as an array on an assistant message.", f"{p}.tool_calls")
        for k, call in enumerate(calls):
            _check_tool_call(f"{p}.tool_calls[{k}]", call)


def _check_tool_call(p: str, call: object) -> None:
    fn = call.get("function") if isinstance(call, dict) else None
    if not (
        isinstance(call, dict)
        and isinstance(call.get("id"), str)
        and isinstance(call.get("type"), str)
        and isinstance(fn, dict)
        and isinstance(fn.get("name"), str)
        and isinstance(fn.get("arguments"), str)
    ):
        raise bad(
            f"{p} = {show(call)} is not allowed: expected "
            '{"id": "...", "type": "function", "function": {"name": "...", "arguments": "{...}"}}.',
            p,
        )


# What a content part of each type must carry: (key, what it is).
_PART_FIELDS = {"text": ("text", str), "image_url": ("image_url", dict), "input_audio": ("input_audio", dict)}


def _check_content(p: str, role: str, content: object, calls: bool = False) -> None:
    if content is None:
        if role != "assistant" and not calls:
            raise bad(f"{p}.content is missing: a {role} message needs a string or an array of parts.", f"{p}.content")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            _check_part(f"{p}.content[{j}]", part)
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


def _check_part(p: str, part: object) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise bad(f"{p} = {show(part)} is not allowed: expected an object with a type.", p)
    kind = part["type"]
    need = _PART_FIELDS.get(kind)
    if need is not None and not isinstance(part.get(need[0]), need[1]):
        what = "a string" if need[1] is str else "an object"
        raise bad(f"{p}.{need[0]} is missing or not {what}: a {kind} part carries it.", f"{p}.{need[0]}")
    if kind == "text" or "text" in part:
        if not isinstance(part.get("text"), str):
            raise bad(f"{p}.text must be a string.", f"{p}.text")
    elif kind == "image_url" and not isinstance(part["image_url"].get("url"), str):
        raise bad(f"{p}.image_url.url must be a string (an https URL or a data: URL).", f"{p}.image_url.url")
    elif kind == "input_audio" and not (
        isinstance(part["input_audio"].get("data"), str) and isinstance(part["input_audio"].get("format"), str)
    ):
        raise bad(f"{p}.input_audio needs data (base64) and format strings.", f"{p}.input_audio")


def _check_fields(body: dict) -> None:
    """Check every field the API checks, as it checks it; other fields pass unchecked."""
    for key, v in body.items():
        if v is None:
            continue
        if key in NUMBER_RANGES:
            lo, hi = NUMBER_RANGES[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise bad(f"{key} = {show(v)} is not allowed: expected a number from {lo:g} to {hi:g}.", key)
        elif key in INT_RANGES:
            _opt_int(body, key, *INT_RANGES[key])
        elif key == "stop":
            if not (
                isinstance(v, str)
                or (isinstance(v, list) and len(v) <= STOP_MAX and all(isinstance(s, str) for s in v))
            ):
                raise bad(f"stop = {show(v)} is not allowed: expected a string or up to {STOP_MAX} strings.", key)
        elif key in TYPED:
            kinds = TYPED[key]
            if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
                raise bad(
                    f"{key} = {show(v)} is not allowed: expected {' or '.join(k.__name__ for k in kinds)}.", key
                )
            check = _DEEP.get(key)
            if check is not None:
                check(v)


def _check_tools(tools: list) -> None:
    if len(tools) > TOOLS_MAX:
        raise bad(f"tools has {len(tools)} entries: at most {TOOLS_MAX} are allowed.", "tools")
    for i, t in enumerate(tools):
        p = f"tools[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("type"), str):
            raise bad(f"{p} = {show(t)} is not allowed: expected an object with a type.", p)
        if t["type"] == "function":
            _check_function(f"{p}.function", t.get("function"))


def _check_function(p: str, fn: object) -> None:
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not _NAME.fullmatch(fn["name"]):
        raise bad(
            f"{p} = {show(fn)} is not allowed: expected an object whose name is 1-64 letters, digits, _ or -.",
            f"{p}.name",
        )
    params = fn.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise bad(f"{p}.parameters must be a JSON Schema object.", f"{p}.parameters")


def _check_functions(functions: list) -> None:
    if len(functions) > TOOLS_MAX:
        raise bad(f"functions has {len(functions)} entries: at most {TOOLS_MAX} are allowed.", "functions")
    for i, fn in enumerate(functions):
        _check_function(f"functions[{i}]", fn)


def _check_choice(key: str, choices: tuple[str, ...]):
    def check(v: object) -> None:
        if isinstance(v, str):
            if v not in choices:
                raise bad(f"{key} = {show(v)} is not allowed: expected {', '.join(choices)} or an object.", key)
        elif key == "tool_choice" and not isinstance(v.get("type"), str):
            raise bad(f'{key} = {show(v)} is not allowed: expected {{"type": "function", "function": {{...}}}}.', key)
        elif key == "function_call" and not isinstance(v.get("name"), str):
            raise bad(f'{key} = {show(v)} is not allowed: expected {{"name": "..."}}.', key)

    return check


def _check_response_format(v: dict) -> None:
    kind = v.get("type")
    if kind not in RESPONSE_FORMATS:
        raise bad(
            f"response_format.type = {show(kind)} is not allowed: expected one of {', '.join(RESPONSE_FORMATS)}.",
            "response_format.type",
        )
    if kind == "json_schema":
        js = v.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("name"), str):
            raise bad(
                "response_format.json_schema must be an object with a name (and its schema).",
                "response_format.json_schema",
            )


def _check_logit_bias(v: dict) -> None:
    lo, hi = LOGIT_BIAS
    for token, bias in v.items():
        if not token.lstrip("-").isdigit() or isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise bad(f"logit_bias maps token ids to numbers: {show({token: bias})} is not allowed.", "logit_bias")
        if not lo <= bias <= hi:
            raise bad(f"logit_bias[{token}] = {bias!r} is not allowed: expected {lo:g} to {hi:g}.", "logit_bias")


_DEEP = {
    "tools": _check_tools,
    "functions": _check_functions,
    "tool_choice": _check_choice("tool_choice", TOOL_CHOICES),
    "function_call": _check_choice("function_call", ("none", "auto")),
    "response_format": _check_response_format,
    "logit_bias": _check_logit_bias,
}


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


# --- /v1/embeddings ---------------------------------------------------------------------------

EMBED_INPUTS_MAX = 2048  # inputs per request, as the OpenAI API allows
EMBED_DIMENSIONS = (1, 65_536)
ENCODING_FORMATS = ("float", "base64")


@dataclass(frozen=True)
class EmbedCall:
    model: str | None  # None: the alias (routing.embeddings_model)
    text: str  # the input's text, for the record and the estimate
    body: dict


def _is_tokens(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)


def parse_embeddings(raw: bytes, aliases: frozenset[str]) -> EmbedCall:
    """Validate an OpenAI embeddings request body. Raises ApiError (400)."""
    body = parse_object(raw)
    model = _model_name(body)
    inp = body.get("input")
    if isinstance(inp, str):
        texts = [inp]
    elif _is_tokens(inp):
        texts = []
    elif isinstance(inp, list) and inp and (all(isinstance(s, str) for s in inp) or all(_is_tokens(t) for t in inp)):
        texts = [s for s in inp if isinstance(s, str)]
    else:
        raise bad(
            f"input = {show(inp)} is not allowed: expected a string, an array of strings, "
            "or an array (or arrays) of token ids.",
            "input",
        )
    if isinstance(inp, list) and len(inp) > EMBED_INPUTS_MAX and not _is_tokens(inp):
        raise bad(f"input has {len(inp):,} entries: at most {EMBED_INPUTS_MAX:,} are allowed.", "input")
    if any(not s for s in texts):
        raise bad("input contains an empty string: every input needs text.", "input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ENCODING_FORMATS:
        raise bad(f"encoding_format = {show(fmt)} is not allowed: expected float or base64.", "encoding_format")
    _opt_int(body, "dimensions", *EMBED_DIMENSIONS)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad("user must be a string.", "user")
    _no_lone_surrogates(raw, body)
    return EmbedCall(None if model in aliases else model, "\n".join(texts), body)
