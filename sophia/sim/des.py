"""The discrete-event model: every request served by a fleet of dedicated GPUs or the serverless tier.

Each dedicated server batches continuously behind a FCFS queue (`queueing.des`); a request that
would wait longer than the budget overflows to serverless. Serverless requests take the
configured latency model (`simulated.latency_ms`), behind the provider's rate limit if any.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sophia.config import Config
from sophia.money import pricing
from sophia.routing.backends import simulated
from sophia.sim import autoscale as autoscale_mod
from sophia.sim import fleet as fleet_mod
from sophia.sim import queueing
from sophia.sim.autoscale import Autoscale, Schedule
from sophia.sim.costs import Costs, span_costs
from sophia.sim.fleet import Fleet, GPUPool
from sophia.sim.policies import (
    DEFAULT_SLO_MS,
    TARGET_QUANTILE,
    Plan,
    check_slo,
    max_wait_s,
    notes,
    plan,
    serverless_endpoints,
    unloaded_ttft_s,
)
from sophia.sim.workload import MINUTE_S, Workload
from sophia.vocab import Tier

SERVERLESS, DEDICATED, OVERFLOW = 0, 1, 2  # how each request was served
ROUTES = (Tier.SERVERLESS, Tier.DEDICATED, "overflow")
SPREAD_MAX_SECONDS = 10_000_000  # ~115 days: longer spans count each request's work in its first minute


def _percentiles(x: np.ndarray) -> dict[str, float] | None:
    if not len(x):
        return None
    p = np.percentile(x, [50, 95, 99])
    return {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1)}


@dataclass
class SimResult:
    """What the discrete-event simulation found."""

    policy: str
    slo_ms: float
    max_wait_ms: float
    requests: int
    span_s: float
    start: np.datetime64
    gpus: int
    tokens: int
    costs: Costs
    route: np.ndarray  # SERVERLESS / DEDICATED / OVERFLOW per request
    ttft_ms: np.ndarray
    latency_ms: np.ndarray
    wait_ms: np.ndarray  # queueing wait of the dedicated requests served (NaN elsewhere)
    server_pool: np.ndarray  # the pool that served each dedicated request ("" elsewhere)
    utilization_by_pool: dict[str, float]
    minute_utilization: np.ndarray  # the whole fleet's, per minute of the span
    minute_utilization_by_pool: dict[str, np.ndarray]
    minute_requests: np.ndarray  # per route (3 × minutes)
    pool_slots: dict[str, int] = field(default_factory=dict)  # batch slots of each pool (servers × concurrency)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    scaling: Schedule | None = None  # the autoscaling schedule (None: a fixed fleet)

    # --- shares and figures --------------------------------------------------------------

    def count(self, route: int) -> int:
        return int(np.count_nonzero(self.route == route))

    @property
    def dedicated_share(self) -> float:
        return self.count(DEDICATED) / self.requests if self.requests else 0.0

    @property
    def overflow_share(self) -> float:
        return self.count(OVERFLOW) / self.requests if self.requests else 0.0

    @property
    def utilization(self) -> float:
        """Share of the fleet's batch slots in use over the span (a full batch is the saturated throughput)."""
        total = sum(self.pool_slots.values())
        if not total:
            return 0.0
        return float(sum(self.utilization_by_pool[k] * c for k, c in self.pool_slots.items()) / total)

    @property
    def peak_minute_utilization(self) -> float:
        return float(self.minute_utilization.max(initial=0.0))

    @property
    def mean_minute_utilization(self) -> float:
        return float(self.minute_utilization.mean()) if len(self.minute_utilization) else 0.0

    @property
    def missed(self) -> int:
        return int(np.count_nonzero(self.ttft_ms > self.slo_ms))

    @property
    def missed_share(self) -> float:
        return self.missed / self.requests if self.requests else 0.0

    def ttft_quantile(self, q: float = TARGET_QUANTILE) -> float:
        return float(np.quantile(self.ttft_ms, q)) if self.requests else 0.0

    @property
    def meets_target(self) -> bool:
        return self.ttft_quantile() <= self.slo_ms

    @property
    def cost_per_request_usd(self) -> float | None:
        return self.costs.span_usd / self.requests if self.requests else None

    @property
    def cost_per_mtok_usd(self) -> float | None:
        return self.costs.span_usd / self.tokens * 1e6 if self.tokens else None

    @property
    def mean_wait_ms(self) -> float:
        v = self.wait_ms[self.route == DEDICATED]
        return float(v.mean()) if len(v) else 0.0

    def latency(self) -> dict[str, dict[str, dict[str, float] | None]]:
        """p50/p95/p99 latency and time to first token per tier (overflow is served serverless)."""
        tiers = {
            "all": np.ones(self.requests, dtype=bool),
            "dedicated": self.route == DEDICATED,
            "serverless": self.route != DEDICATED,
        }
        return {
            k: {"latency_ms": _percentiles(self.latency_ms[m]), "ttft_ms": _percentiles(self.ttft_ms[m])}
            for k, m in tiers.items()
        }

    def summary(self) -> dict:
        lat = self.latency()
        allp = lat["all"]["latency_ms"] or {}
        allt = lat["all"]["ttft_ms"] or {}
        c = self.costs
        return {
            "model": "discrete-event simulation",
            "policy": self.policy,
            "requests": self.requests,
            "span_hours": round(self.span_s / 3600, 3),
            "gpus": self.gpus,
            **c.summary(),
            "span_metered_cost_usd": round(c.metered_usd, 6),
            "span_fixed_cost_usd": round(c.gpu_usd + c.other_usd, 6),
            "cost_per_request_usd": self.cost_per_request_usd,
            "cost_per_mtok_usd": self.cost_per_mtok_usd,
            "serverless_requests": self.count(SERVERLESS),
            "dedicated_requests": self.count(DEDICATED),
            "overflow_requests": self.count(OVERFLOW),
            "dedicated_share": round(self.dedicated_share, 6),
            "overflow_share": round(self.overflow_share, 6),
            "utilization": round(self.utilization, 6),
            "utilization_by_pool": {k: round(v, 6) for k, v in self.utilization_by_pool.items()},
            "peak_minute_utilization": round(self.peak_minute_utilization, 6),
            "mean_wait_ms": round(self.mean_wait_ms, 1),
            "p50_latency_ms": allp.get("p50"),
            "p95_latency_ms": allp.get("p95"),
            "p99_latency_ms": allp.get("p99"),
            "p50_ttft_ms": allt.get("p50"),
            "p95_ttft_ms": allt.get("p95"),
            "p99_ttft_ms": allt.get("p99"),
            "latency_by_tier": lat,
            "slo_ms": self.slo_ms,
            "target": "p95 time to first token",
            "meets_target": bool(self.meets_target) if self.requests else True,
            "missed_target": self.missed,
            "missed_share": round(self.missed_share, 6),
            "notes": self.notes,
        } | ({"autoscale": self.scaling.summary()} if self.scaling is not None else {})


def _spread(start_s: np.ndarray, end_s: np.ndarray, work: np.ndarray, minutes: int) -> np.ndarray:
    """Work (slot-seconds) spread evenly over each request's service, summed per minute."""
    seconds = minutes * 60
    if not len(work):
        return np.zeros(minutes)
    if seconds > SPREAD_MAX_SECONDS:
        first = np.clip((start_s // MINUTE_S).astype(np.int64), 0, minutes - 1)
        return np.bincount(first, weights=work, minlength=minutes)[:minutes]
    s = np.clip(np.floor(start_s).astype(np.int64), 0, seconds)
    e = np.clip(np.maximum(np.ceil(end_s).astype(np.int64), s + 1), 0, seconds + 1)
    rate = work / (e - s)
    d = np.bincount(s, weights=rate, minlength=seconds + 2) - np.bincount(e, weights=rate, minlength=seconds + 2)
    per_second = np.cumsum(d)[:seconds]
    return per_second.reshape(minutes, 60).sum(axis=1)


@dataclass
class _Served:
    """Per-request outcomes, filled in by the dedicated queues, then by the serverless tier."""

    route: np.ndarray
    ttft: np.ndarray
    lat: np.ndarray
    wait: np.ndarray
    pool_of: np.ndarray
    util_pool: dict[str, float]
    minute_pool: dict[str, np.ndarray]

    @classmethod
    def empty(cls, w: Workload, fleet: Fleet) -> _Served:
        n, active = w.n, fleet.active
        return cls(
            route=np.full(n, SERVERLESS, dtype=np.int8),
            ttft=np.zeros(n),
            lat=np.zeros(n),
            wait=np.full(n, np.nan),
            pool_of=np.full(n, "", dtype=object),
            util_pool={p.name: 0.0 for p in active},
            minute_pool={p.name: np.zeros(w.minutes) for p in active},
        )


def _servers(pools: tuple[GPUPool, ...]) -> dict[str, list]:
    s: dict[str, list] = {"itl0": [], "alpha": [], "slots": [], "prefill": [], "pool": []}
    for p in pools:
        for _ in range(p.count):
            s["itl0"].append(p.itl0_s)
            s["alpha"].append(p.alpha_s)
            s["slots"].append(p.slots)
            s["prefill"].append(p.prefill_s_per_token)
            s["pool"].append(p.name)
    return s


def _serve_dedicated(
    w: Workload,
    idx: np.ndarray,
    pools: tuple[GPUPool, ...],
    max_wait: float,
    out: _Served,
    sched: Schedule | None = None,
) -> None:
    """One dedicated queue: its candidates `idx` served in the event simulation, or overflowed."""
    pt, ct = w.prompt_tokens, w.completion_tokens
    sv = _servers(pools)
    args = (w.t[idx], pt[idx], ct[idx], sv["itl0"], sv["alpha"], sv["slots"], sv["prefill"], max_wait)
    if sched is None:
        st, srv, nb = queueing.des(*args)
    else:
        st, srv, nb = queueing.des_scaled(*args, sched.times, sched.counts)
    ok = ~np.isnan(st)
    out.route[idx[~ok]] = OVERFLOW
    i, s, b = idx[ok], srv[ok], nb[ok]
    out.route[i] = DEDICATED
    itl0, alpha, pre = (np.asarray(sv[k])[s] for k in ("itl0", "alpha", "prefill"))
    itl = itl0 + alpha * (b - 1)
    wt = st[ok] - w.t[i]
    prefill = pt[i] * pre
    out.wait[i] = wt * 1000
    out.ttft[i] = (wt + prefill + itl * np.minimum(ct[i], 1)) * 1000
    service = prefill + ct[i] * itl
    out.lat[i] = (wt + service) * 1000
    names = np.asarray(sv["pool"], dtype=object)[s]
    out.pool_of[i] = names
    for p in pools:  # utilization: the share of batch slots in use (slot-seconds busy / slot-seconds serving)
        m = names == p.name
        slot_s = p.count * p.slots
        busy = _spread(st[ok][m], st[ok][m] + service[m], service[m], w.minutes)
        if sched is None:
            out.util_pool[p.name] = float(service[m].sum()) / (slot_s * w.span_s)
            out.minute_pool[p.name] = busy / (slot_s * MINUTE_S)
        else:
            total = sched.serving_slot_seconds(p.slots)
            out.util_pool[p.name] = float(service[m].sum()) / total if total else 0.0
            per_minute = sched.serving_seconds() * p.slots
            with np.errstate(divide="ignore", invalid="ignore"):
                out.minute_pool[p.name] = np.where(per_minute > 0, busy / per_minute, 0.0)


def _serve_serverless(w: Workload, cfg: Config, fleet: Fleet, pl: Plan, out: _Served) -> np.ndarray:
    """Serverless requests (by policy, and dedicated ones that overflowed): the mask of them."""
    ct = w.completion_tokens
    sl = out.route != DEDICATED
    delay = _rate_limit_delay(w, sl, fleet.rate_limit_rpm)
    for m in pd.unique(pl.model[sl]):
        sel = sl & (pl.model == m)
        sim = fleet_mod.serverless_simulation(cfg, fleet, m)
        out.lat[sel] = simulated.latency_ms(sim, ct[sel]) + delay[sel]
        out.ttft[sel] = sim.ttft_ms + delay[sel]
    return sl


def _price(
    w: Workload, cfg: Config, fleet: Fleet, pl: Plan, out: _Served, sl: np.ndarray, sched: Schedule | None = None
) -> Costs:
    """Money: one call to the cost module for every request, served where it was served."""
    models = np.where(sl, pl.model, None)
    endpoints = np.where(sl, None, out.pool_of).astype(object)
    if sl.any():
        endpoints[sl] = serverless_endpoints(cfg, models[sl])
    models = models.astype(object)
    for p in fleet.active:
        models[out.pool_of == p.name] = p.model
    pt, ct = w.prompt_tokens, w.completion_tokens
    metered, amortized = pricing.costs_for(pl.pcfg, endpoints, models, pt, ct) if w.n else (np.zeros(0), np.zeros(0))
    return span_costs(w, fleet, float(metered.sum()), float(amortized.sum()), sched)


def simulate(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    policy: str = "router",
    slo_ms: float = DEFAULT_SLO_MS,
    max_wait_ms: float | None = None,
    autoscale: Autoscale | None = None,
) -> SimResult:
    """Serve `w` with `fleet` under `policy`: the discrete-event simulation.

    With `autoscale`, the fleet's one GPU type runs `autoscale.min_instances` … `max_instances`
    instances on the controller's schedule (`sophia.sim.autoscale`), paid while requested."""
    t0 = time.perf_counter()
    slo_ms = check_slo(slo_ms)
    sched = None
    if autoscale is not None:
        autoscale = autoscale.check()
        fleet = fleet.resized(autoscale.max_instances) if fleet.pools else fleet
        autoscale_mod.pool_of(fleet)
    pl = plan(w, cfg, fleet, policy)
    max_wait_s(policy, slo_ms, max_wait_ms)  # a bad wait budget is refused whatever the fleet
    if autoscale is not None:
        sched = scaling_schedule(w, cfg, fleet, policy, autoscale, pl)
    out = _Served.empty(w, fleet)
    budgets = []
    for g, pools in enumerate(pl.groups):
        idx = np.flatnonzero(pl.group == g)
        max_wait = max_wait_s(policy, slo_ms, max_wait_ms, unloaded_ttft_s(pools, w.prompt_tokens[idx]))
        budgets.append(max_wait * 1000)
        _serve_dedicated(w, idx, pools, max_wait, out, sched)
    sl = _serve_serverless(w, cfg, fleet, pl, out)
    costs = _price(w, cfg, fleet, pl, out, sl, sched)
    active = fleet.active
    minutes = w.minutes
    total_slots = sum(p.count * p.slots for p in active)
    minute_all = (
        (sum(out.minute_pool[p.name] * p.count * p.slots for p in active) / total_slots)
        if total_slots
        else np.zeros(minutes)
    )
    mins = w.minute()
    per_route = np.vstack([np.bincount(mins[out.route == r], minlength=minutes)[:minutes] for r in range(3)])
    res = SimResult(
        policy=policy,
        slo_ms=slo_ms,
        max_wait_ms=max(budgets) if budgets else 0.0,
        requests=w.n,
        span_s=w.span_s,
        start=w.start,
        gpus=fleet.gpus,
        tokens=int(w.prompt_tokens.sum() + w.completion_tokens.sum()),
        costs=costs,
        route=out.route,
        ttft_ms=out.ttft,
        latency_ms=out.lat,
        wait_ms=out.wait,
        server_pool=out.pool_of,
        utilization_by_pool=out.util_pool,
        minute_utilization=minute_all,
        minute_utilization_by_pool=out.minute_pool,
        minute_requests=per_route,
        pool_slots={p.name: p.count * p.slots for p in active},
        notes=notes(fleet),
        scaling=sched,
    )
    res.elapsed_s = time.perf_counter() - t0
    return res


def scaling_schedule(
    w: Workload, cfg: Config, fleet: Fleet, policy: str, a: Autoscale, pl: Plan | None = None
) -> Schedule:
    """The autoscaling schedule over `w`: the controller on the minutes' dedicated load (what the fluid
    model reads too, so both models pay the same instances)."""
    from sophia.sim.minutes import minutes_of  # minutes imports the policies, which import this module's peers

    mins = minutes_of(w, cfg, fleet, policy, pl)
    pool = autoscale_mod.pool_of(fleet)
    demand = autoscale_mod.demand_servers(mins.prompt, mins.completion, pool, mins.count)
    return autoscale_mod.schedule(demand, a, w.span_s)


def _rate_limit_delay(w: Workload, sl: np.ndarray, rpm: float | None) -> np.ndarray:
    """Milliseconds each serverless request waits for the provider's per-minute rate limit.

    Requests over the limit in a minute carry over to the next minutes (a client-side queue):
    the k-th request of a minute, behind a backlog of B, waits floor((B + k) / limit) minutes.
    """
    out = np.zeros(w.n)
    if rpm is None or not sl.any():
        return out
    idx = np.flatnonzero(sl)
    mins = w.minute()[idx]
    counts = np.bincount(mins, minlength=w.minutes).astype(float)
    walk = np.concatenate([[0.0], np.cumsum(counts - rpm)])
    backlog = (walk - np.minimum.accumulate(walk))[:-1]  # carried into each minute (Lindley's recursion)
    first = np.searchsorted(mins, np.arange(len(counts)))
    rank = np.arange(len(idx)) - first[mins]
    out[idx] = np.floor((backlog[mins] + rank) / rpm) * 60_000.0
    return out
