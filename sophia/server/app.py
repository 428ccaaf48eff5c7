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
handler, past FastAPI's per-request middleware; it reads and validates the body by hand
(`wire`, against the tables of `schema`) and returns Starlette responses, so errors come out in
the OpenAI format (`errors`) with the right status and no time goes to per-request model
validation. Responses are views of the router's Result (`sophia.routing.views`).

Threading: the router is synchronous (httpx.Client). Every routed request runs on a thread of
one pool of `max_concurrency` threads (`pool`), so the event loop never blocks: a plain
completion is one hop (the call is queued with its asyncio future; a thread runs it and sets
the result with one `call_soon_threadsafe`); a stream is one thread that owns the router's
generator from start to end and hands each text delta to the event loop (`stream`).

Records are written by the runtime's writer thread (DESIGN invariant 5); a graceful shutdown
(SIGTERM or SIGINT, `run`) stops accepting, lets in-flight requests finish, waits for the
routing threads and closes the runtime, which flushes every record.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response, StreamingResponse

from sophia.config import Config
from sophia.config.server import ServerSettings
from sophia.routing import views
from sophia.routing.features import RequestError
from sophia.routing.result import ChatRequest, Result
from sophia.runtime import Runtime
from sophia.server import schema, status
from sophia.server.access import Access
from sophia.server.errors import (
    ApiError,
    bad,
    error_response,
    internal,
    json_response,
    model_not_found,
    result_error,
    show,
    shutting_down,
)
from sophia.server.pool import RoutingPool
from sophia.server.stream import DELTA, END, FIRST, RAISE, Chunks, Pump
from sophia.server.wire import ChatCall, parse_chat, parse_object, reference_call
from sophia.vocab import Source

__all__ = ["ApiError", "FastPath", "Sophia", "create_app", "parse_chat"]

logger = logging.getLogger(__name__)

VERSION = "0.1.0"


def _routing_error(e: Exception) -> ApiError | None:
    """The 400/404 for what the router refuses before routing (a bad request, an unknown model)."""
    if isinstance(e, RequestError):
        return bad(str(e), "messages")
    if isinstance(e, ValueError):
        return model_not_found(str(e))
    return None


class Sophia:
    """State of one server process: the runtime, the routing threads, keys and limits."""

    def __init__(self, rt: Runtime, settings: ServerSettings) -> None:
        self.rt = rt
        self.router = rt.router
        self.settings = settings
        self.access = Access(settings)
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
            logger.warning("requests still waiting on endpoints at shutdown; closing those connections")
            self.router.close()
            self.pool.close()
        self.rt.close()

    # --- routing ------------------------------------------------------------------------

    def _request(self, call: ChatCall, key_id: str | None) -> ChatRequest:
        return ChatRequest(
            call.messages,
            call.max_tokens,
            force_model=call.force_model,
            source=Source.API,
            api_key_id=key_id,
            request_id=f"{self._id_prefix}{next(self._ids):014x}",
        )

    async def _route(self, req: ChatRequest) -> Result:
        try:
            return await self.pool.run(self.router.chat, req)
        except (RequestError, ValueError) as e:
            raise _routing_error(e) from None

    async def chat_completions(self, request: Request) -> Response:
        try:
            key_id = self.access.admit(request)
            call = parse_chat(await self.access.read_body(request), self.settings, self.models, self.aliases)
            req = self._request(call, key_id)
            if call.stream:
                return await self._stream(req, call)
            res = await self._route(req)
        except ApiError as e:
            return error_response(e)
        r = views.routing(res)  # derived once for the headers and the body
        headers = views.result_headers(res, call.ignored, r)
        if not res.ok:
            return error_response(result_error(res), headers, {"sophia": views.sophia_extension(res, r)})
        return json_response(views.completion(res, call.max_tokens, r), 200, headers)

    async def _stream(self, req: ChatRequest, call: ChatCall) -> Response:
        """Start the stream and wait for its first item: the routing headers go out with the first text."""
        pump = Pump(asyncio.get_running_loop())
        self.pool.submit(pump.run, self.router, req)
        try:
            first = await pump.queue.get()
        except BaseException:
            pump.cancelled = True
            raise
        kind = first[0]
        if kind == RAISE:
            raise _routing_error(first[1]) or first[1]
        if kind == END:
            res: Result = first[1]
            if not res.ok:  # nothing was sent yet: a plain HTTP error
                return error_response(
                    result_error(res), views.result_headers(res, call.ignored), {"sophia": views.sophia_extension(res)}
                )
            route = views.routing(res)
        else:
            route = first[2]
        headers = views.routing_headers(route)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        if call.ignored:
            headers["x-sophia-ignored-params"] = views.ignored_header(call.ignored)
        chunks = Chunks(req.request_id, route.model, call.include_usage)
        return StreamingResponse(
            self._events(pump, first, chunks, call), headers=headers, media_type="text/event-stream"
        )

    async def _events(self, pump: Pump, first: tuple, chunks: Chunks, call: ChatCall) -> AsyncIterator[bytes]:
        """The stream's bytes: whatever deltas have arrived go out together, in one write."""
        try:
            out = [chunks.role()]
            item = first
            while True:
                kind = item[0]
                if kind in (FIRST, DELTA):
                    out.append(chunks.delta(item[1]))
                elif kind == END:
                    out.append(chunks.end(item[1], call.max_tokens))
                    yield b"".join(out)
                    return
                else:  # RAISE: a bug in the router, after the stream began
                    logger.error("internal error while streaming", exc_info=item[1])
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
            key_id = self.access.admit(request)
            raw = await self.access.read_body(request)
            call = reference_call(parse_object(raw), raw, self.settings, self.models, self.aliases)
            res = await self._route(self._request(call, key_id))
        except ApiError as e:
            return error_response(e)
        headers = views.result_headers(res)
        if not res.ok:
            return error_response(result_error(res), headers, views.chat_response(res))
        return json_response(views.chat_response(res), 200, headers)

    # --- reading ------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        try:
            self.access.authenticate(request)
        except ApiError as e:
            return error_response(e)
        return json_response({"object": "list", "data": status.models(self.settings, self.cfg)})

    async def get_model(self, model_id: str, request: Request) -> Response:
        try:
            self.access.authenticate(request)
        except ApiError as e:
            return error_response(e)
        for m in status.models(self.settings, self.cfg):
            if m["id"] == model_id:
                return json_response(m)
        return error_response(model_not_found(f"The model {show(model_id, 80)} does not exist."))

    async def health(self, request: Request, probe: bool = False) -> Response:
        detail = True
        if self.access.keys:
            try:
                self.access.authenticate(request)
            except ApiError:
                detail = False  # states only; errors and latencies are for key holders
        checked = None
        if probe:
            if not detail:
                return error_response(self.access.probe_needs_key())
            checked = await self.pool.run(self.router.check, [e.name for e in self.cfg.endpoints])
        body, serving = status.health(self.cfg, self.router.health.snapshot(), checked, detail)
        return json_response(body, 200 if serving else 503, {"cache-control": "no-store"})

    async def stats(self, request: Request, source: list[str] | None = None) -> Response:
        try:
            self.access.authenticate(request)
            data = await self.pool.run(status.stats_body, self.rt, source)
        except ApiError as e:
            return error_response(e)
        return json_response(data, 200, {"cache-control": "no-store"})

    async def dashboard(self) -> Response:
        return RedirectResponse(self.settings.app_url, 307)


