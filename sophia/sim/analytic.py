"""The fluid/analytic model at 1-minute resolution, and how it compares with the simulation.

Each minute's dedicated traffic is an M/M/k queue with balking (k = batch slots of the fleet;
service time from the batch size Little's law gives), so a month of minutes takes
milliseconds. `compare` shows how far it and the discrete-event simulation differ on one sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sophia.config import Config
from sophia.money.periods import MONTH_DAYS
from sophia.sim import autoscale as autoscale_mod
from sophia.sim import queueing
from sophia.sim import workload as traffic_mod
from sophia.sim.autoscale import Autoscale, Schedule
from sophia.sim.costs import Costs, span_costs
from sophia.sim.des import SimResult
from sophia.sim.fleet import Fleet, GPUPool
from sophia.sim.minutes import Minutes, minutes_of
from sophia.sim.policies import DEFAULT_SLO_MS, TARGET_QUANTILE, check_policy, check_slo, max_wait_s
from sophia.sim.workload import MINUTE_S, Workload

QUANTILE_GRID = 192  # points of the wait distribution the TTFT quantiles are read from
QUANTILE_MINUTES = 8192  # minutes the quantiles mix at most (a fixed random sample of longer spans)


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
    scaling: Schedule | None = None  # the autoscaling schedule (None: a fixed fleet)

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
        } | ({"autoscale": self.scaling.summary()} if self.scaling is not None else {})


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
    slots: int | np.ndarray  # batch slots of the queue (servers × concurrency), per minute when autoscaled
    unstable: np.ndarray  # minutes with no overflow whose load exceeds the queue (the backlog grows)
    max_wait: float  # seconds a request may wait before it overflows

    def minutes(self, sel: np.ndarray) -> _Queue:
        """The same queue over a selection of its minutes."""
        return _Queue(
            self.n[sel],
            self.served[sel],
            self.p_balk[sel],
            self.base[sel],
            self.prefill,
            {key: v[sel] for key, v in self.q.items()},
            self.wait[sel],
            self.work[sel],
            self.slots[sel] if isinstance(self.slots, np.ndarray) else self.slots,
            self.unstable[sel],
            self.max_wait,
        )


def _queue(
    pools: tuple[GPUPool, ...], n, pt, ct, prompt_q, max_wait: float, servers: np.ndarray | None = None
) -> _Queue:
    """One dedicated queue, every minute at once.

    Per minute: arrival rate lam, mean prompt p and output c. A request's service time with
    L others in its server's batch is p·prefill + c·(itl0 + alpha·L); Little's law gives
    L = lam·S / servers (at most slots − 1), so S = (p·prefill + c·itl0) / (1 − c·alpha·lam / servers),
    capped at the full-batch time. The queue is then M/M/k with k = all slots and balking at
    the wait budget (`queueing.balking`). With `servers` (autoscaling, one GPU type) the number
    of servers is per minute.
    """
    if servers is not None:
        pools = tuple(p.with_count(1) for p in pools)
    c = sum(p.count for p in pools)
    k = sum(p.count * p.slots for p in pools)
    wts = np.array([p.count * p.slots for p in pools], dtype=float) / k
    itl0 = float(np.dot(wts, [p.itl0_s for p in pools]))
    alpha = float(np.dot(wts, [p.alpha_s for p in pools]))
    ipre = float(np.dot(wts, [p.prefill_s_per_token for p in pools]))
    slots = k / c
    if servers is not None:  # per minute: servers c and batch slots k (a minute with none overflows all)
        c = np.maximum(np.asarray(servers, dtype=float), 1.0)
        k = np.asarray(servers, dtype=np.int64) * int(slots)
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
    q = queueing.balking(k, lam, s, max_wait) if servers is None else queueing.balking_per(k, lam, s, max_wait)
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
    work = served * s if servers is None else np.where(k > 0, served * s, 0.0)  # slot-seconds busy
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
        sub = qu.minutes(busy)
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
            sub = qu.minutes(chunk)
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
    autoscale: Autoscale | None = None,
) -> FluidResult:
    """The fluid/analytic model over per-minute aggregates (`target=False` skips the share meeting
    the target, `quantiles=False` the TTFT quantiles: what a sizing sweep does not read).

    With `autoscale`, the fleet's one GPU type runs the controller's schedule over these minutes
    (`sophia.sim.autoscale`): each minute's servers are those serving at its midpoint."""
    t0 = time.perf_counter()
    check_policy(policy)
    slo_ms = check_slo(slo_ms)
    max_wait_s(policy, slo_ms, max_wait_ms)
    M = mins.count
    sched = None
    servers = None
    if autoscale is not None:
        autoscale = autoscale.check()
        if fleet.pools:
            fleet = fleet.resized(autoscale.max_instances)
        pool = autoscale_mod.pool_of(fleet)
        demand = autoscale_mod.demand_servers(mins.prompt, mins.completion, pool, M)
        sched = autoscale_mod.schedule(demand, autoscale, mins.span_s)
        servers = sched.minute_serving()
    queues = [
        _queue(
            pools,
            mins.n[g],
            mins.prompt[g],
            mins.completion[g],
            mins.prompt_q[g],
            max_wait_s(policy, slo_ms, max_wait_ms, mins.unloaded_ttft_s[g]),
            servers,
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
    costs = span_costs(w_for_costs or traffic_mod.empty(mins.span_s, mins.start), fleet, metered, schedule=sched)
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
    slot_seconds = float(np.sum(slots * MINUTE_S)) if isinstance(slots, np.ndarray) else slots * mins.span_s
    if isinstance(slots, np.ndarray):
        with np.errstate(divide="ignore", invalid="ignore"):
            util = np.clip(np.where(slots > 0, work / (slots * MINUTE_S), 0.0), 0, 1)
    else:
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
        utilization=min(1.0, total_work / slot_seconds) if slot_seconds else 0.0,
        elapsed_s=time.perf_counter() - t0,
        scaling=sched,
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
    autoscale: Autoscale | None = None,
) -> FluidResult:
    """The fluid model over the workload's minutes, repeated to `days` (None: the workload's own span)."""
    t0 = time.perf_counter()
    if autoscale is not None and fleet.pools:
        fleet = fleet.resized(autoscale.max_instances)
    mins = minutes_of(w, cfg, fleet, policy)
    span_w = w
    if days is not None:
        if not (isinstance(days, (int, float)) and math.isfinite(days) and days > 0):
            raise ValueError(f"days must be > 0 (got {days!r})")
        mins = mins.repeated(days, growth_per_month)
        span_w = traffic_mod.empty(mins.span_s, w.start)
    res = fluid(mins, fleet, policy, slo_ms, max_wait_ms, quantiles, w_for_costs=span_w, autoscale=autoscale)
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
