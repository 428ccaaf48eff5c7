"""Autoscaling a pool of one GPU type: min / max instances, a target utilization, a scale-up delay, a cool-down.

The controller reads each minute's load at the minute's end (a one-minute metrics window) and
asks for the instances that load needs at the target utilization:

    desired_m = clamp(ceil(demand_m / target), min, max)

where demand_m is the servers the minute's dedicated work needs at a full batch (its prompt
tokens at the prefill speed plus its output tokens at the full-batch inter-token latency, over
one server's batch slots × 60 s). It scales up at once and down only when the load has stayed
lower for the cool-down (the largest request of the decisions within the cool-down wins, like a
scale-down stabilization window; the window is whole minutes, at least one):

    requested(minute m) = max(desired over the decisions of the last ceil(cool-down / 60) minutes)

An instance is paid from the moment it is requested (provisioning included) until it is
released, and serves `scale_up_delay_s` after it was requested, so the instances serving at t
are the fewest requested at any moment of [t - delay, t]. The pool starts at `min_instances`,
already serving. Both models read the same schedule (it depends on the offered load only, not on
how it was served), so their GPU-hours agree exactly; the discrete-event simulation follows the
serving count to the second, the fluid model takes the count serving at each minute's midpoint.
A released instance finishes the requests it holds (its drain is not billed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import pandas as pd

from sophia.money import pricing
from sophia.money.periods import MONTH_HOURS
from sophia.sim import limits
from sophia.sim.fleet import Fleet, GPUPool
from sophia.sim.workload import MINUTE_S

KEYS = ("min_instances", "max_instances", "target_utilization", "scale_up_delay_s", "cool_down_s")
RANGE_OF = {
    "min_instances": "autoscale_min",
    "max_instances": "autoscale_max",
    "target_utilization": "target_utilization",
    "scale_up_delay_s": "scale_up_delay_s",
    "cool_down_s": "cool_down_s",
}


@dataclass(frozen=True)
class Autoscale:
    """The autoscaling settings of the fleet's GPU type (the product's defaults: 5–50 instances, 5 s)."""

    min_instances: int = 5
    max_instances: int = 50
    target_utilization: float = 0.7
    scale_up_delay_s: float = 5.0
    cool_down_s: float = 300.0

    def check(self, face: str = "page") -> Autoscale:
        """Every setting within its range (`limits.RANGES`), min <= max; a ValueError names the first that is not."""
        vals = {k: limits.check(RANGE_OF[k], getattr(self, k), face) for k in KEYS}
        if vals["min_instances"] > vals["max_instances"]:
            lo, hi = limits.name("autoscale_min", face), limits.name("autoscale_max", face)
            raise ValueError(
                f"{lo} ({vals['min_instances']:,}) must not exceed {hi} ({vals['max_instances']:,}): "
                f"raise {hi} or lower {lo}"
            )
        return replace(self, **vals)

    @property
    def window_minutes(self) -> int:
        """Decisions the scale-down looks back over: the cool-down in whole minutes, at least one."""
        return max(1, math.ceil(self.cool_down_s / MINUTE_S - 1e-9))

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in KEYS}


@dataclass
class Schedule:
    """Instances over a span: requested (paid) per minute, and serving as a step function of time."""

    autoscale: Autoscale
    span_s: float
    demand: np.ndarray  # per minute: servers the load needs at a full batch
    desired: np.ndarray  # per minute: what the controller asks for at the minute's end
    requested: np.ndarray  # per minute: instances requested (paid), provisioning included
    times: np.ndarray  # seconds at which the serving count changes (the first is 0)
    counts: np.ndarray  # instances serving from each of `times`

    @property
    def minutes(self) -> int:
        return len(self.requested)

    def serving_at(self, t) -> np.ndarray:
        i = np.searchsorted(self.times, np.asarray(t, dtype=float), side="right") - 1
        return self.counts[np.clip(i, 0, len(self.counts) - 1)]

    def minute_serving(self) -> np.ndarray:
        """Instances serving at each minute's midpoint: the fluid model's servers per minute."""
        return self.serving_at((np.arange(self.minutes) + 0.5) * MINUTE_S).astype(np.int64)

    def serving_seconds(self) -> np.ndarray:
        """Instance-seconds serving in each minute (the discrete-event simulation's utilization base)."""
        edges = np.minimum(np.arange(self.minutes + 1) * float(MINUTE_S), self.span_s)
        seg = np.diff(np.append(self.times, max(self.span_s, self.times[-1])))
        cum = np.concatenate([[0.0], np.cumsum(self.counts * seg)])
        i = np.clip(np.searchsorted(self.times, edges, side="right") - 1, 0, len(self.counts) - 1)
        at = cum[i] + self.counts[i] * (edges - self.times[i])
        return np.diff(at)

    def serving_slot_seconds(self, slots: int) -> float:
        """Batch-slot-seconds serving over the span: sum of (instances × slots) × duration."""
        ends = np.append(self.times[1:], self.span_s)
        pieces = zip(self.counts, self.times, ends, strict=True)
        return float(sum((int(c) * slots) * (float(e) - float(s)) for c, s, e in pieces))

    def paid_seconds(self) -> dict[int, float]:
        """Seconds of the span at each requested count (what is billed)."""
        dur = np.full(self.minutes, float(MINUTE_S))
        if self.minutes:
            dur[-1] = self.span_s - MINUTE_S * (self.minutes - 1)
        values = np.unique(self.requested)
        if len(values) == 1:  # one count all along: the whole span, exactly as a fixed fleet is billed
            return {int(values[0]): float(self.span_s)}
        return {int(c): float(dur[self.requested == c].sum()) for c in values}

    @property
    def instance_hours(self) -> float:
        return sum(c * s for c, s in self.paid_seconds().items()) / 3600

    @property
    def mean_instances(self) -> float:
        return self.instance_hours * 3600 / self.span_s if self.span_s else 0.0

    def frame(self, start: np.datetime64) -> pd.DataFrame:
        """Per minute: the load in servers, the instances requested (paid) and serving (mean over the minute)."""
        clock = start + (np.arange(self.minutes) * 60_000_000).astype("timedelta64[us]")
        serving = self.serving_seconds() / np.maximum(
            np.diff(np.minimum(np.arange(self.minutes + 1) * float(MINUTE_S), self.span_s)), 1e-9
        )
        return pd.DataFrame(
            {
                "minute": clock,
                "load_servers": self.demand,
                "desired": self.desired,
                "requested": self.requested,
                "serving": serving,
            }
        )

    def summary(self) -> dict:
        return {
            **self.autoscale.as_dict(),
            "instance_hours": round(self.instance_hours, 4),
            "mean_instances": round(self.mean_instances, 4),
            "peak_instances": int(self.requested.max()) if self.minutes else 0,
            "fewest_instances": int(self.requested.min()) if self.minutes else 0,
        }


def pool_of(fleet: Fleet) -> GPUPool:
    """The one GPU type an autoscaled fleet runs (refused when there is none or several)."""
    active = fleet.pools
    if not active:
        raise ValueError(
            "autoscaling needs a GPU type: configure a dedicated endpoint or give --gpu-hourly and --throughput"
        )
    if len(active) > 1:
        raise ValueError(
            f"autoscaling sizes one GPU type, and this fleet has {len(active)} pools: autoscale one type "
            "(its first pool) or simulate the pools as a fixed fleet"
        )
    return active[0]


def demand_servers(prompt: list[np.ndarray], completion: list[np.ndarray], pool: GPUPool, minutes: int) -> np.ndarray:
    """Per minute: the servers the dedicated work needs at a full batch (prompt and output tokens per queue)."""
    full_itl = pool.itl_s(pool.slots)
    work = np.zeros(minutes)
    for p, c in zip(prompt, completion, strict=True):
        work = work + p * pool.prefill_s_per_token + c * full_itl
    return work / (pool.slots * MINUTE_S)


def schedule(demand: np.ndarray, a: Autoscale, span_s: float | None = None) -> Schedule:
    """The controller over a span's per-minute load (see the module's docstring)."""
    a = a.check()
    demand = np.asarray(demand, dtype=float)
    M = len(demand)
    span = float(span_s if span_s is not None else M * MINUTE_S)
    lo, hi = a.min_instances, a.max_instances
    need = np.ceil(demand / a.target_utilization - 1e-9) if M else np.zeros(0)
    desired = np.clip(need, lo, hi).astype(np.int64)
    w = a.window_minutes
    # requested[m] = max(desired[m-w .. m-1]), decisions before the start being the pool's minimum
    padded = np.concatenate([np.full(w, lo, dtype=np.int64), desired])[: M + w - 1]
    requested = (
        np.lib.stride_tricks.sliding_window_view(padded, w).max(axis=1)[:M] if M else np.zeros(0, dtype=np.int64)
    )
    times, counts = _serving(requested, a.scale_up_delay_s, lo)
    return Schedule(a, span, demand, desired, requested.astype(np.int64), times, counts)


def _serving(requested: np.ndarray, delay: float, lo: int) -> tuple[np.ndarray, np.ndarray]:
    """The serving count as (change times, counts): the fewest requested over [t - delay, t]."""
    M = len(requested)
    if not M:
        return np.zeros(1), np.array([lo], dtype=np.int64)
    starts = np.arange(M) * float(MINUTE_S)
    cand = np.unique(np.concatenate([starts, starts + delay]))
    cand = cand[cand < M * MINUTE_S]
    pad = math.ceil(delay / MINUTE_S) + 1
    rp = np.concatenate([np.full(pad, lo, dtype=np.int64), requested])
    hi_i = np.minimum(np.floor(cand / MINUTE_S).astype(np.int64), M - 1)
    lo_i = np.floor((cand - delay) / MINUTE_S).astype(np.int64)
    s = rp[lo_i + pad]
    for k in range(1, pad + 1):  # the window covers at most ceil(delay / 60) + 1 minutes
        j = lo_i + k
        s = np.where(j <= hi_i, np.minimum(s, rp[np.minimum(j, hi_i) + pad]), s)
    keep = np.concatenate([[True], s[1:] != s[:-1]])
    return cand[keep], s[keep]


def gpu_costs(fleet: Fleet, sched: Schedule, start, span_s: float) -> tuple[float, float]:
    """(GPU spend over the span, GPU spend a month) of the schedule's paid instance-seconds."""
    pool_of(fleet)
    paid = sched.paid_seconds()
    span_usd, month_usd = 0.0, 0.0
    for count, seconds in paid.items():
        eps = fleet.resized(count).endpoints() if count else []
        if not eps:
            continue
        span_usd += pricing.fixed_cost(eps, start, start + timedelta(seconds=seconds))
        month_usd += pricing.hourly_fixed(eps) * MONTH_HOURS * (seconds / span_s if span_s else 0.0)
    return span_usd, month_usd


def comparison_rows(fixed, scaled, serverless) -> list[dict]:
    """The fixed fleet, the autoscaled one and all-serverless on the same traffic: month cost, p95 first
    token, overflow share to serverless, GPU-hours (results of `simulate` or `fluid`)."""
    rows = []
    for label, r in (("Fixed fleet", fixed), ("Autoscaled", scaled), ("All serverless", serverless)):
        if r is None:
            continue
        s = r.summary()
        sched = r.scaling
        rows.append(
            {
                "option": label,
                "instances": (
                    f"{sched.autoscale.min_instances}–{sched.autoscale.max_instances} (mean {sched.mean_instances:.2f})"
                    if sched is not None
                    else str(s["gpus"])
                ),
                "monthly_cost_usd": s["monthly_cost_usd"],
                "gpu_cost_usd": s["gpu_cost_usd"],
                "metered_cost_usd": s["metered_cost_usd"],
                "p95_ttft_ms": s["p95_ttft_ms"],
                "overflow_share": s["overflow_share"],
                "meets_target": s["meets_target"],
            }
        )
    return rows


SEARCH_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9)  # target utilizations the optimizer tries
SEARCH_VERIFY = 3  # fluid-best settings the optimizer simulates at most, cheapest first


