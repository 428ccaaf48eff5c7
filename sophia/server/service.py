"""One server process's state and request handlers: routing threads, keys and limits, and the
chat, embeddings, reference, model, health and stats answers (DESIGN §7). `app` declares them
as routes of the FastAPI application.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from sophia.config import Config
from sophia.config.server import ServerSettings
from sophia.routing import views
from sophia.routing.backends.base import CallToken
from sophia.routing.embedder import embed
from sophia.routing.features import RequestError
from sophia.routing.result import CACHE_OFF, CACHE_REFRESH, CACHE_USE, ChatRequest, Result
from sophia.runtime import Runtime
from sophia.server import status
from sophia.server.access import Access
from sophia.server.errors import (
    ApiError,
    bad,
    error_response,
    json_response,
    model_not_found,
    result_error,
    show,
)
from sophia.server.metrics import CONTENT_TYPE, Metrics
from sophia.server.pool import RoutingPool
from sophia.server.stream import DELTA, END, FIRST, RAISE, Chunks, EventStream, Pump
from sophia.server.wire import ChatCall, parse_chat, parse_embeddings, parse_object, reference_call
from sophia.vocab import Capability, Source

logger = logging.getLogger(__name__)


def cache_use(request: Request) -> str:
    """How a request may use the response cache, from its headers: `Cache-Control: no-cache`
    asks for a fresh answer (which is then cached), `no-store` or `x-sophia-cache: off` leaves
    the cache alone."""
    h = request.headers
    mode = (h.get("x-sophia-cache") or "").strip().lower()
    if mode in ("off", "no-store"):
        return CACHE_OFF
    if mode == "refresh":
        return CACHE_REFRESH
    cc = (h.get("cache-control") or "").lower()
    if "no-store" in cc:
        return CACHE_OFF
    if "no-cache" in cc:
        return CACHE_REFRESH
    return CACHE_USE


async def _on_disconnect(request: Request, token: CallToken) -> None:
    """Cancel the request's upstream call as soon as its client goes away (the body is read by
    now, so the next message is the disconnect), freeing its routing slot at once."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # the connection is gone one way or another; nothing to cancel on
        return
    token.cancel()


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
        guard = rt.guard
        self.metrics = Metrics(guard.snapshot if guard is not None else list, self.pool.busy, self.pool.queued)
        self.router.observers.append(self.metrics.observe)
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

    def _request(self, call: ChatCall, key_id: str | None, body: dict | None, cache: str = CACHE_USE) -> ChatRequest:
        return ChatRequest(
            call.messages,
            call.max_tokens,
            force_model=call.force_model,
            source=Source.API,
            api_key_id=key_id,
            request_id=f"{self._id_prefix}{next(self._ids):014x}",
            body=body,
            body_bytes=call.size if body is not None else 0,
            cache=cache,
            token=CallToken(),
        )

    def _dropped(self, call: ChatCall, res: Result) -> tuple[str, ...]:
        """The fields the endpoint that served the request is configured not to accept."""
        return views.dropped_params(call.body, self.cfg, res.endpoint)

    async def _route(self, req: ChatRequest) -> Result:
        try:
            return await self.pool.run(self.router.chat, req)
        except (RequestError, ValueError) as e:
            raise _routing_error(e) from None

    async def chat_completions(self, request: Request) -> Response:
        try:
            key_id = self.access.admit(request)
            call = parse_chat(await self.access.read_body(request), self.settings, self.models, self.aliases)
            req = self._request(call, key_id, call.body, cache_use(request))
            # Watch for the client leaving while its request waits on an endpoint; a stream hands the
            # watch on to its response, which ends it with the stream.
            watch = asyncio.ensure_future(_on_disconnect(request, req.token))
            handed = False
            try:
                if call.stream:
                    response = await self._stream(req, call, watch)
                    handed = isinstance(response, EventStream)
                    return response
                res = await self._route(req)
            finally:
                if not handed:
                    watch.cancel()
        except ApiError as e:
            return error_response(e)
        r = views.routing(res)  # derived once for the headers and the body
        headers = views.result_headers(res, self._dropped(call, res), r)
        if not res.ok:
            return error_response(result_error(res), headers, {"sophia": views.sophia_extension(res, r)})
        return json_response(views.completion(res, call.max_tokens, r), 200, headers)

    async def _stream(self, req: ChatRequest, call: ChatCall, watch: asyncio.Future) -> Response:
        """Start the stream and wait for its first item: the routing headers go out with the first text."""
        pump = Pump(asyncio.get_running_loop(), req.token)
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
                    result_error(res),
                    views.result_headers(res, self._dropped(call, res)),
                    {"sophia": views.sophia_extension(res)},
                )
            route = views.routing(res)
            fingerprint = res.fingerprint
        else:
            route = first[2]
            fingerprint = first[1].fingerprint
        headers = views.routing_headers(route)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        dropped = views.dropped_params(call.body, self.cfg, route.endpoint)
        if dropped:
            headers["x-sophia-ignored-params"] = views.ignored_header(dropped)
        chunks = Chunks(req.request_id, route.model, call.include_usage, fingerprint)
        return EventStream(self._events(pump, first, chunks, call, watch), headers)

    async def _events(
        self, pump: Pump, first: tuple, chunks: Chunks, call: ChatCall, watch: asyncio.Future
    ) -> AsyncIterator[bytes]:
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
            pump.token.cancel()  # and at once if the thread is waiting on the endpoint
            watch.cancel()

    def _embeddings_model(self, asked: str | None) -> str:
        """The model an embeddings request goes to, or a 404 that says what to configure."""
        cfg = self.cfg
        if asked is None:
            if cfg.routing.embeddings_model is None:
                raise model_not_found(
                    "No embeddings model is configured: set routing.embeddings_model to a model whose "
                    '[[models]] table has capabilities = ["embeddings"].'
                )
            return cfg.routing.embeddings_model
        try:
            ep = cfg.endpoint_for_model(asked)
        except KeyError:
            raise model_not_found(f"The model {show(asked, 80)} does not exist (GET /v1/models).") from None
        if Capability.EMBEDDINGS not in cfg.capabilities(ep, asked):
            raise ApiError(
                400,
                f"The model {show(asked, 80)} does not serve embeddings: ask for an alias or an embeddings model.",
                param="model",
                code="unsupported_capability",
            )
        return asked

    async def embeddings(self, request: Request) -> Response:
        """POST /v1/embeddings: to the configured embeddings model, recorded and costed."""
        try:
            key_id = self.access.admit(request)
            call = parse_embeddings(await self.access.read_body(request), self.aliases)
            model = self._embeddings_model(call.model)
            req = ChatRequest(
                [{"role": "user", "content": call.text}],
                source=Source.API,
                api_key_id=key_id,
                request_id=f"{self._id_prefix}{next(self._ids):014x}",
                body=call.body,
            )
            res, out = await self.pool.run(embed, self.router, req, model)
        except ApiError as e:
            return error_response(e)
        headers = views.result_headers(res)
        if not res.ok or out is None:
            return error_response(result_error(res), headers, {"sophia": views.sophia_extension(res)})
        return json_response(views.embeddings(res, out), 200, headers)

    async def completions(self, request: Request) -> Response:
        return error_response(
            ApiError(
                404,
                "The legacy /v1/completions API is not served: send chat requests to /v1/chat/completions "
                '(messages = [{"role": "user", "content": your prompt}]).',
                code="unknown_url",
            )
        )

    async def chat(self, request: Request) -> Response:
        """The reference deployment's POST /chat."""
        try:
            key_id = self.access.admit(request)
            raw = await self.access.read_body(request)
            call = reference_call(parse_object(raw), raw, self.settings, self.models, self.aliases)
            res = await self._route(self._request(call, key_id, None))
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

    async def metrics_page(self, request: Request) -> Response:
        """Prometheus's text format; behind the same keys as /stats when keys are configured."""
        try:
            self.access.authenticate(request)
        except ApiError as e:
            return error_response(e)
        return Response(self.metrics.page(), 200, {"cache-control": "no-store"}, media_type=CONTENT_TYPE)

    async def dashboard(self) -> Response:
        """To the app: `server.app_url` when set, else the URL the app serving this database
        recorded (read on each visit: the app may have started, moved or stopped since)."""
        from sophia.config.server import app_url_for

        db = self.rt.db
        return RedirectResponse(app_url_for(self.settings, None if db.memory else db.path), 307)
