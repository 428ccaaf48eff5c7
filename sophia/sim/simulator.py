"""The cost simulator: what a fleet of dedicated GPUs plus a serverless tier costs, and how fast it serves.

Two models answer on the same inputs (a `traffic.Workload`, a `fleet.Fleet`, a policy):

* `simulate` — a discrete-event simulation (`queueing.des`) of every dedicated server with
  continuous batching, a FCFS queue and overflow to serverless when the wait would exceed the
  budget; serverless requests take the configured latency model (`simulated.latency_ms`).
* `project` — a fluid/analytic model at 1-minute resolution: each minute's dedicated traffic is
  an M/M/k queue with balking (k = batch slots of the fleet; service time from the batch size
  Little's law gives), so a month of minutes takes milliseconds. `compare` shows how far the
  two differ on the same sample.

Policies: `router` (the routing policy itself, `policy.decide_table`, with the fleet as its
dedicated tier; dedicated requests that would wait too long fail over to the premium
serverless model like live failover), `dedicated-first` (every request to the GPUs first,
overflow to the primary serverless model), `serverless` (everything metered on the primary
model) and `dedicated` (everything on the GPUs, no overflow).

The latency target (`slo_ms`) is on the time to first token: it is met when the p95 TTFT of
all requests is within it. A dedicated request overflows when its queueing wait would exceed
`max_wait_ms` (default: the target less the p95 unloaded time to first token on the GPUs).
Costs come from `sophia.money.pricing`; a month is 30 days.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

import numpy as np
import pandas as pd

from sophia.analysis import replay
from sophia.config import Config
from sophia.money import pricing
from sophia.routing import policy as policy_mod
from sophia.routing.backends import simulated
from sophia.sim import fleet as fleet_mod
from sophia.sim import queueing
from sophia.sim import workload as traffic_mod
from sophia.sim.fleet import Fleet, GPUPool
from sophia.sim.workload import MINUTE_S, MONTH_DAYS, Workload

POLICIES = ("router", "dedicated-first", "serverless", "dedicated")
POLICY_LABELS = {
    "router": "Router policy",
    "dedicated-first": "Dedicated first (overflow to serverless)",
    "serverless": "All serverless",
    "dedicated": "All dedicated",
}
DEFAULT_SLO_MS = 500.0
PROMPT_QUANTILES = 32
QUANTILE_GRID = 192  # points of the wait distribution the TTFT quantiles are read from
QUANTILE_MINUTES = 8192  # minutes the quantiles mix at most (a fixed random sample of longer spans)
TARGET_QUANTILE = 0.95
MONTH_HOURS = MONTH_DAYS * 24
SERVERLESS, DEDICATED, OVERFLOW = 0, 1, 2  # how each request was served
ROUTES = ("serverless", "dedicated", "overflow")

Progress = Callable[[float, str], None]


def _quiet(frac: float, msg: str) -> None:
    pass


# --- inputs ---------------------------------------------------------------------------------


def check_policy(name: str) -> str:
    if name not in POLICIES:
        raise ValueError(f"policy {name!r} is not known: expected one of {', '.join(POLICIES)}")
    return name


def check_slo(slo_ms) -> float:
    if isinstance(slo_ms, bool) or not isinstance(slo_ms, (int, float)) or not math.isfinite(slo_ms) or slo_ms <= 0:
        raise ValueError(
            f"the latency target must be a number of milliseconds > 0 (got {slo_ms!r}): e.g. 500 for a "
            "p95 time to first token of half a second"
        )
    return float(slo_ms)


def _max_wait_s(policy: str, slo_ms: float, max_wait_ms: float | None, unloaded_ttft_s: float = 0.0) -> float:
    """The wait before a dedicated request overflows: `max_wait_ms` when given, else the target less
    the 95th percentile of the unloaded time to first token on the GPUs (so that a request that
    waited its whole budget still gets its first token within the target, unless its prompt is
    among the longest 5%); no limit under all-dedicated."""
    if policy == "dedicated":
        return math.inf
    if max_wait_ms is None:
        return max(0.0, slo_ms / 1000.0 - unloaded_ttft_s)
    if (
        isinstance(max_wait_ms, bool)
        or not isinstance(max_wait_ms, (int, float))
        or max_wait_ms < 0
        or math.isnan(max_wait_ms)
    ):
        raise ValueError(
            f"the wait before overflow must be milliseconds >= 0 (got {max_wait_ms!r}): 0 overflows "
            "every request that would queue; leave it empty for the target less the first token's time "
            "on an idle GPU"
        )
    return float(max_wait_ms) / 1000.0


def unloaded_ttft_s(pools: tuple[GPUPool, ...], prompt_tokens: np.ndarray, q: float = TARGET_QUANTILE) -> float:
    """The q-quantile (default the target's, p95) of the time to first token on an idle server of
    these pools: prefill + one token."""
    k = sum(p.count * p.slots for p in pools)
    if not k:
        return 0.0
    wts = np.array([p.count * p.slots for p in pools], dtype=float) / k
    ipre = float(np.dot(wts, [p.prefill_s_per_token for p in pools]))
    itl0 = float(np.dot(wts, [p.itl0_s for p in pools]))
    return float(np.quantile(prompt_tokens, q)) * ipre + itl0 if len(prompt_tokens) else itl0


@dataclass
class Plan:
    """Where the policy sends each request before any queueing."""

    policy: str
    pcfg: Config  # the configuration the policy and the price catalog see (the fleet as dedicated tier)
    group: np.ndarray  # -1: serverless by policy; g >= 0: a candidate for dedicated queue g
    groups: list[tuple[GPUPool, ...]]  # the pools serving each queue
    model: np.ndarray  # the serverless model each request uses when served serverless (incl. overflow)


def plan(w: Workload, cfg: Config, fleet: Fleet, policy: str) -> Plan:
    check_policy(policy)
    fleet.check()
    active = fleet.active
    if policy == "dedicated" and not active:
        raise ValueError(
            "the all-dedicated policy needs at least one GPU (got 0): add GPUs, or choose "
            "dedicated-first, router or serverless"
        )
    pcfg = fleet_mod.policy_config(cfg, fleet)
    primary, premium = cfg.routing.serverless_model, cfg.routing.premium_model
    n = w.n
    group = np.full(n, -1, dtype=np.int64)
    groups: list[tuple[GPUPool, ...]] = []
    if policy == "router":
        counts = replay.group_counts(w, pcfg)
        d = policy_mod.decide_table(w.prompt_chars, w.est_prompt_tokens, w.max_tokens, counts, pcfg)
        model = np.asarray(d["model"], dtype=object).copy()
        ded = d["tier"] == policy_mod.DEDICATED
        for g, p in enumerate(active):
            groups.append((p,))
            group[ded & (d["endpoint"] == p.name)] = g
        model[ded] = premium  # failover: a dedicated request that cannot be served goes to the premium model
    else:
        model = np.full(n, primary, dtype=object)
        if policy != "serverless" and active:
            groups.append(active)
            group[:] = 0
    return Plan(policy, pcfg, group, groups, model)


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


def _serverless_endpoints(cfg: Config, models: np.ndarray) -> np.ndarray:
    out = np.empty(len(models), dtype=object)
    for m in pd.unique(models):
        out[models == m] = cfg.endpoint_for_model(m).name
    return out


def _percentiles(x: np.ndarray) -> dict[str, float] | None:
    if not len(x):
        return None
    p = np.percentile(x, [50, 95, 99])
    return {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1)}


def _notes(fleet: Fleet) -> list[str]:
    out = []
    for p in fleet.active:
        if not p.reachable:
            out.append(
                f"{p.name}: {p.slots} requests at {p.itl_ms:g} ms per token make at most "
                f"{p.saturation_tps:,.0f} tokens/s, below the {p.throughput_tps:,.0f} tokens/s given; "
                "the simulation uses what the batch can make"
            )
    return out


# --- results --------------------------------------------------------------------------------


@dataclass
class Costs:
    """Money for the simulated span and for a 30-day month of the same traffic."""

    metered_usd: float  # per-token spend over the span
    gpu_usd: float  # GPU-hours over the span
    other_usd: float  # other fixed costs over the span
    monthly_metered_usd: float
    monthly_gpu_usd: float
    monthly_other_usd: float
    amortized_usd: float = 0.0  # dedicated requests' share of GPU time (busy GPU-hours), over the span

    @property
    def span_usd(self) -> float:
        return self.metered_usd + self.gpu_usd + self.other_usd

    @property
    def monthly_fixed_usd(self) -> float:
        return self.monthly_gpu_usd + self.monthly_other_usd

    @property
    def monthly_usd(self) -> float:
        return self.monthly_metered_usd + self.monthly_gpu_usd + self.monthly_other_usd

    def summary(self) -> dict:
        """The money keys of a result's JSON, the same for the simulation and the fluid model."""
        return {
            "monthly_cost_usd": round(self.monthly_usd, 2),
            "fixed_cost_usd": round(self.monthly_fixed_usd, 2),
            "gpu_cost_usd": round(self.monthly_gpu_usd, 2),
            "other_fixed_cost_usd": round(self.monthly_other_usd, 2),
            "metered_cost_usd": round(self.monthly_metered_usd, 2),
            "span_cost_usd": round(self.span_usd, 6),
        }


def _costs(w: Workload, fleet: Fleet, metered: float, amortized: float = 0.0) -> Costs:
    start = pd.Timestamp(w.start).to_pydatetime()
    end = start + timedelta(seconds=w.span_s)
    eps = fleet.endpoints()
    factor = w.monthly_factor
    other = fleet.other_monthly_usd
    return Costs(
        metered_usd=metered,
        gpu_usd=pricing.fixed_cost(eps, start, end),
        other_usd=other / factor,
        monthly_metered_usd=metered * factor,
        monthly_gpu_usd=pricing.hourly_fixed(eps) * MONTH_HOURS,
        monthly_other_usd=other,
        amortized_usd=amortized,
    )


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
        }


SPREAD_MAX_SECONDS = 10_000_000  # ~115 days: longer spans count each request's work in its first minute


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


def simulate(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    policy: str = "router",
    slo_ms: float = DEFAULT_SLO_MS,
    max_wait_ms: float | None = None,
) -> SimResult:
    """Serve `w` with `fleet` under `policy`: the discrete-event simulation."""
    t0 = time.perf_counter()
    slo_ms = check_slo(slo_ms)
    pl = plan(w, cfg, fleet, policy)
    _max_wait_s(policy, slo_ms, max_wait_ms)  # a bad wait budget is refused whatever the fleet
    budgets = []
    n = w.n
    pt = w.prompt_tokens
    ct = w.completion_tokens
    route = np.full(n, SERVERLESS, dtype=np.int8)
    ttft = np.zeros(n)
    lat = np.zeros(n)
    wait = np.full(n, np.nan)
    pool_of = np.full(n, "", dtype=object)
    minutes = w.minutes
    active = fleet.active
    util_pool = {p.name: 0.0 for p in active}
    minute_pool = {p.name: np.zeros(minutes) for p in active}
    for g, pools in enumerate(pl.groups):
        idx = np.flatnonzero(pl.group == g)
        sv = _servers(pools)
        max_wait = _max_wait_s(policy, slo_ms, max_wait_ms, unloaded_ttft_s(pools, pt[idx]))
        budgets.append(max_wait * 1000)
        st, srv, nb = queueing.des(
            w.t[idx], pt[idx], ct[idx], sv["itl0"], sv["alpha"], sv["slots"], sv["prefill"], max_wait
        )
        ok = ~np.isnan(st)
        route[idx[~ok]] = OVERFLOW
        i, s, b = idx[ok], srv[ok], nb[ok]
        route[i] = DEDICATED
        itl0, alpha, pre = (np.asarray(sv[k])[s] for k in ("itl0", "alpha", "prefill"))
        itl = itl0 + alpha * (b - 1)
        wt = st[ok] - w.t[i]
        prefill = pt[i] * pre
        wait[i] = wt * 1000
        ttft[i] = (wt + prefill + itl * np.minimum(ct[i], 1)) * 1000
        service = prefill + ct[i] * itl
        lat[i] = (wt + service) * 1000
        names = np.asarray(sv["pool"], dtype=object)[s]
        pool_of[i] = names
        for p in pools:  # utilization: the share of batch slots in use (slot-seconds busy / slot-seconds paid)
            m = names == p.name
            slot_s = p.count * p.slots
            util_pool[p.name] = float(service[m].sum()) / (slot_s * w.span_s)
            minute_pool[p.name] = _spread(st[ok][m], st[ok][m] + service[m], service[m], minutes) / (slot_s * MINUTE_S)
    # Serverless: by policy, and dedicated requests that overflowed.
    sl = route != DEDICATED
    models = np.where(sl, pl.model, None)
    delay = _rate_limit_delay(w, sl, fleet.rate_limit_rpm)
    for m in pd.unique(pl.model[sl]):
        sel = sl & (pl.model == m)
        sim = fleet_mod.serverless_simulation(cfg, fleet, m)
        lat[sel] = simulated.latency_ms(sim, ct[sel]) + delay[sel]
        ttft[sel] = sim.ttft_ms + delay[sel]
    # Money: one call to the cost module for every request, served where it was served.
    endpoints = np.where(sl, None, pool_of).astype(object)
    if sl.any():
        endpoints[sl] = _serverless_endpoints(cfg, models[sl])
    models = models.astype(object)
    for p in active:
        models[pool_of == p.name] = p.model
    metered, amortized = pricing.costs_for(pl.pcfg, endpoints, models, pt, ct) if n else (np.zeros(0), np.zeros(0))
    costs = _costs(w, fleet, float(metered.sum()), float(amortized.sum()))
    total_slots = sum(p.count * p.slots for p in active)
    minute_all = (
        (sum(minute_pool[p.name] * p.count * p.slots for p in active) / total_slots)
        if total_slots
        else np.zeros(minutes)
    )
    mins = w.minute()
    per_route = np.vstack([np.bincount(mins[route == r], minlength=minutes)[:minutes] for r in range(3)])
    res = SimResult(
        policy=policy,
        slo_ms=slo_ms,
        max_wait_ms=max(budgets) if budgets else 0.0,
        requests=n,
        span_s=w.span_s,
        start=w.start,
        gpus=fleet.gpus,
        tokens=int(pt.sum() + ct.sum()),
        costs=costs,
        route=route,
        ttft_ms=ttft,
        latency_ms=lat,
        wait_ms=wait,
        server_pool=pool_of,
        utilization_by_pool=util_pool,
        minute_utilization=minute_all,
        minute_utilization_by_pool=minute_pool,
        minute_requests=per_route,
        pool_slots={p.name: p.count * p.slots for p in active},
        notes=_notes(fleet),
    )
    res.elapsed_s = time.perf_counter() - t0
    return res


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


# --- the fluid model ------------------------------------------------------------------------


@dataclass
class Minutes:
    """Per-minute aggregates of traffic under a plan: all the fluid model reads."""

    start: np.datetime64
    serverless_n: np.ndarray  # requests the policy sends serverless
    serverless_metered: np.ndarray  # their metered cost
    groups: list[tuple[GPUPool, ...]]
    n: list[np.ndarray]  # per dedicated queue: candidate requests per minute
    prompt: list[np.ndarray]  # their prompt tokens
    completion: list[np.ndarray]  # their output tokens
    overflow_metered: list[np.ndarray]  # what they would cost if all overflowed
    prompt_q: list[np.ndarray]  # their prompt tokens' distribution (equal-probability quantiles)
    unloaded_ttft_s: list[float]  # their p95 time to first token on an idle server
    serverless_ttft_ms: float
    overflow_ttft_ms: float
    label: str = ""

    @property
    def count(self) -> int:
        return len(self.serverless_n)

    @property
    def span_s(self) -> float:
        return self.count * MINUTE_S

    def scaled(self, k: float) -> Minutes:
        """The same minutes at k times the volume (fluid counts need not be whole)."""
        return replace(
            self,
            serverless_n=self.serverless_n * k,
            serverless_metered=self.serverless_metered * k,
            n=[x * k for x in self.n],
            prompt=[x * k for x in self.prompt],
            completion=[x * k for x in self.completion],
            overflow_metered=[x * k for x in self.overflow_metered],
        )

    def repeated(self, days: float, growth_per_month: float = 0.0) -> Minutes:
        """These minutes back to back until `days` are covered, times (1 + growth) per month."""
        total = max(1, int(round(days * 1440)))
        reps = math.ceil(total / self.count)
        g = (1 + growth_per_month) ** (np.arange(total) / (MONTH_DAYS * 1440))

        def rep(x):
            return np.tile(x, reps)[:total] * g

        return replace(
            self,
            serverless_n=rep(self.serverless_n),
            serverless_metered=rep(self.serverless_metered),
            n=[rep(x) for x in self.n],
            prompt=[rep(x) for x in self.prompt],
            completion=[rep(x) for x in self.completion],
            overflow_metered=[rep(x) for x in self.overflow_metered],
        )


def _quantiles(x: np.ndarray, points: int = PROMPT_QUANTILES) -> np.ndarray:
    """`points` equal-probability midpoints of x (what the fluid model mixes the prefill time over)."""
    if not len(x):
        return np.zeros(1)
    return np.quantile(x, (np.arange(points) + 0.5) / points)


def minutes_of(w: Workload, cfg: Config, fleet: Fleet, policy: str, pl: Plan | None = None) -> Minutes:
    """The workload's minutes under `policy`: counts, tokens and metered costs per minute and queue."""
    pl = pl or plan(w, cfg, fleet, policy)
    M = w.minutes
    mins = w.minute()
    pt, ct = w.prompt_tokens, w.completion_tokens
    eps = _serverless_endpoints(cfg, pl.model) if w.n else np.zeros(0, dtype=object)
    metered = pricing.costs_for(pl.pcfg, eps, pl.model, pt, ct)[0] if w.n else np.zeros(0)
    sl = pl.group < 0

    def per_minute(mask, weights=None):
        return np.bincount(mins[mask], weights=None if weights is None else weights[mask], minlength=M)[:M].astype(
            float
        )

    primary = cfg.routing.serverless_model
    return Minutes(
        prompt_q=[_quantiles(pt[pl.group == g]) for g in range(len(pl.groups))],
        unloaded_ttft_s=[unloaded_ttft_s(pools, pt[pl.group == g]) for g, pools in enumerate(pl.groups)],
        start=w.start,
        serverless_n=per_minute(sl),
        serverless_metered=per_minute(sl, metered),
        groups=list(pl.groups),
        n=[per_minute(pl.group == g) for g in range(len(pl.groups))],
        prompt=[per_minute(pl.group == g, pt) for g in range(len(pl.groups))],
        completion=[per_minute(pl.group == g, ct) for g in range(len(pl.groups))],
        overflow_metered=[per_minute(pl.group == g, metered) for g in range(len(pl.groups))],
        serverless_ttft_ms=fleet_mod.serverless_simulation(cfg, fleet, primary).ttft_ms,
        overflow_ttft_ms=fleet_mod.serverless_simulation(
            cfg, fleet, cfg.routing.premium_model if policy == "router" else primary
        ).ttft_ms,
        label=w.label,
    )


def minutes_of_profile(
    profile: traffic_mod.Profile, cfg: Config, fleet: Fleet, policy: str, days: float = MONTH_DAYS, sample: int = 20_000
) -> Minutes:
    """A profile's expected minutes: its rate per minute, split and priced like a sample of its requests."""
    rates = traffic_mod.minute_rates(profile, days)
    w = traffic_mod.poisson(sample / 3600, 3600, profile, seed=profile.seed)
    if not w.n:
        raise ValueError("the profile's sample is empty: raise requests_per_day")
    one = minutes_of(replace(w, t=np.zeros(w.n), span_s=MINUTE_S), cfg, fleet, policy)
    per_request = 1.0 / w.n

    def series(x):
        return rates * (x[0] * per_request)

    return replace(
        one,
        start=np.datetime64(profile.start, "us"),
        serverless_n=series(one.serverless_n),
        serverless_metered=series(one.serverless_metered),
        n=[series(x) for x in one.n],
        prompt=[series(x) for x in one.prompt],
        completion=[series(x) for x in one.completion],
        overflow_metered=[series(x) for x in one.overflow_metered],
        label="profile",
    )


def sized_minutes(w: Workload, cfg: Config, fleet: Fleet, policy: str) -> Callable[[int], Minutes]:
    """n -> the workload's minutes with `fleet.resized(n)`: the policy decides once for no GPU and once
    for some (the split does not depend on how many), only the pools' sizes change."""
    cache: dict[bool, Minutes] = {}

    def at(n: int) -> Minutes:
        key = n > 0
        if key not in cache:
            cache[key] = minutes_of(w, cfg, fleet.resized(1 if key else 0), policy)
        m = cache[key]
        return replace(m, groups=[tuple(p.with_count(n) for p in g) for g in m.groups]) if key else m

    return at


@dataclass
class FluidResult:
    """What the fluid/analytic model projects, minute by minute."""

    policy: str
    slo_ms: float
    max_wait_ms: float
    start: np.datetime64
    gpus: int
    costs: Costs
    requests: float
    serverless: float
    dedicated: float
    overflow: float
    minute: pd.DataFrame  # per minute: arrivals, dedicated, overflow, serverless, utilization, mean wait
    meet_share: float  # share of requests whose TTFT is within the target (NaN: not computed)
    ttft: dict[str, float]  # p50/p95/p99 time to first token (ms)
    mean_wait_ms: float
    utilization: float
    elapsed_s: float = 0.0

    @property
    def dedicated_share(self) -> float:
        return self.dedicated / self.requests if self.requests else 0.0

    @property
    def overflow_share(self) -> float:
        return self.overflow / self.requests if self.requests else 0.0

    @property
    def meets_target(self) -> bool:
        return self.meet_share >= TARGET_QUANTILE - 1e-12 if self.requests else True

    @property
    def peak_minute_utilization(self) -> float:
        return float(self.minute["utilization"].max()) if len(self.minute) else 0.0

    def summary(self) -> dict:
        c = self.costs
        return {
            "model": "fluid (M/M/k with balking per minute)",
            "policy": self.policy,
            "requests": round(self.requests),
            "minutes": len(self.minute),
            "gpus": self.gpus,
            **c.summary(),
            "dedicated_share": round(self.dedicated_share, 6),
            "overflow_share": round(self.overflow_share, 6),
            "utilization": round(self.utilization, 6),
            "peak_minute_utilization": round(self.peak_minute_utilization, 6),
            "mean_wait_ms": round(self.mean_wait_ms, 1),
            "p50_ttft_ms": self.ttft.get("p50"),
            "p95_ttft_ms": self.ttft.get("p95"),
            "p99_ttft_ms": self.ttft.get("p99"),
            "slo_ms": self.slo_ms,
            "meets_target": bool(self.meets_target),
            "missed_share": round(1 - self.meet_share, 6),
        }


@dataclass
class _Queue:
    n: np.ndarray
    served: np.ndarray
    p_balk: np.ndarray
    base: np.ndarray  # seconds beside the wait and the prefill: first token, and any fluid backlog
    prefill: np.ndarray  # prefill seconds at the queue's prompt-token quantiles
    q: dict[str, np.ndarray]
    wait: np.ndarray  # mean wait of those served, seconds (backlog included)
    work: np.ndarray  # slot-seconds busy
    slots: int  # batch slots of the queue (servers × concurrency)
    unstable: np.ndarray  # minutes with no overflow whose load exceeds the queue (the backlog grows)
    max_wait: float  # seconds a request may wait before it overflows


def _queue(pools: tuple[GPUPool, ...], n, pt, ct, prompt_q, max_wait: float) -> _Queue:
    """One dedicated queue, every minute at once.

    Per minute: arrival rate lam, mean prompt p and output c. A request's service time with
    L others in its server's batch is p·prefill + c·(itl0 + alpha·L); Little's law gives
    L = lam·S / servers (at most slots − 1), so S = (p·prefill + c·itl0) / (1 − c·alpha·lam / servers),
    capped at the full-batch time. The queue is then M/M/k with k = all slots and balking at
    the wait budget (`queueing.balking`).
    """
    c = sum(p.count for p in pools)
    k = sum(p.count * p.slots for p in pools)
    wts = np.array([p.count * p.slots for p in pools], dtype=float) / k
    itl0 = float(np.dot(wts, [p.itl0_s for p in pools]))
    alpha = float(np.dot(wts, [p.alpha_s for p in pools]))
    ipre = float(np.dot(wts, [p.prefill_s_per_token for p in pools]))
    slots = k / c
    lam = n / MINUTE_S
    with np.errstate(divide="ignore", invalid="ignore"):
        pbar = np.where(n > 0, pt / n, 0.0)
        cbar = np.where(n > 0, ct / n, 0.0)
        base = pbar * ipre + cbar * itl0
        s_sat = base + cbar * alpha * (slots - 1)
        denom = 1 - cbar * alpha * lam / c
        s = np.where(denom > 0, np.minimum(base / np.where(denom > 0, denom, 1), s_sat), s_sat)
    s = np.where(n > 0, np.maximum(s, 1e-9), 0.0)
    others = np.minimum(lam * s / c, slots - 1)
    first = (itl0 + alpha * others) * (cbar > 0)
    q = queueing.balking(k, lam, s, max_wait)
    unstable = np.zeros(len(n), dtype=bool)
    shift = np.zeros(len(n))
    if math.isinf(max_wait):  # no overflow: a backlog carries from minute to minute
        # Requests a minute can serve; a minute with no arrival drains at the series' mean service time.
        s_fill = np.where(s > 0, s, float(np.dot(n, s) / n.sum()) if n.sum() else 1.0)
        cap = k / s_fill * MINUTE_S
        # Lindley's recursion B_m = max(0, B_m-1 + n_m - cap_m), solved at once: S_m - min(S_0..S_m)
        walk = np.concatenate([[0.0], np.cumsum(n - cap)])
        backlog = walk - np.minimum.accumulate(walk)
        served = n + backlog[:-1] - backlog[1:]
        shift = (backlog[:-1] + backlog[1:]) / 2 / (cap / MINUTE_S)
        unstable = ~np.isfinite(q["mean_wait"])
        wait = np.where(unstable, 0.0, q["mean_wait"]) + shift
        p_balk = np.zeros(len(n))
    else:
        p_balk = q["p_balk"]
        served = n * (1 - p_balk)
        wait = q["mean_wait"]
    work = served * s  # slot-seconds busy
    return _Queue(
        n, served, p_balk, first + shift, np.asarray(prompt_q, dtype=float) * ipre, q, wait, work, k, unstable, max_wait
    )


def _wait_within(qu: _Queue, rel: np.ndarray) -> np.ndarray:
    """P(wait <= rel and served), rel of shape (minutes, …)."""
    q = {key: v.reshape(v.shape + (1,) * (rel.ndim - 1)) for key, v in qu.q.items()}
    cdf = queueing.wait_cdf(rel, q, qu.max_wait)
    if qu.unstable.any():
        u = qu.unstable.reshape(qu.unstable.shape + (1,) * (rel.ndim - 1))
        cdf = np.where(u, (rel >= 0).astype(float), cdf)
    return cdf


def _served_within(qu: _Queue, y: float) -> float:
    """Requests of this queue served on dedicated with a time to first token <= y seconds."""
    rel = (y - qu.base)[:, None] - qu.prefill[None, :]
    # Minutes where nobody waits (and nobody overflows): only the prefill decides.
    idle = (qu.q["p_wait"] < 1e-9) & ~qu.unstable
    out = float(np.dot(qu.n[idle], (rel[idle] >= 0).mean(axis=1)))
    busy = np.flatnonzero(~idle & (qu.n > 0))
    if len(busy):
        sub = _Queue(
            qu.n[busy],
            qu.served[busy],
            qu.p_balk[busy],
            qu.base[busy],
            qu.prefill,
            {key: v[busy] for key, v in qu.q.items()},
            qu.wait[busy],
            qu.work[busy],
            qu.slots,
            qu.unstable[busy],
            qu.max_wait,
        )
        out += float(np.dot(sub.n, _wait_within(sub, rel[busy]).mean(axis=1)))
    return out


def _ttft_quantiles(mins: Minutes, queues: list[_Queue], total: float, qs=(0.5, 0.95, 0.99)) -> dict[str, float]:
    """Quantiles of the time to first token over all requests, from each queue's distribution of
    wait (+ first token) on a grid, mixed with its prefill quantiles and the serverless TTFTs.
    Spans of more than QUANTILE_MINUTES minutes mix a fixed random sample of them."""
    steps = [(mins.serverless_ttft_ms / 1000, float(mins.serverless_n.sum()))]
    curves = []
    for qu in queues:
        steps.append((mins.overflow_ttft_ms / 1000, float((qu.n * qu.p_balk).sum())))
        if not qu.n.sum():
            continue
        tail = qu.max_wait if math.isfinite(qu.max_wait) else 10 * float(np.max(qu.wait, initial=0.0)) + 1.0
        top = float(qu.base.max()) + tail + 1e-3
        grid = np.linspace(0.0, top, QUANTILE_GRID)
        h = np.zeros(QUANTILE_GRID)
        live = np.flatnonzero(qu.n > 0)
        weight = 1.0
        if len(live) > QUANTILE_MINUTES:  # a long span: a fixed random sample of its minutes, reweighted
            pick = np.sort(np.random.default_rng(0).choice(live, QUANTILE_MINUTES, replace=False))
            weight = float(qu.n[live].sum() / qu.n[pick].sum())
            live = pick
        for chunk in np.array_split(live, max(1, len(live) // 2048)):
            sub = _Queue(
                qu.n[chunk],
                qu.served[chunk],
                qu.p_balk[chunk],
                qu.base[chunk],
                qu.prefill,
                {key: v[chunk] for key, v in qu.q.items()},
                qu.wait[chunk],
                qu.work[chunk],
                qu.slots,
                qu.unstable[chunk],
                qu.max_wait,
            )
            rel = grid[None, :] - sub.base[:, None]
            h += sub.n @ _wait_within(sub, rel)
        curves.append((grid, h * weight, qu.prefill))

    def within(y: float) -> float:
        out = sum(n for t, n in steps if t <= y)
        for grid, h, pre in curves:
            out += float(np.interp(y - pre, grid, h, left=0.0, right=h[-1]).mean())
        return out

    hi = max([t for t, _ in steps] + [g[-1] + float(p.max()) for g, _, p in curves]) + 1.0
    out = {}
    for qv in qs:
        lo, up = 0.0, hi
        for _ in range(40):
            mid = (lo + up) / 2
            if within(mid) >= qv * total:
                up = mid
            else:
                lo = mid
        out[f"p{round(qv * 100)}"] = round(up * 1000, 1)
    return out


def fluid(
    mins: Minutes,
    fleet: Fleet,
    policy: str,
    slo_ms: float = DEFAULT_SLO_MS,
    max_wait_ms: float | None = None,
    quantiles: bool = True,
    w_for_costs: Workload | None = None,
    target: bool = True,
) -> FluidResult:
    """The fluid/analytic model over per-minute aggregates (`target=False` skips the share meeting
    the target, `quantiles=False` the TTFT quantiles: what a sizing sweep does not read)."""
    t0 = time.perf_counter()
    check_policy(policy)
    slo_ms = check_slo(slo_ms)
    _max_wait_s(policy, slo_ms, max_wait_ms)
    M = mins.count
    queues = [
        _queue(
            pools,
            mins.n[g],
            mins.prompt[g],
            mins.completion[g],
            mins.prompt_q[g],
            _max_wait_s(policy, slo_ms, max_wait_ms, mins.unloaded_ttft_s[g]),
        )
        for g, pools in enumerate(mins.groups)
    ]
    total_n = float(mins.serverless_n.sum() + sum(x.sum() for x in mins.n))
    dedicated = float(sum(qu.served.sum() for qu in queues))
    overflow_n = float(sum((qu.n * qu.p_balk).sum() for qu in queues))
    metered = float(
        mins.serverless_metered.sum()
        + sum((qu.p_balk * om).sum() for qu, om in zip(queues, mins.overflow_metered, strict=True))
    )
    costs = _costs(w_for_costs or traffic_mod.empty(mins.span_s, mins.start), fleet, metered)
    slo_s = slo_ms / 1000
    meet = math.nan
    if target:
        within = float(mins.serverless_n.sum()) * (mins.serverless_ttft_ms / 1000 <= slo_s)
        for qu in queues:
            within += _served_within(qu, slo_s)
            within += float((qu.n * qu.p_balk).sum()) * (mins.overflow_ttft_ms / 1000 <= slo_s)
        meet = min(1.0, within / total_n) if total_n else 1.0
    ttft = _ttft_quantiles(mins, queues, total_n) if quantiles and total_n else {}
    slots = sum(qu.slots for qu in queues)
    work = sum(qu.work for qu in queues) if queues else np.zeros(M)
    util = np.clip(work / (slots * MINUTE_S), 0, 1) if slots else np.zeros(M)
    ded_m = sum(qu.served for qu in queues) if queues else np.zeros(M)
    ovf_m = sum(qu.n * qu.p_balk for qu in queues) if queues else np.zeros(M)
    wait_m = sum(qu.wait * qu.served for qu in queues) if queues else np.zeros(M)
    clock = mins.start + (np.arange(M) * 60_000_000).astype("timedelta64[us]")
    frame = pd.DataFrame(
        {
            "minute": clock,
            "arrivals": mins.serverless_n + sum(mins.n) if mins.n else mins.serverless_n.copy(),
            "serverless": mins.serverless_n + ovf_m,
            "dedicated": ded_m,
            "overflow": ovf_m,
            "utilization": util,
            "mean_wait_ms": wait_m / np.maximum(ded_m, 1e-12) * 1000,
        }
    )
    total_work = float(np.sum(work))
    return FluidResult(
        policy=policy,
        slo_ms=slo_ms,
        max_wait_ms=max((qu.max_wait * 1000 for qu in queues), default=0.0),
        start=mins.start,
        gpus=fleet.gpus,
        costs=costs,
        requests=total_n,
        serverless=float(mins.serverless_n.sum()) + overflow_n,
        dedicated=dedicated,
        overflow=overflow_n,
        minute=frame,
        meet_share=meet,
        ttft=ttft,
        mean_wait_ms=float(np.sum(wait_m)) / dedicated * 1000 if dedicated else 0.0,
        utilization=min(1.0, total_work / (slots * mins.span_s)) if slots else 0.0,
        elapsed_s=time.perf_counter() - t0,
    )


def project(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    policy: str = "router",
    slo_ms: float = DEFAULT_SLO_MS,
    max_wait_ms: float | None = None,
    days: float | None = MONTH_DAYS,
    growth_per_month: float = 0.0,
    quantiles: bool = True,
) -> FluidResult:
    """The fluid model over the workload's minutes, repeated to `days` (None: the workload's own span)."""
    t0 = time.perf_counter()
    mins = minutes_of(w, cfg, fleet, policy)
    span_w = w
    if days is not None:
        if not (isinstance(days, (int, float)) and math.isfinite(days) and days > 0):
            raise ValueError(f"days must be > 0 (got {days!r})")
        mins = mins.repeated(days, growth_per_month)
        span_w = traffic_mod.empty(mins.span_s, w.start)
    res = fluid(mins, fleet, policy, slo_ms, max_wait_ms, quantiles, w_for_costs=span_w)
    res.elapsed_s = time.perf_counter() - t0
    return res


def compare(sim: SimResult, fl: FluidResult) -> pd.DataFrame:
    """The discrete-event simulation beside the fluid model on the same sample."""
    a, b = sim.summary(), fl.summary()
    rows = [
        ("Monthly cost (USD)", a["monthly_cost_usd"], b["monthly_cost_usd"]),
        ("Metered, monthly (USD)", a["metered_cost_usd"], b["metered_cost_usd"]),
        ("Dedicated share", a["dedicated_share"], b["dedicated_share"]),
        ("Overflow share", a["overflow_share"], b["overflow_share"]),
        ("GPU utilization", a["utilization"], b["utilization"]),
        ("Peak-minute utilization", a["peak_minute_utilization"], b["peak_minute_utilization"]),
        ("Mean wait on dedicated (ms)", a["mean_wait_ms"], b["mean_wait_ms"]),
        ("p50 time to first token (ms)", a["p50_ttft_ms"], b["p50_ttft_ms"]),
        ("p95 time to first token (ms)", a["p95_ttft_ms"], b["p95_ttft_ms"]),
        ("Share missing the target", a["missed_share"], b["missed_share"]),
    ]
    df = pd.DataFrame(rows, columns=["metric", "simulation", "fluid"])
    sim_v = pd.to_numeric(df["simulation"], errors="coerce")
    fl_v = pd.to_numeric(df["fluid"], errors="coerce")
    df["difference"] = fl_v - sim_v
    with np.errstate(divide="ignore", invalid="ignore"):
        df["relative"] = np.where(sim_v.abs() > 1e-12, (fl_v - sim_v) / sim_v.abs(), np.nan)
    return df


# --- the optimizer --------------------------------------------------------------------------


@dataclass
class Optimum:
    best_gpus: int | None  # the cheapest count meeting the target (None: no count up to max_gpus does)
    curve: pd.DataFrame  # per GPU count: fluid figures for every count, simulated where the search went
    best: SimResult | None
    policy: str
    slo_ms: float
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        cols = [
            "gpus",
            "monthly_cost_usd",
            "p95_ttft_ms",
            "overflow_share",
            "utilization",
            "meets_target",
            "method",
            "fluid_monthly_cost_usd",
            "fluid_p95_ttft_ms",
            "fluid_meets_target",
        ]
        curve = self.curve[cols].replace({np.nan: None}).to_dict(orient="records")
        return {"best_gpus": self.best_gpus, "policy": self.policy, "slo_ms": self.slo_ms, "curve": curve}


def optimize(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    policy: str = "dedicated-first",
    slo_ms: float = DEFAULT_SLO_MS,
    max_gpus: int = 32,
    max_wait_ms: float | None = None,
    progress: Progress | None = None,
) -> Optimum:
    """The cheapest number of GPUs (0 … max_gpus of the fleet's first server type) meeting the target.

    The fluid model prices every count; the discrete-event simulation then finds the smallest
    count of GPUs that meets the p95 target (binary search: more GPUs never serve worse), walks
    from the fluid model's cheapest count above it to the simulated cheapest, and compares with
    no GPU at all. The curve keeps both models' figures.
    """
    t0 = time.perf_counter()
    say = progress or _quiet
    check_policy(policy)
    slo_ms = check_slo(slo_ms)
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or max_gpus < 1 or max_gpus > 1024:
        raise ValueError(f"the largest fleet to try must be a whole number from 1 to 1024 (got {max_gpus!r})")
    lo = 1 if policy == "dedicated" else 0
    counts = list(range(lo, max_gpus + 1))
    say(0.0, f"Pricing {len(counts)} fleet sizes with the fluid model…")
    fl: dict[int, FluidResult] = {}
    sized = sized_minutes(w, cfg, fleet, policy)
    for i, n in enumerate(counts):
        fl[n] = fluid(sized(n), fleet.resized(n), policy, slo_ms, max_wait_ms, quantiles=True, w_for_costs=w)
        if i % 8 == 7:
            say(0.2 * (i + 1) / len(counts), f"Fluid model: {i + 1} of {len(counts)} fleet sizes")
    sims: dict[int, dict] = {}  # GPU count -> the simulation's summary
    kept: dict[int, SimResult] = {}  # the full result of the cheapest count meeting the target so far
    budget = max(1, math.ceil(math.log2(len(counts) + 1))) + 5

    def des(n: int) -> dict:
        if n not in sims:
            done = len(sims)
            say(0.2 + 0.8 * min(done / budget, 0.95), f"Simulating {n} GPU{'s' if n != 1 else ''} ({w.n:,} requests)…")
            r = simulate(w, cfg, fleet.resized(n), policy, slo_ms, max_wait_ms)
            sims[n] = r.summary()
            if r.meets_target and all(r.costs.monthly_usd < k.costs.monthly_usd for k in kept.values()):
                kept.clear()
                kept[n] = r
        return sims[n]

    def cost(n: int) -> float:
        r = des(n)
        return r["monthly_cost_usd"] if r["meets_target"] else math.inf

    # 1. the smallest count of one GPU or more that the simulation says meets the target: with
    # GPUs, more of them never serve worse, so a binary search finds it, starting from the
    # fluid model's answer. (No GPU at all is another regime: everything is serverless.)
    gpu_counts = [n for n in counts if n >= 1]
    fluid_ok = [n for n in gpu_counts if fl[n].meets_target]
    guess = fluid_ok[0] if fluid_ok else gpu_counts[-1]
    if des(guess)["meets_target"]:
        a, b = gpu_counts[0], guess
    else:
        a, b = guess + 1, None
        if a <= gpu_counts[-1] and des(gpu_counts[-1])["meets_target"]:
            b = gpu_counts[-1]
    n_min = None
    if b is not None:
        while a < b:
            mid = (a + b) // 2
            if des(mid)["meets_target"]:
                b = mid
            else:
                a = mid + 1
        n_min = b
    best, best_cost = None, math.inf
    if n_min is not None:
        # 2. from the fluid model's cheapest count at or above it, walk down the simulated cost
        cur = min((n for n in gpu_counts if n >= n_min), key=lambda n: (fl[n].costs.monthly_usd, n))
        best, best_cost = cur, cost(cur)
        improved = True
        while improved:
            improved = False
            for nb in (best - 1, best + 1):
                if n_min <= nb <= gpu_counts[-1] and cost(nb) < best_cost - 1e-9:
                    best, best_cost, improved = nb, cost(nb), True
                    break
    if lo == 0 and cost(0) < best_cost - 1e-9:  # no GPU at all
        best, best_cost = 0, cost(0)
    for n, r in sims.items():  # anything simulated on the way that is cheaper
        if r["meets_target"] and r["monthly_cost_usd"] < best_cost - 1e-9:
            best, best_cost = n, r["monthly_cost_usd"]
    best_result = kept.get(best) if best is not None else None
    if best is not None and best_result is None:  # a tie with a count simulated earlier
        best_result = simulate(w, cfg, fleet.resized(best), policy, slo_ms, max_wait_ms)
    rows = []
    for n in counts:
        f = fl[n]
        r = sims.get(n)
        row = {
            "gpus": n,
            "fluid_monthly_cost_usd": round(f.costs.monthly_usd, 2),
            "fluid_p95_ttft_ms": f.ttft.get("p95"),
            "fluid_overflow_share": round(f.overflow_share, 6),
            "fluid_utilization": round(f.utilization, 6),
            "fluid_meets_target": f.meets_target,
        }
        if r is not None:
            row |= {
                "monthly_cost_usd": r["monthly_cost_usd"],
                "p95_ttft_ms": r["p95_ttft_ms"],
                "overflow_share": r["overflow_share"],
                "utilization": r["utilization"],
                "meets_target": r["meets_target"],
                "method": "simulation",
            }
        else:
            row |= {
                "monthly_cost_usd": row["fluid_monthly_cost_usd"],
                "p95_ttft_ms": row["fluid_p95_ttft_ms"],
                "overflow_share": round(f.overflow_share, 6),
                "utilization": round(f.utilization, 6),
                "meets_target": f.meets_target,
                "method": "fluid",
            }
        rows.append(row)
    say(1.0, f"Done: {len(sims)} simulations, {len(counts)} fluid evaluations")
    return Optimum(best, pd.DataFrame(rows), best_result, policy, slo_ms, time.perf_counter() - t0)


# --- break-even -----------------------------------------------------------------------------


@dataclass
class BreakEven:
    curves: pd.DataFrame  # per volume: requests/month, req/s, the three monthly costs, GPUs each uses
    crossovers: list[dict]
    slo_ms: float
    policy: str


def break_even(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    slo_ms: float = DEFAULT_SLO_MS,
    policy: str = "dedicated-first",
    multipliers=None,
    max_gpus: int = 32,
    max_wait_ms: float | None = None,
    progress: Progress | None = None,
) -> BreakEven:
    """Monthly cost against traffic volume (the workload scaled), with the fluid model:

    * all-serverless: every request metered on the primary model (linear in volume);
    * dedicated-only: the fewest GPUs (1 … max_gpus) whose p95 TTFT meets the target with no
      overflow (NaN where none does);
    * hybrid: the cheapest fleet of 1 … max_gpus GPUs under `policy`, overflow metered (the
      overflow rule keeps the wait of dedicated requests within the budget, so no target is
      imposed on it). With no GPU the hybrid is all-serverless.

    Crossovers are the volumes where one curve passes another (interpolated on a log scale);
    `cheapest` names the cheapest curve at each volume.
    """
    say = progress or _quiet
    slo_ms = check_slo(slo_ms)
    check_policy(policy)
    if policy not in ("router", "dedicated-first"):
        raise ValueError(
            f"the hybrid curve needs a policy that mixes tiers: router or dedicated-first (got {policy!r})"
        )
    if w.n == 0:
        raise ValueError("break-even needs traffic to scale: the selection has no request")
    base_sl = minutes_of(w, cfg, fleet.resized(0), "serverless")
    ded_at = sized_minutes(w, cfg, fleet, "dedicated")
    hyb_at = sized_minutes(w, cfg, fleet, policy)
    gpu_month = pricing.hourly_fixed(fleet.resized(1).endpoints()) * MONTH_HOURS
    if multipliers is None:
        # From well below to well above the volume where one GPU-month buys as much as the metered bill.
        metered_month = float(base_sl.serverless_metered.sum()) * w.monthly_factor
        k_star = gpu_month / metered_month if metered_month > 0 else 1.0
        lo, hi = min(0.1, k_star / 10), max(10.0, k_star * 20)
        lo = max(lo, hi / 1e5)
        ks = np.unique(np.append(np.geomspace(lo, hi, 25), 1.0))
    else:
        ks = np.sort(np.asarray(multipliers, dtype=float))
    if not len(ks) or np.any(~np.isfinite(ks)) or np.any(ks <= 0):
        raise ValueError("volume multipliers must be numbers > 0")
    other = fleet.other_monthly_usd
    monthly_requests = w.n * w.monthly_factor
    rows = []
    n_ded = 1
    for i, k in enumerate(ks):
        say(i / len(ks), f"Volume ×{k:.2g}: sizing the fleets…")
        sl_cost = float(base_sl.serverless_metered.sum()) * k * w.monthly_factor + other
        ded_cost, ded_n = math.nan, None
        n = n_ded
        while n <= max_gpus:  # the fewest GPUs meeting the target grows with the volume
            r = fluid(ded_at(n).scaled(k), fleet.resized(n), "dedicated", slo_ms, None, quantiles=False, w_for_costs=w)
            if r.meets_target:
                ded_cost, ded_n, n_ded = r.costs.monthly_usd, n, n
                break
            n += 1
        hyb_cost, hyb_n = math.inf, None
        for n in range(1, max_gpus + 1):
            if n * gpu_month + other >= hyb_cost:  # more GPUs cost more than the best so far, whatever they save
                break
            r = fluid(
                hyb_at(n).scaled(k),
                fleet.resized(n),
                policy,
                slo_ms,
                max_wait_ms,
                quantiles=False,
                w_for_costs=w,
                target=False,
            )
            if r.costs.monthly_usd < hyb_cost:
                hyb_cost, hyb_n = r.costs.monthly_usd, n
        rows.append(
            {
                "multiplier": float(k),
                "requests_per_month": monthly_requests * k,
                "requests_per_s": w.rate_per_s * k,
                "all_serverless_usd": sl_cost,
                "dedicated_only_usd": ded_cost,
                "dedicated_only_gpus": ded_n,
                "hybrid_usd": hyb_cost if math.isfinite(hyb_cost) else math.nan,
                "hybrid_gpus": hyb_n,
            }
        )
    say(1.0, "Break-even curves ready")
    df = pd.DataFrame(rows)
    df["cheapest"] = df[list(CURVES)].idxmin(axis=1, skipna=True).map(CURVES)
    return BreakEven(df, crossovers(df), slo_ms, policy)


CURVES = {"all_serverless_usd": "all-serverless", "dedicated_only_usd": "dedicated-only", "hybrid_usd": "hybrid"}


def crossovers(df: pd.DataFrame, rel_tol: float = 0.002) -> list[dict]:
    """Where each pair of cost curves crosses, interpolated between grid volumes on a log scale.

    Costs within `rel_tol` of each other are a tie, not a crossing; a crossing through a run of
    ties is placed between the last volumes on either side of it.
    """
    out = []
    x = np.log(df["requests_per_month"].to_numpy())
    for a, b in (
        ("all_serverless_usd", "dedicated_only_usd"),
        ("all_serverless_usd", "hybrid_usd"),
        ("hybrid_usd", "dedicated_only_usd"),
    ):
        va, vb = df[a].to_numpy(dtype=float), df[b].to_numpy(dtype=float)
        d = va - vb
        tol = rel_tol * np.maximum(np.abs(va), np.abs(vb))
        sign = np.where(d > tol, 1, np.where(d < -tol, -1, 0))
        last = None  # index of the last volume where one curve was clearly cheaper
        for j in range(len(d)):
            if not np.isfinite(d[j]):
                last = None
                continue
            if sign[j] == 0:
                continue
            if last is not None and sign[last] != sign[j]:
                frac = d[last] / (d[last] - d[j])
                xv = x[last] + frac * (x[j] - x[last])
                vol = float(np.exp(xv))
                out.append(
                    {
                        "between": (CURVES[a], CURVES[b]),
                        "requests_per_month": vol,
                        "requests_per_s": vol / (MONTH_DAYS * 86_400),
                        "monthly_cost_usd": float(va[last] + frac * (va[j] - va[last])),
                        "cheaper_above": CURVES[b] if sign[j] > 0 else CURVES[a],
                    }
                )
            last = j
    return out


# --- the reference scenario -----------------------------------------------------------------


def reference_scenario(
    cfg: Config,
    before_req_s: float,
    after_req_s: float,
    seconds: float = 300.0,
    profile: traffic_mod.Profile | None = None,
    slo_ms: float = DEFAULT_SLO_MS,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, SimResult]:
    """The reference deployment simulated: all-serverless at the 'before' rate; the configured fleet
    under the router policy at the 'before' and 'after' rates (flat Poisson arrivals for `seconds`,
    tokens from `profile`), each priced for a month."""
    say = progress or _quiet
    fleet = fleet_mod.from_config(cfg)
    out = {}
    runs = (
        ("before", before_req_s, "serverless", fleet_mod.Fleet()),
        ("after at before rate", before_req_s, "router", fleet),
        ("after", after_req_s, "router", fleet),
    )
    for i, (name, rate, pol, fl) in enumerate(runs):
        say(i / len(runs), f"Simulating {name}: {rate:g} req/s, {POLICY_LABELS[pol].lower()}…")
        w = traffic_mod.poisson(rate, seconds, profile, seed=seed)
        out[name] = simulate(w, cfg, fl, pol, slo_ms)
    say(1.0, "Reference scenario simulated")
    return out


# --- the command line -----------------------------------------------------------------------


def simulate_command(args, cfg: Config, db, on_wait: Callable[[float], None] | None = None) -> tuple[dict, str]:
    """`sophia simulate`: (JSON-able result, human text) for the parsed arguments.

    args: source (list | None), profile (path | None), scale, gpus, gpu_hourly, throughput,
    max_concurrency, slo_ms, policy, optimize. `db` (a `sophia.log.db.Database`, or None with a
    profile) gives the traffic and the active policy version; `on_wait` is told how long it has
    waited for a database another process holds.
    """
    from sophia.log import versions

    policy = check_policy(getattr(args, "policy", None) or "router")
    slo_ms = check_slo(getattr(args, "slo_ms", DEFAULT_SLO_MS))
    k = traffic_mod.check_scale(getattr(args, "scale", 1.0))
    gpus = getattr(args, "gpus", None)
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
        raise ValueError(f"--gpus must be a whole number >= 0 (got {gpus!r})")
    for flag, v in (
        ("--gpu-hourly", getattr(args, "gpu_hourly", None)),
        ("--throughput", getattr(args, "throughput", None)),
    ):
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise ValueError(
                f"{flag} must be > 0 (got {v!r}): "
                + (
                    "a GPU's price per hour in USD"
                    if flag == "--gpu-hourly"
                    else "output tokens per second of one GPU at saturation"
                )
            )
    mc = getattr(args, "max_concurrency", None)
    if mc is not None and mc < 1:
        raise ValueError(f"--max-concurrency must be a whole number >= 1 (got {mc!r})")
    profile_path = getattr(args, "profile", None)
    sources = getattr(args, "source", None)
    if profile_path and sources:
        raise ValueError("give either --source (logged or imported traffic) or --profile (synthetic), not both")
    active = cfg
    w: Workload
    if db is not None:
        with db.cursor(on_wait=on_wait) as cur:
            _, active = versions.resolve(cur, cfg)
            if not profile_path:
                tr = replay.load(cur, sources)
    elif not profile_path:
        raise ValueError("no database to read traffic from: run `sophia demo` or `sophia import`, or pass --profile")
    if profile_path:
        prof = traffic_mod.load_profile(profile_path)
        w = traffic_mod.synthetic(prof, label=f"profile {profile_path}")
    else:
        if not tr.n:
            which = f" from {', '.join(sources)}" if sources else ""
            raise ValueError(
                f"no request{which} in the log: check --source (see `sophia stats`), load traffic with "
                "`sophia demo` or `sophia import`, or pass --profile FILE"
            )
        w = traffic_mod.from_traffic(tr, label=", ".join(sources) if sources else "the whole log")
    w = traffic_mod.scale(w, k, seed=0)
    fleet = fleet_mod.homogeneous(
        active, gpus, getattr(args, "gpu_hourly", None), getattr(args, "throughput", None), mc
    )
    out: dict
    if getattr(args, "optimize", False):
        if not fleet.pools:
            raise ValueError(
                "--optimize needs a GPU type: configure a dedicated endpoint or give --gpu-hourly and --throughput"
            )
        opt = optimize(w, active, fleet, policy, slo_ms, max_gpus=max(32, gpus or 0))
        chosen = opt.best if opt.best is not None else simulate(w, active, fleet, policy, slo_ms)
        out = chosen.summary() | opt.as_dict()
    else:
        chosen = simulate(w, active, fleet, policy, slo_ms)
        out = chosen.summary()
    out["traffic"] = {"label": w.label, "requests": w.n, "span_hours": round(w.span_s / 3600, 3), "scale": k}
    return out, _text(out, w)


def _text(d: dict, w: Workload) -> str:
    def usd(x):
        return f"${x:,.2f}"

    lines = [
        f"traffic      {d['traffic']['requests']:,} requests over {d['traffic']['span_hours']:g} h "
        f"({d['traffic']['label']}, ×{d['traffic']['scale']:g})",
        f"policy       {POLICY_LABELS[d['policy']]}, {d['gpus']} GPU{'s' if d['gpus'] != 1 else ''}",
        f"month        {usd(d['monthly_cost_usd'])} = GPU-hours {usd(d['gpu_cost_usd'])} + metered "
        f"{usd(d['metered_cost_usd'])} + other fixed {usd(d['other_fixed_cost_usd'])}",
        f"split        {d['dedicated_share']:.1%} dedicated, {d['overflow_share']:.1%} overflowed to serverless, "
        f"GPU utilization {d['utilization']:.1%} (peak minute {d['peak_minute_utilization']:.1%})",
        f"latency      p50 {d['p50_latency_ms'] or 0:,.0f} ms, p95 {d['p95_latency_ms'] or 0:,.0f} ms; first token "
        f"p95 {d['p95_ttft_ms'] or 0:,.0f} ms (target {d['slo_ms']:,.0f} ms: "
        f"{'met' if d['meets_target'] else 'missed'}, {d['missed_share']:.1%} of requests over it)",
    ]
    if "best_gpus" in d:
        best = d["best_gpus"]
        lines.append(
            "optimum      "
            + (
                f"{best} GPU{'s' if best != 1 else ''} is the cheapest fleet meeting the target"
                if best is not None
                else f"no fleet up to {d['curve'][-1]['gpus']} GPUs meets the target"
            )
        )
        lines.append("  gpus   monthly USD   p95 TTFT ms   overflow   method")
        for r in d["curve"]:
            lines.append(
                f"  {r['gpus']:>4}   {r['monthly_cost_usd'] or 0:>11,.2f}   {r['p95_ttft_ms'] or 0:>11,.0f}"
                f"   {r['overflow_share'] or 0:>8.1%}   {r['method']}{'  ✓' if r['meets_target'] else ''}"
            )
    for note in d.get("notes", []):
        lines.append(f"note         {note}")
    return "\n".join(lines)