def _counts(top: int) -> list[int]:
    """0, 1, 2, 4, 8, … up to `top`, and `top`: the instance counts the optimizer tries."""
    out, c = [0], 1
    while c < top:
        out.append(c)
        c *= 2
    return sorted(set(out + [top]))


def optimize_settings(w, cfg, fleet: Fleet, policy: str, slo_ms: float, max_wait_ms, base: Autoscale, top: int) -> dict:
    """The cheapest autoscaling settings meeting the target, over bounded ranges: min in 0, 1, 2, 4 … top,
    max in 1, 2, 4 … top (min <= max), target utilization in SEARCH_TARGETS; the delay and cool-down as
    given. The fluid model prices every setting on the sample, then the discrete-event simulation checks
    the cheapest ones that meet the target (at most SEARCH_VERIFY)."""
    from sophia.sim.analytic import fluid  # the models import this module
    from sophia.sim.des import simulate
    from sophia.sim.minutes import minutes_of

    top = int(limits.check("autoscale_max", top, name="the optimizer's largest autoscaled pool"))
    big = fleet.resized(top)
    mins = minutes_of(w, cfg, big, policy)
    tried = []
    for lo in _counts(top):
        for hi in _counts(top):
            if hi < max(lo, 1):
                continue
            for tu in SEARCH_TARGETS:
                a = replace(base, min_instances=lo, max_instances=hi, target_utilization=tu)
                r = fluid(mins, big, policy, slo_ms, max_wait_ms, quantiles=False, w_for_costs=w, autoscale=a)
                tried.append((r.costs.monthly_usd, a, r.meets_target))
    ok = sorted((t for t in tried if t[2]), key=lambda t: (t[0], t[1].max_instances, t[1].min_instances))
    best = None
    for _, a, _ in ok[:SEARCH_VERIFY]:
        s = simulate(w, cfg, big, policy, slo_ms, max_wait_ms, autoscale=a).summary()
        if s["meets_target"]:
            best = {**a.as_dict(), **{k: s[k] for k in ("monthly_cost_usd", "p95_ttft_ms", "overflow_share")}}
            break
    return {
        "best": best,
        "searched": len(tried),
        "ranges": {"min_instances": [0, top], "max_instances": [1, top], "target_utilization": list(SEARCH_TARGETS)},
    }
