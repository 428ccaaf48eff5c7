"""The router: decision → call → retry and failover → one record, whatever happened."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sophia.config import Config, api_key
from sophia.config.policy_settings import digest, settings_of
from sophia.money import pricing
from sophia.routing import features as feats
from sophia.routing import policy
from sophia.routing.anomaly import choices_asked, usage_anomaly
from sophia.routing.backends.base import Backend, BackendError, CallToken, Chunk, Reply, Usage
from sophia.routing.backends.simulated import SimulatedBackend
from sophia.routing.cache import CachedReply, ResponseCache, cache_key
from sophia.routing.health import Health
from sophia.routing.record import log_record
from sophia.routing.reply import Assembly, as_chunks, completion_text, finish_reason, tool_calls
from sophia.routing.result import CACHE_OFF, CACHE_USE, ChatRequest, Result, StreamHandle
from sophia.routing.traits import Traits, traits
from sophia.vocab import Reason, Status

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)


def make_backends(
    cfg: Config,
    sleep: Callable[[float], None] = time.sleep,
    secrets: dict | None = None,
    transport: Callable[[], httpx.BaseTransport] | None = None,
) -> dict[str, Backend]:
    """A backend per endpoint; real ones on `transport()` when given, else on the lean transport,
    which holds a request's deadlines however slowly an endpoint trickles bytes."""
    # httpx and the HTTP backends load only when a real endpoint is configured (start-up time).
    from sophia.routing.backends.openai import OpenAIBackend
    from sophia.routing.backends.transport import FastTransport

    out: dict[str, Backend] = {}
    for e in cfg.endpoints:
        if e.simulated:
            out[e.name] = SimulatedBackend(e, sleep=sleep)
        else:
            t = transport() if transport is not None else FastTransport()
            out[e.name] = OpenAIBackend(e, api_key(e, secrets), cfg.failover, transport=t)
    return out


def endpoint_fault(e: BackendError) -> bool:
    """Whether a failure counts against the endpoint's health. A 400/413/422 is about the
    request (bad body, too long): the endpoint answered, so it is not a reason to cool it down."""
    return not (e.kind == "http_status" and e.status in (400, 413, 422))


def refuse(res: Result) -> None:
    d = res.decision
    res.tier, res.endpoint, res.model = d.tier, d.endpoint, d.model
    if d.reason == Reason.CAPABILITY:
        res.status, res.error_kind = Status.REFUSED, "capability"
        res.error = f"no endpoint can serve this request: {d.unservable}"
        return
    res.status, res.error_kind = Status.REFUSED, "budget"
    which = getattr(res.reservation, "limited_by", None)
    res.error = (
        f"budget {which!r} has reached its limit (action: block); raise it or wait for its next period"
        if which
        else "a budget has reached its limit (action: block)"
    )


