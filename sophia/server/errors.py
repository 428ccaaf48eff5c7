"""Errors in the OpenAI format: `{"error": {"message", "type", "param", "code"}}` with a status."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

from sophia import jsonio
from sophia.routing.result import Result
from sophia.vocab import Status


class ApiError(Exception):
    """An HTTP error answered in the OpenAI format (status, message, type, param, code, headers)."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",  # noqa: A002
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def json_response(obj: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Compact JSON (no spaces), as the OpenAI API sends it."""
    return Response(jsonio.dumps(obj), status, headers, "application/json")


def error_response(e: ApiError, extra: Mapping[str, str] | None = None, body: dict | None = None) -> Response:
    """The error's response; `body` adds fields beside `error` (e.g. the `sophia` object)."""
    headers = {**(extra or {}), **e.headers}
    return json_response({**(body or {}), **e.body()}, e.status, headers)


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 invalid_request_error."""
    return ApiError(400, message, param=param, code=code)


def too_big(limit: int) -> ApiError:
    return ApiError(
        413, f"The request body is larger than {limit:,} bytes (server.max_body_bytes).", code="request_too_large"
    )


def model_not_found(message: str) -> ApiError:
    return ApiError(404, message, param="model", code="model_not_found")


def internal() -> ApiError:
    return ApiError(500, "The server had an error while processing your request.", "server_error")


def shutting_down() -> ApiError:
    return ApiError(
        503, "The server is shutting down: retry.", "server_error", None, "shutting_down", {"retry-after": "1"}
    )


def show(v: object, n: int = 60) -> str:
    """A short JSON rendering of a value for an error message."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError, RecursionError):
        text = repr(type(v).__name__)
    return text if len(text) <= n else text[: n - 1] + "…"


def result_error(res: Result) -> ApiError:
    """The HTTP error for a routed request that did not succeed (nothing reached the client)."""
    # The router has already retried and failed over: tell the OpenAI client not to retry again.
    no_retry = {"x-should-retry": "false"}
    if res.error_kind == "capability":
        return ApiError(400, res.error or "no endpoint can serve this request", code="unsupported_capability")
    if res.status == Status.REFUSED:
        return ApiError(
            429, res.error or "refused by a budget", "insufficient_quota", None, "budget_exceeded", no_retry
        )
    if res.error_kind == "timeout":
        return ApiError(
            504, res.error or "the endpoint did not answer in time", "server_error", None, "upstream_timeout", no_retry
        )
    return ApiError(502, res.error or "every endpoint failed", "server_error", None, "upstream_error", no_retry)
