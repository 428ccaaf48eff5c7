"""The OpenAI-compatible API server: `sophia serve` (DESIGN §7, issue 7).

Any application that speaks the OpenAI chat API sends its traffic through the router by
changing its base URL to `http://HOST:PORT/v1`:

- `POST /v1/chat/completions`, streamed (server-sent events) or not; `model` is an alias
  (`sophia-auto`) to let the router decide, or a configured model to force it;
- `GET /v1/models`, `GET /v1/models/{id}`;
- the reference deployment's `POST /chat`, `GET /health`, `GET /stats`, `GET /dashboard`;
- OpenAPI documentation at `/docs` (and `/openapi.json`).

Stack: FastAPI (routing, OpenAPI) on Starlette under uvicorn (httptools and uvloop when
installed). The hot path (POST /v1/chat/completions) is dispatched by `FastPath` straight to its
handler, past FastAPI's per-request middleware; it reads and validates the body by hand and
returns Starlette responses, so errors come out in the OpenAI format with the right status and
no time goes to per-request model validation. Real endpoints are called through
`sophia.routing.backends.transport.FastTransport` (http.client, a connection per thread) under the backends'
httpx API; objects loaded at start-up are frozen out of the garbage collector's full passes.

Threading: the router is synchronous (httpx.Client). Every routed request runs on a thread of
one pool of `max_concurrency` threads, so the event loop never blocks: a plain completion is
one hop (the call is queued with its asyncio future; a thread runs it and sets the result with
one `call_soon_threadsafe`); a stream is one thread that owns the router's
generator from start to end and hands each text delta to the event loop
(`call_soon_threadsafe` onto an asyncio queue). When the client goes away, the response task
is cancelled, the thread sees the flag at the next delta and closes the generator, which
records the request as `cancelled` with the tokens it got. Only that thread ever touches the
generator, so it is never advanced and closed at once.

Records are written by the runtime's writer thread (DESIGN invariant 5); a graceful shutdown
(SIGTERM or SIGINT) stops accepting, lets in-flight requests finish, waits for the routing
threads and closes the runtime, which flushes every record.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import itertools
import json
import math
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response, StreamingResponse

from sophia import config as config_mod
from sophia.config import Config, ConfigError, api_key
from sophia.config.apikeys import ApiKey, KeyRing, bearer
from sophia.config.server import DEFAULT_ALIAS, ServerSettings, parse_settings
from sophia.log import stats
from sophia.log.db import DatabaseBusy, DatabaseError
from sophia.routing import views as reference
from sophia.routing.backends.openai import OpenAIBackend
from sophia.routing.backends.transport import FastTransport
from sophia.routing.features import RequestError
from sophia.routing.router import ChatRequest, Result, StreamHandle, make_backends
from sophia.runtime import Runtime
from sophia.server.ratelimit import RateLimiter

VERSION = "0.1.0"
def is_loopback(host: str) -> bool:
    """Whether listening on `host` stays on this machine."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: ServerSettings) -> None:
    """Refuse to listen beyond loopback without API keys."""
    if not is_loopback(host) and not settings.api_keys:
        raise ConfigError(
            f"--host {host} listens beyond this machine, and [server] api_keys is empty: anyone could spend "
            "through the router. Add keys (python -m sophia.apikeys NAME prints one and its hash) or listen "
            "on 127.0.0.1"
        )


# --- errors in the OpenAI format -------------------------------------------------------


class ApiError(Exception):
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


def _json_response(obj: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")).encode(), status, headers, "application/json")


def _error_response(e: ApiError, extra: Mapping[str, str] | None = None, body: dict | None = None) -> Response:
    headers = {**(extra or {}), **e.headers}
    return _json_response({**(body or {}), **e.body()}, e.status, headers)


def _too_big(limit: int) -> ApiError:
    return ApiError(
        413, f"The request body is larger than {limit:,} bytes (server.max_body_bytes).", code="request_too_large"
    )


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _show(v: object, n: int = 60) -> str:
    """A short JSON rendering of a value for an error message."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError, RecursionError):
        text = repr(type(v).__name__)
    return text if len(text) <= n else text[: n - 1] + "…"


def _result_error(res: Result) -> ApiError:
    """The HTTP error for a routed request that did not succeed (nothing reached the client)."""
    # The router has already retried and failed over: tell the OpenAI client not to retry again.
    no_retry = {"x-should-retry": "false"}
    if res.status == "refused":
        return ApiError(
            429, res.error or "refused by a budget", "insufficient_quota", None, "budget_exceeded", no_retry
        )
    if res.error_kind == "timeout":
        return ApiError(
            504, res.error or "the endpoint did not answer in time", "server_error", None, "upstream_timeout", no_retry
        )
    return ApiError(502, res.error or "every endpoint failed", "server_error", None, "upstream_error", no_retry)


# --- the request body --------------------------------------------------------------------

ROLES = ("system", "user", "assistant", "tool", "developer", "function")
_ROLE_SET = frozenset(ROLES)
# Accepted and type-checked, but not forwarded: the router's backends send model, messages and
# max_tokens only. Their names come back in the `x-sophia-ignored-params` header.
_NUMBER_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_TYPED: dict[str, tuple[type, ...]] = {
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
_HANDLED = {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "n"}
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


@dataclass(frozen=True)
class ChatCall:
    messages: list
    max_tokens: int | None
    force_model: str | None
    stream: bool
    include_usage: bool
    ignored: tuple[str, ...]


def _loads(raw: bytes) -> Any:
    def constant(name: str):
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(raw, parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        detail = f" ({e.msg} at character {e.pos})" if isinstance(e, json.JSONDecodeError) else ""
        raise _bad(
            "We could not parse the JSON body of your request" + detail + ". The body must be a JSON object in UTF-8."
        ) from None


def _no_lone_surrogates(raw: bytes, body: dict) -> None:
    """Reject text that is not Unicode (a lone \\uD8xx escape): it could not be stored or sent on."""
    if b"\\ud" not in raw.lower():
        return
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(
            "The request contains a lone surrogate escape (\\ud800-\\udfff): it is not valid Unicode text.", "messages"
        ) from None


def _opt_int(body: dict, name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(
            f"{name} = {_show(v)} is not allowed: expected a whole number from {lo} to {hi}.",
            name,
            "integer_below_min_value" if isinstance(v, int) and not isinstance(v, bool) and v < lo else None,
        )
    return v


def _check_messages(msgs: object) -> list:
    if not isinstance(msgs, list):
        raise _bad(f"messages = {_show(msgs)} is not allowed: expected an array of message objects.", "messages")
    if not msgs:
        raise _bad("messages is empty: expected at least one message.", "messages", "empty_array")
    for i, m in enumerate(msgs):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{p} = {_show(m)} is not allowed: expected an object with role and content.", p)
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLE_SET:
            raise _bad(f"{p}.role = {_show(role)} is not allowed: expected one of {', '.join(ROLES)}.", f"{p}.role")
        content = m.get("content")
        if content is None:
            if role != "assistant":
                raise _bad(
                    f"{p}.content is missing: a {role} message needs a string or an array of parts.", f"{p}.content"
                )
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _bad(
                        f"{p}.content[{j}] = {_show(part)} is not allowed: expected an object with a type.",
                        f"{p}.content[{j}]",
                    )
                if (part["type"] == "text" or "text" in part) and not isinstance(part.get("text"), str):
                    raise _bad(f"{p}.content[{j}].text must be a string.", f"{p}.content[{j}].text")
        elif not isinstance(content, str):
            raise _bad(
                f"{p}.content = {_show(content)} is not allowed: expected a string, an array of parts or null.",
                f"{p}.content",
            )
        name = m.get("name")
        if name is not None and not isinstance(name, str):
            raise _bad(f"{p}.name must be a string.", f"{p}.name")
    return msgs


def parse_chat(raw: bytes, settings: ServerSettings, models: frozenset[str], aliases: frozenset[str]) -> ChatCall:
    """Validate an OpenAI chat completion request body. Raises ApiError (400 or 404)."""
    return chat_call(_object(raw), raw, settings, models, aliases)


def _object(raw: bytes) -> dict:
    body = _loads(raw)
    if not isinstance(body, dict):
        raise _bad(f"The request body must be a JSON object, not {type(body).__name__}.")
    return body


def chat_call(
    body: dict, raw: bytes, settings: ServerSettings, models: frozenset[str], aliases: frozenset[str]
) -> ChatCall:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad(f"model = {_show(model)} is not allowed: expected a model name, e.g. {DEFAULT_ALIAS!r}.", "model")
    messages = _check_messages(body.get("messages"))
    lim = settings.max_tokens_limit
    max_tokens = _opt_int(body, "max_tokens", 1, lim)
    mct = _opt_int(body, "max_completion_tokens", 1, lim)
    if mct is not None:
        max_tokens = mct
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad(f"stream = {_show(stream)} is not allowed: expected true or false.", "stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict):
            raise _bad(f"stream_options = {_show(opts)} is not allowed: expected an object.", "stream_options")
        iu = opts.get("include_usage")
        if iu is not None and not isinstance(iu, bool):
            raise _bad("stream_options.include_usage must be true or false.", "stream_options.include_usage")
        include_usage = bool(iu)
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n != 1):
        raise _bad(f"n = {_show(n)} is not supported: Sophia returns exactly one choice (n = 1).", "n")
    ignored = []
    for key, v in body.items():
        if key in _HANDLED or v is None:
            continue
        if key in _NUMBER_RANGES:
            lo, hi = _NUMBER_RANGES[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise _bad(f"{key} = {_show(v)} is not allowed: expected a number from {lo:g} to {hi:g}.", key)
        elif key == "stop":
            if not (isinstance(v, str) or (isinstance(v, list) and len(v) <= 4 and all(isinstance(s, str) for s in v))):
                raise _bad(f"stop = {_show(v)} is not allowed: expected a string or up to 4 strings.", key)
        elif key in _TYPED:
            kinds = _TYPED[key]
            if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
                raise _bad(
                    f"{key} = {_show(v)} is not allowed: expected {' or '.join(k.__name__ for k in kinds)}.", key
                )
        ignored.append(key if _PARAM_NAME.fullmatch(key) else "?")
    _no_lone_surrogates(raw, body)
    if model in aliases:
        force = None
    elif model in models:
        force = model
    else:
        raise ApiError(
            404,
            f"The model {_show(model, 80)} does not exist: ask for "
            f"{' or '.join(sorted(aliases))} to let Sophia route, or a configured model (GET /v1/models).",
            param="model",
            code="model_not_found",
        )
    return ChatCall(messages, max_tokens, force, bool(stream), include_usage, tuple(dict.fromkeys(ignored)))


# --- responses --------------------------------------------------------------------------

_SAFE_HEADER = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


def _hv(value: object) -> str:
    """A header value: printable ASCII as is, anything else percent-encoded."""
    s = str(value)
    return s if _SAFE_HEADER.fullmatch(s) else quote(s, safe="")


def _reason(res: Result) -> str | None:
    d = res.decision
    if (
        res.reason not in ("cache", "failover")
        and res.path
        and d is not None
        and d.chain
        and res.path[-1] != d.chain[0][0]
    ):
        return "failover"  # the router sets this when the request ends; a stream needs it sooner
    return res.reason


def _routing(res: Result) -> dict:
    return {
        "request_id": res.request_id,
        "tier": res.tier,
        "endpoint": res.endpoint,
        "model": res.model,
        "reason": _reason(res),
        "complexity": res.decision.complexity if res.decision else None,
        "simulated": res.simulated,
        "failover_path": list(res.path),
        "attempts": res.attempts,
    }


def _routing_headers(route: Mapping, request_id: str) -> dict[str, str]:
    h = {"x-request-id": request_id}
    for key in ("tier", "endpoint", "model", "reason"):
        if route.get(key) is not None:
            h[f"x-sophia-{key}"] = _hv(route[key])
    if route.get("complexity") is not None:
        h["x-sophia-complexity"] = f"{route['complexity']:.4f}".rstrip("0").rstrip(".") or "0"
    if route.get("simulated"):
        h["x-sophia-simulated"] = "true"
    return h


def _result_headers(res: Result, ignored: tuple[str, ...] = ()) -> dict[str, str]:
    h = _routing_headers(_routing(res), res.request_id)
    h["x-sophia-cost-usd"] = f"{res.cost_usd:.9f}"
    h["x-sophia-latency-ms"] = f"{res.latency_ms:.1f}"
    if res.usage_estimated:
        h["x-sophia-usage-estimated"] = "true"
    if ignored:
        h["x-sophia-ignored-params"] = ",".join(ignored)[:512]
    return h


def _usage(res: Result) -> dict:
    return {
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "total_tokens": res.prompt_tokens + res.completion_tokens,
        "cost_usd": res.cost_usd,
        "estimated": res.usage_estimated,
    }


def _sophia(res: Result) -> dict:
    """Routing and cost, as an extension object of each response (ignored by OpenAI clients)."""
    return {
        **_routing(res),
        "cost_usd": res.cost_usd,
        "metered_cost_usd": res.metered_cost_usd,
        "amortized_cost_usd": res.amortized_cost_usd,
        "usage_estimated": res.usage_estimated,
        "latency_ms": round(res.latency_ms, 1),
        "status": res.status,
    }


def _finish_reason(res: Result, max_tokens: int | None) -> str:
    limit = max_tokens or (res.decision.features.max_tokens if res.decision else None)
    return "length" if limit and not res.usage_estimated and res.completion_tokens >= limit else "stop"


def _completion(res: Result, call: ChatCall) -> dict:
    return {
        "id": f"chatcmpl-{res.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": res.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": res.text, "refusal": None},
                "logprobs": None,
                "finish_reason": _finish_reason(res, call.max_tokens),
            }
        ],
        "usage": _usage(res),
        "sophia": _sophia(res),
    }


def _timestamp(res: Result) -> str | None:
    return reference.timestamp(res)


def _reference(res: Result) -> dict:
    """The reference deployment's /chat response (the same shape as `sophia chat --json`)."""
    return reference.chat_response(res, _reason(res))


# --- streaming ----------------------------------------------------------------------------


def _live_result(handle: StreamHandle) -> Result | None:
    """The result a stream is filling in, while it runs (for the routing headers)."""
    return handle.live


class _Pump:
    """Runs one stream on a routing thread and hands its deltas to the event loop."""

    __slots__ = ("loop", "queue", "cancelled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False

    def _put(self, item: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone: nobody is listening any more
            self.cancelled = True

    def run(self, router, req: ChatRequest) -> None:
        try:
            handle = router.stream(req)
        except Exception as e:  # validation (before anything is recorded) or a bug
            self._put(("raise", e))
            return
        gen = iter(handle)
        first = True
        try:
            for text in gen:
                if first:
                    live = _live_result(handle)
                    self._put(("first", text, _routing(live) if live is not None else {}))
                    first = False
                else:
                    self._put(("delta", text))
                if self.cancelled:
                    handle.close()  # records `cancelled` with what was received
                    break
        except Exception as e:  # the router records backend failures itself; this is a bug
            self._put(("raise", e))
            return
        self._put(("end", handle.result))


class _Chunks:
    """Server-sent event bytes of one stream, in the OpenAI chat.completion.chunk format."""

    def __init__(self, request_id: str, model: str | None, include_usage: bool) -> None:
        self.id = f"chatcmpl-{request_id}"
        self.created = int(time.time())
        self.include_usage = include_usage
        self.set_model(model)

    def set_model(self, model: str | None) -> None:
        self.model = model
        self._head = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{json.dumps(model)},"system_fingerprint":null,"choices":[{{"index":0,'
        )

    def role(self) -> bytes:
        return (
            self._head + '"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
        ).encode()

    def delta(self, text: str) -> bytes:
        return (
            self._head + '"delta":{"content":' + json.dumps(text) + '},"logprobs":null,"finish_reason":null}]}\n\n'
        ).encode()

    def _event(self, obj: dict) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def end(self, res: Result, max_tokens: int | None) -> bytes:
        base = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": res.model,
            "system_fingerprint": None,
        }
        out = []
        if res.status == "ok":
            out.append(
                self._event(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {},
                                "logprobs": None,
                                "finish_reason": _finish_reason(res, max_tokens),
                            }
                        ],
                        "sophia": _sophia(res),
                    }
                )
            )
            if self.include_usage:
                out.append(self._event({**base, "choices": [], "usage": _usage(res)}))
        else:  # the reply broke off after text was sent: an error event, as OpenAI streams do
            err = _result_error(res)
            out.append(self._event({**err.body(), "sophia": _sophia(res)}))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def crash(self) -> bytes:
        err = ApiError(500, "internal error while streaming", "server_error")
        return self._event(err.body()) + b"data: [DONE]\n\n"


# --- the routing threads ---------------------------------------------------------------------


def _set_result(fut: asyncio.Future, value: object) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class RoutingPool:
    """The threads that run the synchronous router for the event loop.

    Lighter than ThreadPoolExecutor with run_in_executor (no concurrent Future, no chaining of
    two futures): a job goes on a queue with its asyncio future, and the thread that runs it
    sets the result with one call_soon_threadsafe. Threads start on demand, up to `size`; when
    all are busy, jobs wait in the queue. close() runs every queued job, then joins the threads.
    """

    def __init__(self, size: int, name: str = "sophia-route") -> None:
        self._size, self._name = size, name
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn, *args) -> None:
        """Run fn(*args) on a routing thread; its result is dropped (it must handle its errors)."""
        if self._closed:
            raise RuntimeError("the server is shutting down")
        self._q.put((fn, args))
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle thread will take it
            elif len(self._threads) < self._size:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()

    def run(self, fn, *args) -> asyncio.Future:
        """fn(*args) on a routing thread, as an awaitable."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.submit(self._call, loop, fut, fn, args)
        return fut

    @staticmethod
    def _call(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, fn, args) -> None:
        try:
            value = fn(*args)
        except BaseException as e:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_set_exception, fut, e)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_result, fut, value)

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # submit()'s jobs handle their own errors; never lose the thread
                traceback.print_exc()
            with self._lock:
                self._idle += 1

    def close(self, timeout: float | None = None) -> bool:
        """Let every queued job run, then stop the threads; False if some are still busy at `timeout`."""
        with self._lock:
            first = not self._closed
            self._closed = True
            threads = list(self._threads)
        if first:
            for _ in threads:
                self._q.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


# --- the application ----------------------------------------------------------------------


class Sophia:
    """State of one server process: the runtime, the routing threads, keys and limits."""

    def __init__(self, rt: Runtime, settings: ServerSettings) -> None:
        self.rt = rt
        self.router = rt.router
        self.settings = settings
        self.keys = KeyRing(settings.api_keys)
        self.limiter = RateLimiter()
        self.pool = RoutingPool(settings.max_concurrency)
        self._served: tuple[Config, frozenset[str]] | None = None
        self.aliases = frozenset(settings.aliases)
        self._id_prefix = uuid.uuid4().hex[:18]  # request ids: unique per process, then a counter
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def cfg(self) -> Config:
        """The settings in force (the background refresh may swap in a new version)."""
        return self.rt.cfg

    @property
    def models(self) -> frozenset[str]:
        """Every configured model name (a name forces that model)."""
        cfg = self.rt.cfg
        if self._served is None or self._served[0] is not cfg:
            self._served = (cfg, frozenset(m for e in cfg.endpoints for m in e.models))
        return self._served[1]

    # --- lifecycle --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        if self.settings.refresh_interval_s > 0:
            # Settings, budgets and spend of other processes; re-admits endpoints that recovered.
            self.rt.start_background(self.settings.refresh_interval_s)
        # Everything loaded so far (FastAPI, pydantic, numpy, duckdb, ...) lives as long as the
        # process: keep it out of the collector's full passes, which otherwise stop the event
        # loop for 60-80 ms every few seconds under load (measured: p99 84 ms → see bench).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            # uvicorn has let in-flight requests finish; wait for their threads, then flush.
            await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # uvicorn has waited for in-flight requests (server.shutdown_timeout_s); what is left is
        # quick (streams whose client left stop at their next delta) unless an endpoint hangs.
        if not self.pool.close(timeout=5.0):
            # Upstream calls still running (an endpoint that hangs): cut them, so that they end
            # and are recorded now instead of at their endpoint's timeout.
            print(
                "sophia: requests still waiting on endpoints at shutdown; closing those connections",
                file=sys.stderr,
                flush=True,
            )
            self.router.close()
            self.pool.close()
        self.rt.close()

    # --- access -----------------------------------------------------------------------

    def authenticate(self, request: Request) -> ApiKey | None:
        if not self.keys:
            return None  # loopback only (checked at start-up)
        token = bearer(request.headers.get("authorization"))
        if token is None:
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
                headers={"www-authenticate": "Bearer"},
            )
        key = self.keys.lookup(token)
        if key is None:
            raise ApiError(
                401, "Incorrect API key provided.", code="invalid_api_key", headers={"www-authenticate": "Bearer"}
            )
        return key

    def admit(self, request: Request) -> str | None:
        """Authenticate and apply the key's rate limit; the key's id, or None without keys."""
        key = self.authenticate(request)
        if key is None:
            return None
        limit = (
            key.rate_limit_per_minute if key.rate_limit_per_minute is not None else self.settings.rate_limit_per_minute
        )
        wait = self.limiter.take(key.id, limit)
        if wait > 0:
            raise ApiError(
                429,
                f"Rate limit reached for key {key.id!r}: {limit} requests a minute. Retry in {wait:.1f} s.",
                "requests",
                None,
                "rate_limit_exceeded",
                {
                    "retry-after": str(max(1, math.ceil(wait))),
                    "retry-after-ms": str(math.ceil(wait * 1000)),
                    "x-ratelimit-limit-requests": str(limit),
                    "x-ratelimit-remaining-requests": "0",
                },
            )
        return key.id

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _too_big(limit)
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_big(limit)
            parts.append(chunk)
        return b"".join(parts)

    # --- routing ------------------------------------------------------------------------

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):014x}"

    def _request(self, call: ChatCall, key_id: str | None) -> ChatRequest:
        return ChatRequest(
            call.messages,
            call.max_tokens,
            force_model=call.force_model,
            source="api",
            api_key_id=key_id,
            request_id=self._request_id(),
        )

    async def _route(self, req: ChatRequest) -> Result:
        try:
            return await self.pool.run(self.router.chat, req)
        except RequestError as e:
            raise _bad(str(e), "messages") from None
        except ValueError as e:
            raise ApiError(404, str(e), param="model", code="model_not_found") from None

    async def chat_completions(self, request: Request) -> Response:
        try:
            key_id = self.admit(request)
            call = parse_chat(await self.read_body(request), self.settings, self.models, self.aliases)
            req = self._request(call, key_id)
            if call.stream:
                return await self._stream(req, call)
            res = await self._route(req)
        except ApiError as e:
            return _error_response(e)
        headers = _result_headers(res, call.ignored)
        if not res.ok:
            return _error_response(_result_error(res), headers, {"sophia": _sophia(res)})
        return _json_response(_completion(res, call), 200, headers)

    async def _stream(self, req: ChatRequest, call: ChatCall) -> Response:
        loop = asyncio.get_running_loop()
        pump = _Pump(loop)
        self.pool.submit(pump.run, self.router, req)
        try:
            first = await pump.queue.get()
        except BaseException:
            pump.cancelled = True
            raise
        kind = first[0]
        if kind == "raise":
            e = first[1]
            if isinstance(e, RequestError):
                raise _bad(str(e), "messages")
            if isinstance(e, ValueError):
                raise ApiError(404, str(e), param="model", code="model_not_found")
            raise e
        if kind == "end":
            res: Result = first[1]
            if not res.ok:  # nothing was sent yet: a plain HTTP error
                return _error_response(_result_error(res), _result_headers(res, call.ignored), {"sophia": _sophia(res)})
            route = _routing(res)
        else:
            route = first[2]
        headers = _routing_headers(route, req.request_id)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        if call.ignored:
            headers["x-sophia-ignored-params"] = ",".join(call.ignored)[:512]
        chunks = _Chunks(req.request_id, route.get("model"), call.include_usage)
        return StreamingResponse(
            self._events(pump, first, chunks, call), headers=headers, media_type="text/event-stream"
        )

    async def _events(self, pump: _Pump, first: tuple, chunks: _Chunks, call: ChatCall) -> AsyncIterator[bytes]:
        try:
            out = [chunks.role()]
            item = first
            while True:
                kind = item[0]
                if kind in ("first", "delta"):
                    out.append(chunks.delta(item[1]))
                elif kind == "end":
                    out.append(chunks.end(item[1], call.max_tokens))
                    yield b"".join(out)
                    return
                else:  # "raise": a bug in the router, after the stream began
                    traceback.print_exception(item[1])
                    out.append(chunks.crash())
                    yield b"".join(out)
                    return
                if pump.queue.empty():
                    yield b"".join(out)
                    out = []
                    item = await pump.queue.get()
                else:
                    item = pump.queue.get_nowait()
        finally:
            pump.cancelled = True  # the client went away (or we are done): stop at the next delta

    async def chat(self, request: Request) -> Response:
        """The reference deployment's POST /chat."""
        try:
            key_id = self.admit(request)
            raw = await self.read_body(request)
            body = _object(raw)
            for key in body:
                if key not in ("messages", "max_tokens", "model"):
                    raise _bad(
                        f"{_show(key)} is not a field of /chat: expected messages, max_tokens, model.",
                        key if _PARAM_NAME.fullmatch(key) else None,
                    )
            if body.get("model") is None:
                body["model"] = self.settings.aliases[0]
            call = chat_call(body, raw, self.settings, self.models, self.aliases)
            res = await self._route(self._request(call, key_id))
        except ApiError as e:
            return _error_response(e)
        headers = _result_headers(res)
        if not res.ok:
            return _error_response(_result_error(res), headers, _reference(res))
        return _json_response(_reference(res), 200, headers)

    # --- reading ------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        try:
            self.authenticate(request)
        except ApiError as e:
            return _error_response(e)
        return _json_response({"object": "list", "data": self._models()})

    async def get_model(self, model_id: str, request: Request) -> Response:
        try:
            self.authenticate(request)
        except ApiError as e:
            return _error_response(e)
        for m in self._models():
            if m["id"] == model_id:
                return _json_response(m)
        return _error_response(
            ApiError(404, f"The model {_show(model_id, 80)} does not exist.", param="model", code="model_not_found")
        )

    def _models(self) -> list[dict]:
        out = [
            {
                "id": a,
                "object": "model",
                "created": 0,
                "owned_by": "sophia",
                "description": "Sophia routes each request to the tier and model its policy chooses",
            }
            for a in self.settings.aliases
        ]
        seen: set[str] = set()
        for e in self.cfg.endpoints:
            for m in e.models:
                if m not in seen:
                    seen.add(m)
                    out.append(
                        {
                            "id": m,
                            "object": "model",
                            "created": 0,
                            "owned_by": f"sophia:{e.tier}",
                            "tier": e.tier,
                            "endpoint": e.name,
                            "simulated": e.simulated,
                        }
                    )
        return out

    async def health(self, request: Request, probe: bool = False) -> Response:
        detail = True
        if self.keys:
            try:
                self.authenticate(request)
            except ApiError:
                detail = False  # states only; errors and latencies are for key holders
        checked: dict[str, bool] = {}
        if probe:
            if not detail and self.keys:
                return _error_response(self._auth_needed())
            checked = await self.pool.run(self.router.check, [e.name for e in self.cfg.endpoints])
        snap = self.router.health.snapshot()
        endpoints, tiers = {}, {}
        for e in self.cfg.endpoints:
            s = snap[e.name]
            up = checked[e.name] if probe else s["state"] != "cooling-down"
            info = {"tier": e.tier, "state": s["state"], "available": up, "simulated": e.simulated}
            if probe:
                info["probe"] = "ok" if checked[e.name] else "failed"
            if detail:
                info.update(
                    {
                        k: s[k]
                        for k in (
                            "consecutive_failures",
                            "cooldown_remaining_s",
                            "successes",
                            "failures",
                            "last_latency_ms",
                            "last_error",
                        )
                    }
                )
            endpoints[e.name] = info
            t = tiers.setdefault(e.tier, {"available": False, "endpoints": []})
            t["endpoints"].append(e.name)
            t["available"] = t["available"] or up
        serving = any(t["available"] for t in tiers.values())
        degraded = any(not i["available"] or i["state"] != "healthy" for i in endpoints.values())
        body = {
            "status": ("degraded" if degraded else "ok") if serving else "down",
            "tiers": tiers,
            "endpoints": endpoints,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return _json_response(body, 200 if serving else 503, {"cache-control": "no-store"})

    def _auth_needed(self) -> ApiError:
        return ApiError(
            401,
            "A probe calls every endpoint: send an API key as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
            headers={"www-authenticate": "Bearer"},
        )

    async def stats(self, request: Request, source: list[str] | None = None) -> Response:
        try:
            self.authenticate(request)
            data = await self.pool.run(self._stats, source)
        except ApiError as e:
            return _error_response(e)
        return _json_response(data, 200, {"cache-control": "no-store"})

    def _stats(self, sources: list[str] | None) -> dict:
        try:
            with self.rt.reader(wait_s=10.0) as cur:
                data = stats.stats(cur, self.cfg, sources)
                clause, params = stats.where(sources)
                rows = cur.execute(
                    f"""SELECT api_key_id, count(*), coalesce(sum(metered_cost_usd + amortized_cost_usd), 0),
                               count(*) FILTER (WHERE tier = 'serverless'), count(*) FILTER (WHERE tier = 'dedicated')
                        FROM requests WHERE {clause} AND source = 'api' GROUP BY 1 ORDER BY 1 NULLS FIRST""",
                    params,
                ).fetchall()
        except (DatabaseBusy, DatabaseError) as e:
            raise ApiError(
                503,
                f"The request log is not available right now: {e}",
                "server_error",
                None,
                "database_busy",
                {"retry-after": "1"},
            ) from None
        data["cost_savings"] = data.get("cost_savings_usd")
        data["sources"] = sources
        data["by_api_key"] = [
            {"api_key_id": k, "requests": n, "cost_usd": round(c, 6), "serverless_requests": s, "dedicated_requests": d}
            for k, n, c, s, d in rows
        ]
        return data

    async def dashboard(self) -> Response:
        return RedirectResponse(self.settings.app_url, 307)


# --- documentation models (OpenAPI only; bodies are validated by parse_chat) ------------------


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict] | None = Field(
        None, description="Text, or an array of content parts; null only for an assistant message"
    )
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool | None = Field(None, description="Send a final chunk with usage, including cost_usd")


class ChatCompletionRequest(BaseModel):
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
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Takes precedence over max_tokens")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1)


class ReferenceChatRequest(BaseModel):
    messages: list[Message] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    model: str | None = Field(None, description="Optional, as for /v1/chat/completions")


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


_ERRORS = {
    400: {"model": ErrorBody, "description": "Bad request (malformed JSON, wrong types, empty messages, ...)"},
    401: {"model": ErrorBody, "description": "Missing or wrong API key"},
    404: {"model": ErrorBody, "description": "Unknown model"},
    413: {"model": ErrorBody, "description": "Body over server.max_body_bytes"},
    429: {"model": ErrorBody, "description": "Rate limit of the key (with Retry-After), or a budget refusal"},
    502: {"model": ErrorBody, "description": "Every endpoint of the failover chain failed"},
    504: {"model": ErrorBody, "description": "The endpoint did not answer in time"},
}


def _body_doc(model: type[BaseModel]) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def create_app(rt: Runtime, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or parse_settings(rt.cfg.extra.get("server", {}), rt.cfg)
    s = Sophia(rt, settings)
    app = FastAPI(
        title="Sophia",
        version=VERSION,
        lifespan=s.lifespan,
        redoc_url=None,
        description="OpenAI-compatible LLM router between a serverless API and dedicated GPU servers. Every request "
        "is routed, recorded and costed; the routing comes back in x-sophia-* headers.",
    )
    app.state.sophia = s
    routed = {
        "x-sophia-tier",
        "x-sophia-endpoint",
        "x-sophia-model",
        "x-sophia-reason",
        "x-sophia-complexity",
        "x-sophia-cost-usd",
    }
    app.add_api_route(
        "/v1/chat/completions",
        s.chat_completions,
        methods=["POST"],
        tags=["OpenAI"],
        summary="Chat completion (streamed or not), routed by Sophia",
        description="Headers: " + ", ".join(sorted(routed)) + " (a stream carries its cost in the final usage).",
        responses={
            200: {"model": ChatCompletion, "description": "A chat.completion, or text/event-stream chunks"},
            **_ERRORS,
        },
        openapi_extra=_body_doc(ChatCompletionRequest),
    )
    app.add_api_route(
        "/v1/models",
        s.list_models,
        methods=["GET"],
        tags=["OpenAI"],
        summary="What can be asked for: the aliases and every configured model",
    )
    app.add_api_route(
        "/v1/models/{model_id:path}",
        s.get_model,
        methods=["GET"],
        tags=["OpenAI"],
        summary="One model",
        responses={404: _ERRORS[404]},
    )
    app.add_api_route(
        "/chat",
        s.chat,
        methods=["POST"],
        tags=["Reference"],
        summary="The reference request {messages, max_tokens} → {response, routing, timestamp}",
        responses={k: v for k, v in _ERRORS.items() if k != 504},
        openapi_extra=_body_doc(ReferenceChatRequest),
    )

    async def health(request: Request, probe: Annotated[bool, Query(description="call every endpoint now")] = False):
        return await s.health(request, probe)

    async def stats_(
        request: Request, source: Annotated[list[str] | None, Query(description="only these sources")] = None
    ):
        return await s.stats(request, source)

    app.add_api_route(
        "/health",
        health,
        methods=["GET"],
        tags=["Reference"],
        summary="Each endpoint's state: 200 while at least one tier can serve, else 503",
    )
    app.add_api_route(
        "/stats",
        stats_,
        methods=["GET"],
        tags=["Reference"],
        summary="Routing statistics over the log (total_requests, serverless_percentage, "
        "cost_savings, average_cost_per_request, ...)",
    )
    app.add_api_route(
        "/dashboard",
        s.dashboard,
        methods=["GET"],
        tags=["Reference"],
        summary="Redirects to the app (server.app_url)",
        response_class=RedirectResponse,
    )

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        msg = {
            404: f"Unknown path {request.url.path}: see /docs",
            405: f"Method {request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        return _error_response(
            ApiError(exc.status_code, msg, code={404: "unknown_url"}.get(exc.status_code)),
            getattr(exc, "headers", None),
        )

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:])
        return _error_response(_bad(f"{where}: {first.get('msg', 'invalid value')}", where or None))

    async def crash(request: Request, exc: Exception) -> Response:
        return _error_response(ApiError(500, "The server had an error while processing your request.", "server_error"))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, crash)

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = schema.setdefault("components", {})
        schemas = comps.setdefault("schemas", {})
        for model in (ChatCompletionRequest, ReferenceChatRequest):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, d in js.pop("$defs", {}).items():
                schemas.setdefault(name, d)
            schemas[model.__name__] = js
        if settings.api_keys:
            comps["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
    return app


class FastPath:
    """The ASGI application that is served: POST /v1/chat/completions goes straight to its handler,
    everything else (and the lifespan) to the FastAPI app.

    FastAPI's per-request machinery (middleware stack, routing, dependency solving) cost about as
    much event-loop time as the rest of a request; the hot path skips it and keeps the same handler,
    the same responses and the same documentation (the route is still declared in FastAPI).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sophia: Sophia = app.state.sophia
        self.state = app.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sender(message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            if scope["path"] == "/v1/chat/completions" and scope["method"] == "POST":
                response = await self.sophia.chat_completions(Request(scope, receive))
                await response(scope, receive, sender)
            else:
                await self.app(scope, receive, sender)
        except asyncio.CancelledError:
            # uvicorn stopped waiting for this request at shutdown (server.shutdown_timeout_s); the
            # routing thread goes on and records it.
            if not started:
                await _error_response(
                    ApiError(
                        503,
                        "The server is shutting down: retry.",
                        "server_error",
                        None,
                        "shutting_down",
                        {"retry-after": "1"},
                    )
                )(scope, receive, send)
        except Exception:
            traceback.print_exc()
            if not started:
                response = _error_response(
                    ApiError(500, "The server had an error while processing your request.", "server_error")
                )
                await response(scope, receive, send)


# --- running ------------------------------------------------------------------------------


def server_backends(cfg: Config, settings: ServerSettings) -> dict:
    """The router's backends; real endpoints on the lean transport unless `upstream_http = "httpx"`."""
    secrets = config_mod.load_secrets()
    backends = make_backends(cfg, secrets=secrets)
    if settings.upstream_http == "fast":
        ctx = httpx.create_ssl_context()  # verifying; built once (it costs milliseconds)
        for e in cfg.endpoints:
            if not e.simulated:
                backends[e.name].close()
                backends[e.name] = OpenAIBackend(e, api_key(e, secrets), cfg.failover, transport=FastTransport(ctx))
    return backends


def open_runtime(cfg: Config, settings: ServerSettings, config_path: str | None, db_path: str | None) -> Runtime:
    return Runtime.open(config_path, db_path, cfg=cfg, backends=server_backends(cfg, settings))


def worker_app() -> FastPath:
    """The app of one worker process of `sophia serve --workers N` (paths come from the environment)."""
    cfg = config_mod.load(os.environ.get("SOPHIA_CONFIG"))
    settings = parse_settings(cfg.extra.get("server", {}), cfg)
    return FastPath(create_app(open_runtime(cfg, settings, cfg.path, os.environ.get("SOPHIA_DB")), settings))


def _bind(host: str, port: int) -> socket.socket:
    h = host.strip("[]")
    family = socket.AF_INET6 if ":" in h else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on TCP-typed sockets (else: 40 ms delayed ACKs)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((h, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; every record is flushed by then,
    so `sophia serve` simply returns and exits 0 after a clean stop."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _err(msg: str) -> int:
    print(f"sophia: error: {msg}", file=sys.stderr)
    return 1


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    config_path: str | None = None,
    db_path: str | None = None,
) -> int:
    """`sophia serve`: run until SIGTERM or SIGINT, then finish in-flight requests and flush every record."""
    try:
        cfg = config_mod.load(config_path)
        settings = parse_settings(cfg.extra.get("server", {}), cfg)
        check_exposure(host, settings)
    except ConfigError as e:
        return _err(str(e))
    if not 1 <= port <= 65535:
        return _err(f"--port {port} is not allowed: expected a port from 1 to 65535")
    try:
        rt = open_runtime(cfg, settings, config_path, db_path)
    except (ValueError, DatabaseBusy, DatabaseError, OSError) as e:  # ConfigError is a ValueError
        return _err(str(e))
    try:
        sock = _bind(host, port)
    except OSError as e:
        rt.close()
        return _err(f"cannot listen on {host}:{port}: {e.strerror or e}")
    common = dict(
        lifespan="on",
        access_log=settings.access_log,
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=settings.shutdown_timeout_s or None,
        proxy_headers=False,
    )
    shown = f"[{host}]" if ":" in host else host
    sim = sum(e.simulated for e in cfg.endpoints)
    print(
        f"sophia: serving http://{shown}:{port}/v1 (docs at /docs) · {len(cfg.endpoints)} endpoints"
        f"{f' ({sim} simulated)' if sim else ''} · API keys: "
        f"{f'{len(settings.api_keys)} configured' if settings.api_keys else 'none (loopback only)'} · "
        f"log: {rt.db.path} · {workers} worker{'s' if workers > 1 else ''}",
        file=sys.stderr,
        flush=True,
    )
    try:
        if workers == 1:
            app = create_app(rt, settings)
            server = _Server(uvicorn.Config(FastPath(app), **common))
            try:
                server.run(sockets=[sock])
            finally:
                app.state.sophia.close()
            return 0 if server.started else 1
        # Each worker opens its own runtime (writer, database handle); the parent only checked them.
        db = rt.db.path
        rt.close()
        os.environ["SOPHIA_CONFIG"] = str(Path(cfg.path).resolve()) if cfg.path else ""
        os.environ["SOPHIA_DB"] = db if db == ":memory:" else str(Path(db).resolve())
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config("sophia.server.app:worker_app", factory=True, workers=workers, **common)
        Multiprocess(config, sockets=[sock]).run()
        return 0
    except SystemExit as e:  # uvicorn exits on a failed start-up after logging why
        return e.code if isinstance(e.code, int) else 1
    finally:
        sock.close()
