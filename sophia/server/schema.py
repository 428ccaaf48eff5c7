"""The chat completion request, written once: the tables the fast validator (`wire`) checks
against, and the pydantic models built from them for the OpenAPI documentation.

Bodies are never validated by pydantic (it would cost the hot path a model per request);
the models only document what `wire.chat_call` accepts.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from sophia.config.server import DEFAULT_ALIAS

# --- the tables ------------------------------------------------------------------------------

ROLES = ("system", "user", "assistant", "tool", "developer", "function")
MIN_TOKENS = 1  # max_tokens / max_completion_tokens; the upper limit is server.max_tokens_limit
CHOICES = 1  # n: Sophia returns exactly one choice
STOP_MAX = 4  # stop: a string or up to this many strings

# Accepted and type-checked, but not forwarded: the router's backends send model, messages and
# max_tokens only. Their names come back in the `x-sophia-ignored-params` header.
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
TYPED: dict[str, tuple[type, ...]] = {
    "user": (str,),
    "seed": (int,),
    "logprobs": (bool,),
    "top_logprobs": (int,),
    "tools": (list,),
    "tool_choice": (str, dict),
    "response_format": (dict,),
    "parallel_tool_calls": (bool,),
    "metadata": (dict,),
    "store": (bool,),
    "service_tier": (str,),
    "reasoning_effort": (str,),
    "logit_bias": (dict,),
    "functions": (list,),
    "function_call": (str, dict),
    "modalities": (list,),
    "prediction": (dict,),
    "audio": (dict,),
    "web_search_options": (dict,),
    "verbosity": (str,),
    "prompt_cache_key": (str,),
    "safety_identifier": (str,),
}

# --- the request models (documentation) ----------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal[ROLES]  # type: ignore[valid-type]
    content: str | list[dict] | None = Field(
        None, description="Text, or an array of content parts; null only for an assistant message"
    )
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool | None = Field(None, description="Send a final chunk with usage, including cost_usd")


class _Handled(BaseModel):
    """The fields Sophia acts on; every other field is checked (below) and ignored."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "description": (
                "The OpenAI chat completion request. Sampling parameters (temperature, top_p, stop, tools, ...) "
                "are type-checked but not forwarded; their names come back in x-sophia-ignored-params."
            )
        },
    )
    model: str = Field(
        ...,
        examples=[DEFAULT_ALIAS],
        description="An alias (sophia-auto) lets the router decide; a configured model name forces it",
    )
    messages: list[Message] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=MIN_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=MIN_TOKENS, description="Takes precedence over max_tokens")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=CHOICES, le=CHOICES)


HANDLED = frozenset(_Handled.model_fields)

_JSON_TYPES: dict[type, Any] = {str: str, int: int, bool: bool, list: list[Any], dict: dict[str, Any]}
_IGNORED = "Type-checked, not forwarded"


def _ignored_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        name: (float | None, Field(None, ge=lo, le=hi, description=_IGNORED))
        for name, (lo, hi) in NUMBER_RANGES.items()
    }
    fields["stop"] = (str | list[str] | None, Field(None, description=f"{_IGNORED}; up to {STOP_MAX} strings"))
    for name, kinds in TYPED.items():
        fields[name] = (Union[tuple(_JSON_TYPES[k] for k in kinds)] | None, Field(None, description=_IGNORED))  # noqa: UP007
    return fields


ChatCompletionRequest = create_model("ChatCompletionRequest", __base__=_Handled, **_ignored_fields())


class ReferenceChatRequest(BaseModel):
    messages: list[Message] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=MIN_TOKENS)
    model: str | None = Field(None, description="Optional, as for /v1/chat/completions")


REFERENCE_FIELDS = tuple(ReferenceChatRequest.model_fields)

# --- the response models (documentation) ----------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Usage(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    estimated: bool


class ChatCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict]
    usage: Usage
    sophia: dict = Field(..., description="Routing and cost of the request")


ERRORS = {
    400: {"model": ErrorBody, "description": "Bad request (malformed JSON, wrong types, empty messages, ...)"},
    401: {"model": ErrorBody, "description": "Missing or wrong API key"},
    404: {"model": ErrorBody, "description": "Unknown model"},
    413: {"model": ErrorBody, "description": "Body over server.max_body_bytes"},
    429: {"model": ErrorBody, "description": "Rate limit of the key (with Retry-After), or a budget refusal"},
    502: {"model": ErrorBody, "description": "Every endpoint of the failover chain failed"},
    504: {"model": ErrorBody, "description": "The endpoint did not answer in time"},
}


def body_doc(model: type[BaseModel]) -> dict:
    """openapi_extra for a route whose body is read by hand: the documented request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }
