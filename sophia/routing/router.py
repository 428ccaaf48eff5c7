"""The router: decision → call → retry and failover → one record, whatever happened."""

from __future__ import annotations

import inspect
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sophia.config import Config, api_key
from sophia.config.policy_settings import digest, settings_of
from sophia.config.privacy import stored_text
from sophia.money import pricing
from sophia.routing import features as feats
from sophia.routing import policy
from sophia.routing.backends.openai import Backend, BackendError, OpenAIBackend, Usage
from sophia.routing.backends.simulated import SimulatedBackend
from sophia.routing.cache import CachedReply, ResponseCache, cache_key
from sophia.routing.health import Health

SOURCES = ("playground", "cli", "api", "import", "demo")


@dataclass
class ChatRequest:
    messages: Sequence[Mapping]
    max_tokens: int | None = None
    force_tier: str | None = None
    force_model: str | None = None
    source: str = "api"
    api_key_id: str | None = None
    request_id: str | None = None


@dataclass
class Result:
    request_id: str
    decision: policy.Decision | None
    status: str  # ok | error | refused | cancelled
    text: str = ""
    tier: str | None = None
    endpoint: str | None = None
    model: str | None = None
    reason: str | None = None
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 0
    path: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    metered_cost_usd: float = 0.0
    amortized_cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cached: bool = False
    simulated: bool = False
    streamed: bool = False
    ts: datetime | None = None
    policy_version: int | None = None
    reservation: object | None = field(default=None, repr=False)
    recorded: bool = field(default=False, repr=False)

    @property
    def cost_usd(self) -> float:
        """What the request cost: metered for serverless, its GPU-time share for dedicated."""
        return round(self.metered_cost_usd + self.amortized_cost_usd, pricing.DIGITS)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class StreamHandle:
    """Iterate for the reply's text as it arrives; `result` is set once the stream ends.

    Closing the handle (or dropping it) before the stream ends records the request as
    cancelled with what was received, even when iteration never began.
    """

    def __init__(self, gen: Iterator[str], on_abandon: Callable[[], None]) -> None:
        self._gen = gen
        self._on_abandon = on_abandon
        self.result: Result | None = None
        self.live: Result | None = None  # the result being filled in; its routing is final at the first text

    def __iter__(self) -> Iterator[str]:
        return self._gen

    def close(self) -> None:
        never_ran = inspect.getgeneratorstate(self._gen) == inspect.GEN_CREATED
        self._gen.close()
        if never_ran:  # a generator that never ran has no `finally` to run: record it here (once)
            self._on_abandon()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finalizer
            pass


class RoutingError(RuntimeError):
    """Raised by `Router.chat(..., raise_on_error=True)` with the recorded result attached."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.error or result.status)
        self.result = result


def make_backends(
    cfg: Config, sleep: Callable[[float], None] = time.sleep, secrets: dict | None = None
) -> dict[str, Backend]:
    out: dict[str, Backend] = {}
    for e in cfg.endpoints:
        if e.simulated:
            out[e.name] = SimulatedBackend(e, sleep=sleep)
        else:
            out[e.name] = OpenAIBackend(e, api_key(e, secrets), cfg.failover)
    return out


def _endpoint_fault(e: BackendError) -> bool:
    """Whether a failure counts against the endpoint's health. A 400/413/422 is about the
    request (bad body, too long): the endpoint answered, so it is not a reason to cool it down."""
    return not (e.kind == "http_status" and e.status in (400, 413, 422))


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

    def features(self, req: ChatRequest, cfg: Config | None = None) -> feats.Features:
        cfg = cfg or self.cfg
        return feats.extract(req.messages, req.max_tokens, cfg.scorer, cfg.routing.default_max_tokens)

    def _state(self, req: ChatRequest) -> policy.RuntimeState:
        return policy.RuntimeState(
            unhealthy=self.health.unhealthy(), force_tier=req.force_tier, force_model=req.force_model
        )

    def decide(self, req: ChatRequest, cfg: Config | None = None) -> policy.Decision:
        """The decision for a request under the current runtime state; nothing is called or reserved."""
        cfg = cfg or self.cfg
        return policy.decide(self.features(req, cfg), cfg, self._state(req))

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
        # Validation errors surface here, before anything is routed or recorded.
        f = self.features(req, cfg)
        state = self._state(req)
        reservation = None
        if self.guard is not None:  # decide under budget pressure and reserve, atomically
            decision, reservation = self.guard.admit(lambda st: policy.decide(f, cfg, st), state, req.source, cfg)
        else:
            decision = policy.decide(f, cfg, state)
        res = Result(
            request_id=req.request_id or uuid.uuid4().hex,
            decision=decision,
            status="error",
            ts=self.now(),
            reason=decision.reason,
            streamed=stream,
            policy_version=version,
        )
        res.reservation = reservation

        def abandon() -> None:  # closed before the first byte was asked for
            res.status, res.error_kind = "cancelled", "cancelled"
            res.error = "the client went away before the reply started"
            handle.result = res
            self._finish(req, cfg, decision, res)

        handle = StreamHandle(iter(()), abandon)
        handle.live = res
        handle._gen = self._attempts(req, cfg, decision, res, stream, handle)
        return handle

    def _attempts(
        self, req, cfg: Config, d: policy.Decision, res: Result, stream: bool, handle: StreamHandle
    ) -> Iterator[str]:
        t0 = self.clock()
        parts: list[str] = []
        usage: Usage | None = None
        key = None
        try:
            if self.cache is not None and not d.refused:
                key = cache_key(
                    req.messages, d.features.max_tokens, req.force_tier, req.force_model, self._settings_digest(cfg)
                )
                hit = self.cache.get(key)
                if hit is not None:
                    res.status, res.cached, res.reason = "ok", True, "cache"
                    res.tier, res.endpoint, res.model = hit.tier, hit.endpoint, hit.model
                    res.prompt_tokens, res.completion_tokens = hit.prompt_tokens, hit.completion_tokens
                    res.usage_estimated, res.text = hit.usage_estimated, hit.text
                    res.simulated = getattr(self.backends.get(hit.endpoint), "simulated", False)
                    res.ttft_ms = (self.clock() - t0) * 1000
                    yield hit.text
                    return
            if d.refused:
                res.status, res.error_kind = "refused", "budget"
                res.tier, res.endpoint, res.model = d.tier, d.endpoint, d.model
                which = getattr(res.reservation, "limited_by", None)
                res.error = (
                    f"budget {which!r} has reached its limit (action: block); raise it or wait for its next period"
                    if which
                    else "a budget has reached its limit (action: block)"
                )
                return
            retries = cfg.failover.max_retries
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
                for attempt in range(retries + 1):
                    res.attempts += 1
                    usage = None  # usage reported by an earlier, failed attempt is not this reply's
                    a0 = self.clock()
                    try:
                        if stream:
                            for chunk in backend.stream(model, req.messages, d.features.max_tokens):
                                if chunk.usage is not None:
                                    usage = chunk.usage
                                if chunk.text:
                                    if not parts:
                                        res.ttft_ms = (self.clock() - t0) * 1000
                                    parts.append(chunk.text)
                                    yield chunk.text
                        else:
                            text, usage = backend.complete(model, req.messages, d.features.max_tokens)
                            parts = [text]
                            res.ttft_ms = (self.clock() - t0) * 1000
                    except BackendError as e:
                        if _endpoint_fault(e):
                            self.health.failure(endpoint, str(e))
                        res.error, res.error_kind = str(e), e.kind
                        if parts:  # text already reached the client: it cannot be taken back
                            return
                        # Retry the same endpoint, unless this failure just put it in cool-down.
                        if e.retryable and attempt < retries and endpoint not in self.health.unhealthy():
                            self.sleep(cfg.failover.retry_backoff_s * (2**attempt))
                            continue
                        break
                    else:
                        self.health.success(endpoint, (self.clock() - a0) * 1000)
                        res.status, res.error, res.error_kind = "ok", None, None
                        return
            # Every endpoint in the chain failed: res holds the last error.
            res.error = f"every endpoint failed ({' → '.join(res.path)}); last error: {res.error}"
        except Exception as e:  # a bug, not a backend failure: still one record, with the reason
            res.status, res.error_kind = "error", "internal"
            res.error = f"internal error while routing: {type(e).__name__}: {e}"
            print(f"sophia: {res.error}", file=sys.stderr)
        except GeneratorExit:
            # The consumer went away mid-stream: record what it received.
            if not res.cached:
                res.status, res.error_kind = "cancelled", "cancelled"
                res.error = "the client closed the stream before it ended"
            raise
        finally:
            res.text = "".join(parts) if not res.cached else res.text
            res.latency_ms = (self.clock() - t0) * 1000
            if not res.cached:
                self._settle_usage(res, d, usage)
                self._cost(res, cfg)
            if not res.cached and res.path and res.path[-1] != d.chain[0][0]:
                res.reason = "failover"
            if res.status == "ok" and key is not None and not res.cached:
                self.cache.put(
                    key,
                    CachedReply(
                        res.text,
                        res.prompt_tokens,
                        res.completion_tokens,
                        res.usage_estimated,
                        res.tier,
                        res.endpoint,
                        res.model,
                    ),
                )
            handle.result = res
            self._finish(req, cfg, d, res)

    def _settings_digest(self, cfg: Config) -> str:
        memo = self._digest_memo
        if memo is None or memo[0] is not cfg:
            memo = self._digest_memo = (cfg, digest(settings_of(cfg)))
        return memo[1]

    def _settle_usage(self, res: Result, d: policy.Decision, usage: Usage | None) -> None:
        if usage is not None and res.status == "ok":
            res.prompt_tokens, res.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            res.usage_estimated = False
        elif res.text or res.status == "ok":
            # No usage reported (or a stream cut short): estimate, and say so.
            res.prompt_tokens = d.features.est_prompt_tokens
            res.completion_tokens = feats.estimate_tokens(len(res.text))
            res.usage_estimated = True
            if usage is not None:  # reported usage of a partial stream still beats a guess
                res.prompt_tokens, res.completion_tokens = usage.prompt_tokens, usage.completion_tokens
                res.usage_estimated = False

    def _cost(self, res: Result, cfg: Config) -> None:
        if res.endpoint is None or not (res.prompt_tokens or res.completion_tokens):
            return
        ep = cfg.endpoint(res.endpoint)
        if ep.tier == policy.SERVERLESS:
            price = pricing.price_of(cfg, res.model)
            res.metered_cost_usd = pricing.metered_cost(
                res.prompt_tokens, res.completion_tokens, price.input_per_mtok, price.output_per_mtok
            )
        else:
            res.amortized_cost_usd = pricing.amortized_cost(res.prompt_tokens, res.completion_tokens, ep)

    def _finish(self, req: ChatRequest, cfg: Config, d: policy.Decision, res: Result) -> None:
        """Settle the budget reservation with the actual cost, then record: once."""
        if res.recorded:
            return
        res.recorded = True
        if self.guard is not None and res.reservation is not None:
            self.guard.settle(res.reservation, res.tier, res.endpoint, res.model, res.metered_cost_usd, req.source)
        self._record(req, cfg, d, res)

    def _record(self, req: ChatRequest, cfg: Config, d: policy.Decision, res: Result) -> None:
        if self.writer is None:
            return
        f = d.features
        prompt = None
        if cfg.store_prompts != "off":
            prompt = stored_text(feats.prompt_text(req.messages), cfg.store_prompts)
        self.writer.put(
            {
                "request_id": res.request_id,
                "ts": res.ts,
                "source": req.source,
                "policy_version": res.policy_version,
                "prompt_chars": f.prompt_chars,
                "est_prompt_tokens": f.est_prompt_tokens,
                "max_tokens": f.max_tokens,
                "n_messages": f.n_messages,
                "keywords": list(f.keywords),
                "tier": res.tier,
                "endpoint": res.endpoint,
                "model": res.model,
                "complexity": d.complexity,
                "breakdown": json.dumps(d.breakdown),
                "estimated_cost_usd": d.estimated_cost_usd,
                "reason": res.reason,
                "policy_reason": d.policy_reason,
                "status": res.status,
                "error_kind": res.error_kind,
                "error": res.error,
                "attempts": res.attempts,
                "failover_path": res.path,
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "usage_estimated": res.usage_estimated,
                "metered_cost_usd": res.metered_cost_usd,
                "amortized_cost_usd": res.amortized_cost_usd,
                "latency_ms": res.latency_ms,
                "ttft_ms": res.ttft_ms,
                "streamed": res.streamed,
                "cached": res.cached,
                "simulated": res.simulated,
                "api_key_id": req.api_key_id,
                "prompt_text": prompt,
                "response_text": stored_text(res.text, cfg.store_prompts),
                "instance": self.instance,
            }
        )

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