@dataclass
class _Call:
    """What one request's calls have produced so far, shared by the steps of `_attempts`."""

    t0: float
    parts: list[str] = field(default_factory=list)  # choice 0's text as it arrived
    usage: Usage | None = None
    cache_key: str | None = None
    started: bool = False  # something reached the client: the request cannot move any more
    reply: Reply | None = None  # a whole reply
    assembly: Assembly | None = None  # a stream's choices
    fingerprint: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Router:
    def __init__(
        self,
        cfg: Config,
        writer=None,
        backends: dict[str, Backend] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
        policy_version: int | None = None,
    ) -> None:
        self._active = (cfg, policy_version)  # swapped as one, see `use`
        self.writer = writer
        self.backends = backends if backends is not None else make_backends(cfg, sleep)
        self.clock, self.now, self.sleep = clock, now, sleep
        self.health = Health(
            [e.name for e in cfg.endpoints], cfg.failover.failure_threshold, cfg.failover.cooldown_s, clock
        )
        self._digest_memo: tuple[Config, str] | None = None
        self.guard = None  # a budgets.BudgetGuard when budgets are enforced
        self.observers: list[Callable[[ChatRequest, Result], None]] = []  # told of every finished request
        self.instance = uuid.uuid4().hex[:12]  # this process, in every record it writes
        self.cache = ResponseCache(cfg.cache.max_entries, cfg.cache.ttl_s, clock) if cfg.cache.enabled else None

    @property
    def cfg(self) -> Config:
        return self._active[0]

    @property
    def policy_version(self) -> int | None:
        return self._active[1]

    @policy_version.setter
    def policy_version(self, version: int | None) -> None:
        self._active = (self._active[0], version)

    def use(self, cfg: Config, version: int | None) -> None:
        """Route with new settings from the next request on; a record never names a version
        it was not routed under, because both change in one assignment."""
        self._active = (cfg, version)

    # --- deciding -----------------------------------------------------------------------

    def features(self, req: ChatRequest, cfg: Config | None = None, tr: Traits | None = None) -> feats.Features:
        cfg = cfg or self.cfg
        tr = tr or traits(req.messages, req.body, req.body_bytes)
        return feats.extract(
            req.messages,
            req.max_tokens,
            cfg.scorer,
            cfg.routing.default_max_tokens,
            extra_chars=tr.extra_chars,
            images=tr.images,
            image_tokens=cfg.image_tokens(cfg.routing.serverless_model) if tr.images else 0,
        )

    def _state(self, req: ChatRequest, f: feats.Features, tr: Traits) -> policy.RuntimeState:
        return policy.RuntimeState(
            unhealthy=self.health.unhealthy(),
            force_tier=req.force_tier,
            force_model=req.force_model,
            needs=tr.needs,
            tokens=f.est_prompt_tokens + f.max_tokens * tr.choices,
        )

    def decide(self, req: ChatRequest, cfg: Config | None = None) -> policy.Decision:
        """The decision for a request under the current runtime state; nothing is called or reserved."""
        cfg = cfg or self.cfg
        tr = traits(req.messages, req.body, req.body_bytes)
        f = self.features(req, cfg, tr)
        return policy.decide(f, cfg, self._state(req, f, tr))

    # --- routing ------------------------------------------------------------------------

    def chat(self, req: ChatRequest, cfg: Config | None = None) -> Result:
        """Route and call without streaming. Always returns the recorded result."""
        handle = self._run(req, cfg, stream=False)
        for _ in handle:
            pass
        assert handle.result is not None
        return handle.result

    def stream(self, req: ChatRequest, cfg: Config | None = None) -> StreamHandle:
        """Route and stream. The request is recorded when the stream ends or is closed."""
        return self._run(req, cfg, stream=True)

    def _run(self, req: ChatRequest, cfg: Config | None, stream: bool) -> StreamHandle:
        # A record names the version it was routed under; per-call settings are no version.
        active, active_version = self._active
        version = active_version if cfg is None or cfg is active else None
        cfg = cfg or active
        if req.token is None:
            req.token = CallToken(self.clock)
        # Validation errors surface here, before anything is routed or recorded.
        tr = traits(req.messages, req.body, req.body_bytes)
        f = self.features(req, cfg, tr)
        state = self._state(req, f, tr)
        reservation = None
        if self.guard is not None:  # decide under budget pressure and reserve, atomically
            decision, reservation = self.guard.admit(lambda st: policy.decide(f, cfg, st), state, req.source, cfg)
        else:
            decision = policy.decide(f, cfg, state)
        res = Result(
            request_id=req.request_id or uuid.uuid4().hex,
            decision=decision,
            status=Status.ERROR,
            ts=self.now(),
            reason=decision.reason,
            streamed=stream,
            policy_version=version,
            traits=tr,
        )
        res.reservation = reservation

        def abandon() -> None:  # closed before the first byte was asked for
            res.status, res.error_kind = Status.CANCELLED, "cancelled"
            res.error = "the client went away before the reply started"
            handle.result = res
            self._finish(req, cfg, decision, res)

        handle = StreamHandle(iter(()), abandon)
        handle.live = res
        handle._gen = self._attempts(req, cfg, decision, res, stream, handle)
        return handle

    def _attempts(
        self, req: ChatRequest, cfg: Config, d: policy.Decision, res: Result, stream: bool, handle: StreamHandle
    ) -> Iterator[Chunk]:
        call = _Call(t0=self.clock())
        try:
            call.cache_key = self._cache_key(req, cfg, d, res.traits)
            hit = self.cache.get(call.cache_key) if call.cache_key is not None and req.cache == CACHE_USE else None
            if hit is not None:
                self._answer_from_cache(res, hit, call.t0)
                yield from as_chunks(hit.choices) if hit.choices else (Chunk(hit.text),)
                return
            if d.refused:
                refuse(res)
                return
            yield from self._through_chain(req, cfg, d, res, stream, call)
        except Exception as e:  # a bug, not a backend failure: still one record, with the reason
            res.status, res.error_kind = Status.ERROR, "internal"
            res.error = f"internal error while routing: {type(e).__name__}: {e}"
            logger.exception("%s", res.error)
        except GeneratorExit:
            # The consumer went away mid-stream: record what it received.
            if not res.cached:
                res.status, res.error_kind = Status.CANCELLED, "cancelled"
                res.error = "the client closed the stream before it ended"
            raise
        finally:
            self._conclude(req, cfg, d, res, call)
            handle.result = res
            self._finish(req, cfg, d, res)

    def _cache_key(self, req: ChatRequest, cfg: Config, d: policy.Decision, tr: Traits) -> str | None:
        """The request's key, or None when it is not to be cached: a request that samples without
        a seed gets another answer each time (unless `cache.sampled` says to cache it anyway)."""
        if self.cache is None or d.refused or req.cache == CACHE_OFF:
            return None
        if not (tr.deterministic or cfg.cache.sampled):
            return None
        return cache_key(
            req.messages,
            d.features.max_tokens,
            req.force_tier,
            req.force_model,
            self._settings_digest(cfg),
            req.body,
            (d.endpoint, d.model),
        )

    def _answer_from_cache(self, res: Result, hit: CachedReply, t0: float) -> None:
        res.status, res.cached, res.reason = Status.OK, True, Reason.CACHE
        res.tier, res.endpoint, res.model = hit.tier, hit.endpoint, hit.model
        res.prompt_tokens, res.completion_tokens = hit.prompt_tokens, hit.completion_tokens
        res.usage_estimated, res.text = hit.usage_estimated, hit.text
        res.choices, res.fingerprint, res.usage_details = hit.choices, hit.fingerprint, hit.usage_details
        self._reply_facts(res)
        res.simulated = getattr(self.backends.get(hit.endpoint), "simulated", False)
        res.ttft_ms = (self.clock() - t0) * 1000

    def _through_chain(
        self, req: ChatRequest, cfg: Config, d: policy.Decision, res: Result, stream: bool, call: _Call
    ) -> Iterator[Chunk]:
        """Each endpoint of the failover chain in turn, until one answers."""
        for i, (endpoint, model) in enumerate(d.chain):
            # Skip an endpoint that another request put in cool-down since the decision,
            # unless it is the last one left to try.
            if 0 < i < len(d.chain) - 1 and endpoint in self.health.unhealthy():
                continue
            backend = self.backends[endpoint]
            if endpoint not in res.path:
                res.path.append(endpoint)
            res.tier, res.endpoint, res.model = cfg.endpoint(endpoint).tier, endpoint, model
            res.simulated = backend.simulated
            done = yield from self._on_endpoint(backend, endpoint, model, req, cfg, d, res, stream, call)
            if done:
                return
        # Every endpoint in the chain failed: res holds the last error.
        res.error = f"every endpoint failed ({' → '.join(res.path)}); last error: {res.error}"

    def _on_endpoint(
        self,
        backend: Backend,
        endpoint: str,
        model: str,
        req: ChatRequest,
        cfg: Config,
        d: policy.Decision,
        res: Result,
        stream: bool,
        call: _Call,
    ) -> Iterator[Chunk]:
        """Call one endpoint with retries. Returns True when the request is over (answered, or
        failed after text reached the client), False to fail over to the next endpoint."""
        retries = cfg.failover.max_retries
        token = req.token
        for attempt in range(retries + 1):
            if token.cancelled:  # the client left while an earlier attempt failed
                res.status, res.error_kind = Status.CANCELLED, "cancelled"
                res.error = "the client went away before the reply was complete"
                return True
            res.attempts += 1
            call.usage = None  # usage reported by an earlier, failed attempt is not this reply's
            a0 = self.clock()
            token.arm(cfg.failover.first_token_timeout_s, cfg.failover.timeout_s)
            try:
                if stream:
                    assembly = call.assembly = Assembly()
                    for chunk in backend.stream(model, req.messages, d.features.max_tokens, req.body, token):
                        if chunk.usage is not None:
                            call.usage = chunk.usage
                        if chunk.fingerprint is not None:
                            call.fingerprint = chunk.fingerprint
                        if chunk.text or chunk.choices:
                            if not call.started:
                                res.ttft_ms = (self.clock() - call.t0) * 1000
                                call.started = True
                            if chunk.text:
                                call.parts.append(chunk.text)
                            assembly.add(chunk)
                            yield chunk
                else:
                    reply = call.reply = backend.complete(model, req.messages, d.features.max_tokens, req.body, token)
                    call.usage, call.fingerprint = reply.usage, reply.fingerprint
                    call.parts = [reply.text]
                    res.ttft_ms = (self.clock() - call.t0) * 1000
            except BackendError as e:
                res.upstream_ms += (self.clock() - a0) * 1000
                if token.cancelled or e.kind == "cancelled":  # the client left: nobody to answer
                    res.status, res.error_kind = Status.CANCELLED, "cancelled"
                    res.error = "the client went away before the reply was complete"
                    return True
                if endpoint_fault(e):
                    self.health.failure(endpoint, str(e))
                res.error, res.error_kind = str(e), e.kind
                res.failover_cause = res.failover_cause or e.kind
                if call.started:  # text already reached the client: it cannot be taken back
                    return True
                # Retry the same endpoint, unless this failure just put it in cool-down.
                if e.retryable and attempt < retries and endpoint not in self.health.unhealthy():
                    self.sleep(cfg.failover.retry_backoff_s * (2**attempt))
                    continue
                return False
            took_ms = (self.clock() - a0) * 1000
            res.upstream_ms += took_ms
            self.health.success(endpoint, took_ms)
            res.status, res.error, res.error_kind = Status.OK, None, None
            return True
        return False

    def _conclude(self, req: ChatRequest, cfg: Config, d: policy.Decision, res: Result, call: _Call) -> None:
        """Text, latency, usage, cost and reason of a finished request; cache a fresh answer."""
        res.latency_ms = (self.clock() - call.t0) * 1000
        if res.cached:
            return
        res.text = "".join(call.parts)
        if call.reply is not None:
            res.choices = list(call.reply.choices)
        elif call.assembly is not None and call.started:
            res.choices = call.assembly.choices
        res.fingerprint = call.fingerprint
        if call.usage is not None:
            u = call.usage
            res.usage_details, res.cached_prompt_tokens, res.reasoning_tokens = (
                u.details,
                u.cached_prompt_tokens,
                u.reasoning_tokens,
            )
        self._reply_facts(res)
        self._settle_usage(req, res, d, call.usage)
        if res.endpoint is not None and (res.prompt_tokens or res.completion_tokens):
            res.metered_cost_usd, res.amortized_cost_usd = pricing.cost_of(
                cfg, res.endpoint, res.model, res.prompt_tokens, res.completion_tokens
            )
        if res.path and res.path[-1] != d.chain[0][0]:
            res.reason = Reason.FAILOVER
        elif res.status == Status.OK:  # retried on its first endpoint and served there: no failover
            res.failover_cause = None
        if res.status == Status.OK and call.cache_key is not None:
            self.cache.put(
                call.cache_key,
                CachedReply(
                    res.text,
                    res.prompt_tokens,
                    res.completion_tokens,
                    res.usage_estimated,
                    res.tier,
                    res.endpoint,
                    res.model,
                    res.choices,
                    res.fingerprint,
                    res.usage_details,
                ),
            )

    @staticmethod
    def _reply_facts(res: Result) -> None:
        if res.choices:
            res.finish_reason = finish_reason(res.choices)
            res.tool_calls = tool_calls(res.choices)

    def _settings_digest(self, cfg: Config) -> str:
        memo = self._digest_memo
        if memo is None or memo[0] is not cfg:
            memo = self._digest_memo = (cfg, digest(settings_of(cfg)))
        return memo[1]

    def _settle_usage(self, req: ChatRequest, res: Result, d: policy.Decision, usage: Usage | None) -> None:
        if usage is not None and res.status == Status.OK:
            res.prompt_tokens, res.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            res.usage_estimated = False
        elif res.text or res.status == Status.OK:
            # No usage reported (or a stream cut short): estimate, and say so.
            res.prompt_tokens = d.features.est_prompt_tokens
            written = completion_text(res.choices) if res.choices else res.text
            res.completion_tokens = feats.estimate_tokens(len(written))
            res.usage_estimated = True
            if usage is not None:  # reported usage of a partial stream still beats a guess
                res.prompt_tokens, res.completion_tokens = usage.prompt_tokens, usage.completion_tokens
                res.usage_estimated = False
        if usage is not None:
            res.usage_anomaly = usage_anomaly(res.prompt_tokens, res.completion_tokens, d.features, choices_asked(req))
            if res.usage_anomaly:
                logger.warning("request %s: usage anomaly on %s: %s", req.request_id, res.endpoint, res.usage_anomaly)

    def _finish(self, req: ChatRequest, cfg: Config, d: policy.Decision, res: Result) -> None:
        """Settle the budget reservation with the actual cost, then record: once."""
        if res.recorded:
            return
        res.recorded = True
        if self.guard is not None and res.reservation is not None:
            self.guard.settle(res.reservation, res.tier, res.endpoint, res.model, res.metered_cost_usd, req.source)
        if self.writer is not None:
            self.writer.put(log_record(req, cfg, d, res, self.instance))
        for observe in self.observers:  # e.g. the server's /metrics; never lets a request fail
            try:
                observe(req, res)
            except Exception:
                logger.exception("an observer of finished requests failed")

    # --- health -------------------------------------------------------------------------

    def check(self, names: Sequence[str] | None = None) -> dict[str, bool]:
        """Health-check endpoints (default: those cooling down) and re-admit the ones that pass."""
        out = {}
        for name in names if names is not None else self.health.due_for_check():
            ok = self.backends[name].check()
            if ok:
                self.health.success(name)
            else:
                self.health.failure(name, "health check failed")
            out[name] = ok
        return out

    def close(self) -> None:
        for b in self.backends.values():
            b.close()
