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
STOP_MAX = 4  # stop: a string or up to this many strings
TOOLS_MAX = 128  # tools / functions per request, as the OpenAI API allows
NAME = r"[A-Za-z0-9_-]{1,64}"  # a function's name
LOGIT_BIAS = (-100.0, 100.0)
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
TOOL_CHOICES = ("none", "auto", "required")

# Every field is forwarded to the upstream as sent. Those the API checks are checked here the
# same way (type and range), so that a bad request is a 400 from Sophia, not from the upstream
# after routing; fields not listed (new or provider-specific ones) pass unchecked.
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
INT_RANGES: dict[str, tuple[int, int]] = {
    "n": (1, 128),
    "top_logprobs": (0, 20),
    "seed": (-(2**63), 2**63 - 1),
}
TYPED: dict[str, tuple[type, ...]] = {
    "user": (str,),
    "logprobs": (bool,),
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
    """The fields Sophia acts on; every field, these and the others, is forwarded."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "description": (
                "The OpenAI chat completion request. Every field is forwarded to the routed endpoint as sent "
                "(the model replaced by the routed model); the fields below are checked as the OpenAI API checks "
                "them. Fields an endpoint is configured to drop come back in x-sophia-ignored-params."
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
    max_completion_tokens: int | None = Field(
        None, ge=MIN_TOKENS, description="Takes precedence over max_tokens for scoring and cost"
    )
    stream: bool | None = False
    stream_options: StreamOptions | None = Field(None, description="include_usage is always asked of the upstream")


_JSON_TYPES: dict[type, Any] = {str: str, int: int, bool: bool, list: list[Any], dict: dict[str, Any]}
_FORWARDED = "Forwarded as sent"


def _forwarded_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        name: (float | None, Field(None, ge=lo, le=hi, description=_FORWARDED))
        for name, (lo, hi) in NUMBER_RANGES.items()
    }
    for name, (lo, hi) in INT_RANGES.items():
        fields[name] = (int | None, Field(None, ge=lo, le=hi, description=_FORWARDED))
    fields["stop"] = (str | list[str] | None, Field(None, description=f"{_FORWARDED}; up to {STOP_MAX} strings"))
    for name, kinds in TYPED.items():
        fields[name] = (Union[tuple(_JSON_TYPES[k] for k in kinds)] | None, Field(None, description=_FORWARDED))  # noqa: UP007
    return fields


ChatCompletionRequest = create_model("ChatCompletionRequest", __base__=_Handled, **_forwarded_fields())


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
    400: {
        "model": ErrorBody,
        "description": "Bad request (malformed JSON, wrong types, empty messages, ...), or no endpoint has a "
        "capability the request uses (code unsupported_capability)",
    },
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
