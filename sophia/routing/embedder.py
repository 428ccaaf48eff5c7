"""Embeddings: one request to the model asked for, retried on its endpoint but never failed over
(another model's vectors would not be comparable), reserved against budgets, recorded once."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace

from sophia.config import Config
from sophia.money import pricing
from sophia.routing import features as feats
from sophia.routing import policy
from sophia.routing.backends.base import BackendError, Embeddings
from sophia.routing.result import ChatRequest, Result
from sophia.routing.router import Router, endpoint_fault, refuse
from sophia.routing.traits import traits
from sophia.vocab import Operation, Status


def embed(router: Router, req: ChatRequest, model: str) -> tuple[Result, Embeddings | None]:
    """Embed `req.body`'s input with `model` (retried, not failed over: another model's
    vectors would not be comparable). Always returns the recorded result."""
    cfg, version = router._active
    f = feats.extract(req.messages, 1, cfg.scorer, 1)
    f = replace(f, max_tokens=0)
    state = router._state(req, f, traits(req.messages, None))
    reservation = None
    if router.guard is not None:
        d, reservation = router.guard.admit(
            lambda st: policy.decide_embeddings(f, cfg, model, st), state, req.source, cfg
        )
    else:
        d = policy.decide_embeddings(f, cfg, model, state)
    res = Result(
        request_id=req.request_id or uuid.uuid4().hex,
        decision=d,
        status=Status.ERROR,
        ts=router.now(),
        reason=d.reason,
        policy_version=version,
        operation=Operation.EMBEDDINGS,
    )
    res.reservation = reservation
    t0 = router.clock()
    out = None
    try:
        if d.refused:
            refuse(res)
            return res, None
        out = _embed_on(router, cfg, d, res, req.body or {})
        return res, out
    finally:
        res.latency_ms = (router.clock() - t0) * 1000
        if res.ok:
            res.ttft_ms = res.latency_ms
            u = out.usage if out is not None else None
            res.prompt_tokens = u.prompt_tokens if u is not None else f.est_prompt_tokens
            res.usage_estimated = u is None
            res.metered_cost_usd, res.amortized_cost_usd = pricing.cost_of(
                cfg, res.endpoint, res.model, res.prompt_tokens, 0
            )
        router._finish(req, cfg, d, res)

def _embed_on(router: Router, cfg: Config, d: policy.Decision, res: Result, body: Mapping) -> Embeddings | None:
    endpoint, model = d.chain[0]
    backend = router.backends[endpoint]
    res.tier, res.endpoint, res.model, res.simulated = d.tier, endpoint, model, backend.simulated
    res.path.append(endpoint)
    for attempt in range(cfg.failover.max_retries + 1):
        res.attempts += 1
        a0 = router.clock()
        try:
            out = backend.embed(model, body)
        except BackendError as e:
            if endpoint_fault(e):
                router.health.failure(endpoint, str(e))
            res.error, res.error_kind = str(e), e.kind
            if e.retryable and attempt < cfg.failover.max_retries:
                router.sleep(cfg.failover.retry_backoff_s * (2**attempt))
                continue
            return None
        router.health.success(endpoint, (router.clock() - a0) * 1000)
        res.status, res.error, res.error_kind = Status.OK, None, None
        return out
    return None