# --- the FastAPI application ------------------------------------------------------------------

_ROUTED_HEADERS = sorted(
    {
        "x-sophia-tier",
        "x-sophia-endpoint",
        "x-sophia-model",
        "x-sophia-reason",
        "x-sophia-complexity",
        "x-sophia-cost-usd",
    }
)


def create_app(rt: Runtime, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app (routes, errors in the OpenAI format, documentation) of one process."""
    settings = settings or rt.cfg.server
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
    _add_routes(app, s)
    _add_error_handlers(app)
    app.openapi = lambda: _openapi(app, settings)
    return app


def _add_routes(app: FastAPI, s: Sophia) -> None:
    errors = schema.ERRORS
    app.add_api_route(
        "/v1/chat/completions",
        s.chat_completions,
        methods=["POST"],
        tags=["OpenAI"],
        summary="Chat completion (streamed or not), routed by Sophia",
        description="Headers: " + ", ".join(_ROUTED_HEADERS) + " (a stream carries its cost in the final usage).",
        responses={
            200: {"model": schema.ChatCompletion, "description": "A chat.completion, or text/event-stream chunks"},
            **errors,
        },
        openapi_extra=schema.body_doc(schema.ChatCompletionRequest),
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
        responses={404: errors[404]},
    )
    app.add_api_route(
        "/chat",
        s.chat,
        methods=["POST"],
        tags=["Reference"],
        summary="The reference request {messages, max_tokens} → {response, routing, timestamp}",
        responses={k: v for k, v in errors.items() if k != 504},
        openapi_extra=schema.body_doc(schema.ReferenceChatRequest),
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


def _add_error_handlers(app: FastAPI) -> None:
    """Every error FastAPI or Starlette answers itself comes out in the OpenAI format too."""

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        msg = {
            404: f"Unknown path {request.url.path}: see /docs",
            405: f"Method {request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        return error_response(
            ApiError(exc.status_code, msg, code={404: "unknown_url"}.get(exc.status_code)),
            getattr(exc, "headers", None),
        )

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:])
        return error_response(bad(f"{where}: {first.get('msg', 'invalid value')}", where or None))

    async def crash(request: Request, exc: Exception) -> Response:
        return error_response(internal())

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, crash)


def _openapi(app: FastAPI, settings: ServerSettings) -> dict:
    """The generated schema plus the request models of the routes whose bodies are read by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = spec.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    for model in (schema.ChatCompletionRequest, schema.ReferenceChatRequest):
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, d in js.pop("$defs", {}).items():
            schemas.setdefault(name, d)
        schemas[model.__name__] = js
    if settings.api_keys:
        comps["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    app.openapi_schema = spec
    return spec


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
                await error_response(shutting_down())(scope, receive, send)
        except Exception:
            logger.exception("internal error while serving %s", scope["path"])
            if not started:
                await error_response(internal())(scope, receive, send)
