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
import logging
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from sophia.config.server import ServerSettings
from sophia.runtime import Runtime
from sophia.server import schema
from sophia.server.errors import (
    ApiError,
    bad,
    error_response,
    internal,
    shutting_down,
)
from sophia.server.service import Sophia
from sophia.server.wire import parse_chat

__all__ = ["ApiError", "FastPath", "Sophia", "create_app", "parse_chat"]

logger = logging.getLogger(__name__)

VERSION = "0.1.0"


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
        "/v1/embeddings",
        s.embeddings,
        methods=["POST"],
        tags=["OpenAI"],
        summary="Embeddings, from the configured embeddings model (routing.embeddings_model), recorded and costed",
        responses={k: v for k, v in errors.items() if k != 504},
    )
    app.add_api_route(
        "/v1/completions",
        s.completions,
        methods=["POST"],
        tags=["OpenAI"],
        summary="Not served (the legacy completions API): a 404 that points to /v1/chat/completions",
        responses={404: errors[404]},
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
        description="Costs: `actual_total_usd` is metered spend plus the GPU-hours paid while the fleet ran; "
        "beside it the baselines `all_serverless_primary_usd`, `all_premium_usd` and `all_dedicated_usd` "
        "(with `all_dedicated_unserved_share`). `cost_savings_usd` (also `cost_savings`) = "
        "all_serverless_primary_usd - actual_total_usd, negative when routing cost more.",
    )
    app.add_api_route(
        "/metrics",
        s.metrics_page,
        methods=["GET"],
        tags=["Operations"],
        summary="Prometheus metrics: requests, tokens, metered cost, latency, TTFT, the gateway's own overhead, "
        "in-flight and queued requests, budget spend against limits, cache hits",
        response_class=Response,
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
