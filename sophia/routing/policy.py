"""The routing policy, written once.

`score` and `route` are pure functions over columns: given Python scalars they decide one
request, given numpy arrays they decide a whole table at once (replay, demo traffic, the
simulator). Scores work in basis points (1/10,000) so that 0.1 + 0.2 + 0.4 is exactly 0.7 and
0.7 is not greater than 0.7; costs compare in nano-USD for the same reason.

`decide` wraps them for one live request and then applies runtime state (forced choices,
budgets, endpoint health), which replay never sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sophia.config import Config, ScorerSettings
from sophia.money import pricing
from sophia.routing.features import Features, RequestError
from sophia.vocab import POLICY_REASONS, BudgetAction, Reason, Tier

BP = 10_000  # basis points per unit of score
NANO = 1_000_000_000

SERVERLESS, DEDICATED = Tier.SERVERLESS, Tier.DEDICATED


def bp(x: float) -> int:
    return int(round(x * BP))


def _sel(cond, a, b):
    """`a if cond else b`, elementwise when `cond` is an array."""
    if isinstance(cond, np.ndarray):
        return np.where(cond, a, b)
    return a if cond else b


def _min(a, b):
    return np.minimum(a, b) if isinstance(a, np.ndarray) else min(a, b)


def score(chars, max_tokens, group_counts: Mapping[str, object], s: ScorerSettings):
    """Complexity in basis points and its parts (name -> basis points)."""
    length = 0
    for min_chars, weight in sorted(s.length_bands):  # ascending: the highest band exceeded wins
        length = _sel(chars > min_chars, bp(weight), length)
    parts = {"length": length}
    for g in s.keyword_groups:
        parts[f"keywords:{g.name}"] = group_counts[g.name] * bp(g.weight)
    parts["max_tokens"] = _sel(max_tokens > s.max_tokens_over, bp(s.max_tokens_weight), 0)
    total = 0
    for v in parts.values():
        total = total + v
    return _min(total, bp(s.cap)), parts


def route(score_bp, est_cost_nano, cfg: Config):
    """The reason code for scores and estimated serverless costs (index into POLICY_REASONS)."""
    r = cfg.routing
    high = score_bp > bp(r.complexity_threshold)
    if not cfg.tier_endpoints(DEDICATED):  # with no GPUs, costly requests stay on the primary model
        return _sel(high, 1, 0)
    costly = est_cost_nano > int(round(r.cost_threshold_usd * NANO))
    return _sel(high, 1, _sel(costly, 2, 0))


def estimated_cost_nano(est_prompt_tokens, max_tokens, cfg: Config):
    price = pricing.price_of(cfg, cfg.routing.serverless_model)
    cost = pricing.estimated_cost(est_prompt_tokens, max_tokens, price)
    if isinstance(cost, np.ndarray):
        return np.rint(cost * NANO).astype(np.int64), cost
    return int(round(cost * NANO)), cost


def targets(cfg: Config) -> tuple[tuple[str, str, str], ...]:
    """(tier, endpoint, model) for each policy reason code."""
    primary = cfg.routing.serverless_model
    sl = (SERVERLESS, cfg.endpoint_for_model(primary).name, primary)
    if not cfg.tier_endpoints(DEDICATED):
        premium = cfg.routing.premium_model
        return sl, (SERVERLESS, cfg.endpoint_for_model(premium).name, premium), sl
    hi = cfg.endpoint(cfg.routing.dedicated_endpoint)
    bulk = cfg.endpoint(cfg.routing.bulk_endpoint)
    return sl, (DEDICATED, hi.name, hi.models[0]), (DEDICATED, bulk.name, bulk.models[0])


# --- one live request ---------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeState:
    """What only live routing knows."""

    unhealthy: frozenset[str] = frozenset()
    budget_action: str | None = None  # a BudgetAction when a hard limit is reached
    budget_soft: bool = False  # a soft limit is crossed: serverless goes to the budget model
    force_tier: str | None = None
    force_model: str | None = None
    needs: frozenset[str] = frozenset()  # capabilities the request needs beyond plain chat
    tokens: int = 0  # prompt plus completion tokens it may take (for context windows)


@dataclass(frozen=True)
class Decision:
    tier: str
    endpoint: str
    model: str
    complexity: float
    breakdown: dict[str, float]
    estimated_cost_usd: float
    reason: str
    policy_reason: str  # what the pure policy said, before runtime state
    features: Features
    chain: tuple[tuple[str, str], ...] = field(default=())  # (endpoint, model) to try in order
    refused: bool = False
    unservable: str | None = None  # why no model can serve the request (a capability refusal)

    def as_dict(self) -> dict:
        return {
            "tier": self.tier,
            "endpoint": self.endpoint,
            "model": self.model,
            "complexity": self.complexity,
            "breakdown": self.breakdown,
            "estimated_cost_usd": self.estimated_cost_usd,
            "reason": self.reason,
            "failover_chain": [e for e, _ in self.chain],
        }


def _group_counts(f: Features, s: ScorerSettings) -> dict[str, int]:
    return {g.name: f.group_count(g.words) for g in s.keyword_groups}


def decide(f: Features, cfg: Config, state: RuntimeState | None = None) -> Decision:
    """Decide one request: the pure policy, then runtime state."""
    total, parts = score(f.prompt_chars, f.max_tokens, _group_counts(f, cfg.scorer), cfg.scorer)
    nano, est = estimated_cost_nano(f.est_prompt_tokens, f.max_tokens, cfg)
    code = route(total, nano, cfg)
    tier, endpoint, model = targets(cfg)[code]
    base = Decision(
        tier=tier,
        endpoint=endpoint,
        model=model,
        complexity=total / BP,
        breakdown={k: v / BP for k, v in parts.items()},
        estimated_cost_usd=est,
        reason=POLICY_REASONS[code],
        policy_reason=POLICY_REASONS[code],
        features=f,
    )
    return apply_runtime(base, cfg, state or RuntimeState())


def decide_embeddings(f: Features, cfg: Config, model: str, st: RuntimeState | None = None) -> Decision:
    """An embeddings request goes to the model asked for (an alias: `routing.embeddings_model`);
    there is nothing to score. A hard budget limit refuses it: there is no cheaper place to move it."""
    st = st or RuntimeState()
    ep = cfg.endpoint_for_model(model)
    try:
        est = pricing.estimated_cost(f.est_prompt_tokens, 0, pricing.price_of(cfg, model))
    except KeyError:  # a model on a GPU server: paid by the hour, not by the token
        est = 0.0
    refused = st.budget_action is not None
    return Decision(
        tier=ep.tier,
        endpoint=ep.name,
        model=model,
        complexity=0.0,
        breakdown={},
        estimated_cost_usd=est,
        reason=Reason.BUDGET if refused else Reason.FORCED,
        policy_reason=Reason.FORCED,
        features=f,
        chain=() if refused else ((ep.name, model),),
        refused=refused,
    )


def failover_chain(tier: str, endpoint: str, model: str, cfg: Config) -> list[tuple[str, str]]:
    """DESIGN §3: serverless → dedicated; a dedicated endpoint → the next → serverless premium."""
    dedicated = [e.name for e in cfg.tier_endpoints(DEDICATED)]
    if tier == SERVERLESS:
        first = cfg.routing.dedicated_endpoint if dedicated else None
        order = ([first] if first else []) + [d for d in dedicated if d != first]
        return [(endpoint, model)] + [(d, cfg.endpoint(d).models[0]) for d in order]
    i = dedicated.index(endpoint)
    rest = dedicated[i + 1 :] + dedicated[:i]
    premium = cfg.routing.premium_model
    return (
        [(endpoint, model)]
        + [(d, cfg.endpoint(d).models[0]) for d in rest]
        + [(cfg.endpoint_for_model(premium).name, premium)]
    )


def apply_runtime(d: Decision, cfg: Config, st: RuntimeState) -> Decision:
    """The pure decision under what only live routing knows: forcing, budgets, then health."""
    tier, endpoint, model, reason = _forced(d, cfg, st)
    no_gpu = not cfg.tier_endpoints(DEDICATED)
    action = st.budget_action
    if action == BudgetAction.BLOCK or (action == BudgetAction.DEDICATED_ONLY and no_gpu and tier == SERVERLESS):
        return replace(d, tier=tier, endpoint=endpoint, model=model, reason=Reason.BUDGET, chain=(), refused=True)
    tier, endpoint, model, reason = _under_budget(tier, endpoint, model, reason, cfg, st)
    chain = failover_chain(tier, endpoint, model, cfg)
    if action == BudgetAction.DEDICATED_ONLY:
        chain = [c for c in chain if cfg.endpoint(c[0]).tier == DEDICATED]
    if st.needs or st.tokens:
        forced, dedicated_only = reason == Reason.FORCED, action == BudgetAction.DEDICATED_ONLY
        able = _able(chain, cfg, st, forced, dedicated_only)
        if not able:
            why = unservable(cfg, st, [chain[0]] if reason == Reason.FORCED else None)
            return replace(
                d, tier=tier, endpoint=endpoint, model=model, reason=Reason.CAPABILITY, chain=(), refused=True,
                unservable=why,
            )  # fmt: skip
        if able[0] != chain[0]:
            endpoint, model = able[0]
            tier, reason = cfg.endpoint(endpoint).tier, Reason.CAPABILITY
        chain = able
    healthy = [c for c in chain if c[0] not in st.unhealthy]
    if healthy and healthy[0] != chain[0]:  # health moved the request before any call
        endpoint, model = healthy[0]
        tier, reason = cfg.endpoint(endpoint).tier, Reason.FAILOVER
    # When every endpoint is cooling down, try them all anyway: better than refusing.
    chain = healthy or chain
    return replace(d, tier=tier, endpoint=endpoint, model=model, reason=reason, chain=tuple(chain))


# (config, {(endpoint, model): (capabilities, context window)}) of the last config asked about;
# one tuple, swapped whole, so that a reader never pairs one config with another's table.
_PLACES: tuple = (None, {})


def _places(cfg: Config) -> dict[tuple[str, str], tuple[frozenset[str], int]]:
    global _PLACES
    memo = _PLACES
    if memo[0] is cfg:
        return memo[1]
    table = {
        (e.name, m): (frozenset(cfg.capabilities(e, m)), cfg.context_window(e, m))
        for e in cfg.endpoints
        for m in e.models
    }
    _PLACES = (cfg, table)
    return table


def serves(cfg: Config, endpoint: str, model: str, st: RuntimeState) -> bool:
    """Whether `model` on `endpoint` has every capability the request needs and room for it."""
    caps, window = _places(cfg)[(endpoint, model)]
    return st.needs <= caps and not (window and st.tokens > window)


def _able(chain, cfg: Config, st: RuntimeState, forced: bool, dedicated_only: bool) -> list[tuple[str, str]]:
    """The chain without the places that cannot serve the request; when none of it can, any
    configured place that can (a forced model is never moved)."""
    able = [c for c in chain if serves(cfg, c[0], c[1], st)]
    if forced:  # the model asked for, or nothing
        return able if able and able[0] == chain[0] else []
    if able:
        return able
    return [
        (e.name, m)
        for e in cfg.endpoints
        if not (dedicated_only and e.tier != DEDICATED)
        for m in e.models
        if serves(cfg, e.name, m, st)
    ]


def unservable(cfg: Config, st: RuntimeState, places: list[tuple[str, str]] | None = None) -> str:
    """Why no place (of `places`, default every configured one) can serve the request, in words."""
    places = places or [(e.name, m) for e in cfg.endpoints for m in e.models]
    best: list[str] | None = None
    for endpoint, model in places:
        caps = cfg.capabilities(cfg.endpoint(endpoint), model)
        missing = sorted(n for n in st.needs if n not in caps)
        if best is None or len(missing) < len(best):
            best = missing
    if best:
        what = " and ".join(best)
        if len(places) == 1:
            return (
                f"the model {places[0][1]} does not support {what}, which the request uses: ask for the alias "
                "or a model whose capabilities include it (GET /v1/models lists them)"
            )
        return (
            f"no configured model supports {what}, which the request uses: add it to the capabilities of an "
            "endpoint or model that serves it, or leave it out of the request"
        )
    windows = [cfg.context_window(cfg.endpoint(e), m) for e, m in places]
    return (
        f"the request may take {st.tokens:,} tokens (prompt and max_tokens), more than the context window of "
        f"every model that supports it (largest: {max(windows):,}); shorten it or lower max_tokens"
    )


def _forced(d: Decision, cfg: Config, st: RuntimeState) -> tuple[str, str, str, str]:
    """(tier, endpoint, model, reason) after a forced model or tier, checked against the config."""
    if st.force_model:
        try:
            ep = cfg.endpoint_for_model(st.force_model)
        except KeyError:
            raise RequestError(f"model {st.force_model!r} is not served by any endpoint") from None
        if st.force_tier and st.force_tier != ep.tier:
            raise RequestError(
                f"model {st.force_model!r} is served by the {ep.tier} tier, not {st.force_tier}: "
                "force one of them, or a model of that tier"
            )
        return ep.tier, ep.name, st.force_model, Reason.FORCED
    if st.force_tier:
        if st.force_tier not in (SERVERLESS, DEDICATED):
            raise RequestError(f"tier {st.force_tier!r} is not allowed: expected serverless or dedicated")
        tier, endpoint, model = d.tier, d.endpoint, d.model
        if st.force_tier != tier:
            tier, endpoint, model = targets(cfg)[0] if st.force_tier == SERVERLESS else _dedicated_target(cfg)
        return tier, endpoint, model, Reason.FORCED
    return d.tier, d.endpoint, d.model, d.reason


def _under_budget(
    tier: str, endpoint: str, model: str, reason: str, cfg: Config, st: RuntimeState
) -> tuple[str, str, str, str]:
    """Serverless traffic moved by a budget: to the GPUs (dedicated-only) or the budget model."""
    if tier != SERVERLESS:
        return tier, endpoint, model, reason
    if st.budget_action == BudgetAction.DEDICATED_ONLY:
        return *_dedicated_target(cfg), Reason.BUDGET
    # Forcing a model wins over a soft limit, never over a hard one.
    if st.budget_action == BudgetAction.DOWNGRADE or (st.budget_soft and reason != Reason.FORCED):
        model = cfg.routing.budget_model
        return tier, cfg.endpoint_for_model(model).name, model, Reason.BUDGET
    return tier, endpoint, model, reason


def _dedicated_target(cfg: Config) -> tuple[str, str, str]:
    if not cfg.tier_endpoints(DEDICATED):
        raise RequestError('no dedicated endpoint is configured: add one with tier = "dedicated"')
    ep = cfg.endpoint(cfg.routing.dedicated_endpoint)
    return DEDICATED, ep.name, ep.models[0]


# --- a whole table ------------------------------------------------------------------


def decide_table(
    prompt_chars: np.ndarray,
    est_prompt_tokens: np.ndarray,
    max_tokens: np.ndarray,
    group_counts: Mapping[str, np.ndarray],
    cfg: Config,
) -> dict[str, np.ndarray]:
    """The policy over columns: tier, endpoint, model, reason, complexity, estimated cost."""
    total, _ = score(np.asarray(prompt_chars), np.asarray(max_tokens), group_counts, cfg.scorer)
    nano, est = estimated_cost_nano(np.asarray(est_prompt_tokens), np.asarray(max_tokens), cfg)
    code = route(total, nano, cfg)
    code = np.asarray(code, dtype=np.int8)
    tg = targets(cfg)
    pick = lambda i: np.array([t[i] for t in tg], dtype=object)[code]  # noqa: E731
    return {
        "tier": pick(0),
        "endpoint": pick(1),
        "model": pick(2),
        "reason": np.array(POLICY_REASONS, dtype=object)[code],
        "reason_code": code,
        "complexity": total / BP,
        "estimated_cost_usd": est,
    }


def group_counts_from_keywords(keywords: Sequence[Sequence[str]], s: ScorerSettings) -> dict[str, np.ndarray]:
    """Per-group keyword counts from each row's list of found keywords."""
    out = {}
    for g in s.keyword_groups:
        words = set(g.words)
        out[g.name] = np.fromiter(
            (sum(1 for k in ks if k in words) for ks in keywords), dtype=np.int32, count=len(keywords)
        )
    return out
