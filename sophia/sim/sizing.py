"""The optimizer: the cheapest number of GPUs that meets the latency target.

The fluid model prices every count; the discrete-event simulation then finds the smallest count
of GPUs that meets the p95 target (binary search: more GPUs never serve worse), walks from the
fluid model's cheapest count above it to the simulated cheapest, and compares with no GPU at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sophia.config import Config
from sophia.sim import limits
from sophia.sim.analytic import FluidResult, fluid
from sophia.sim.des import SimResult, simulate
from sophia.sim.fleet import Fleet
from sophia.sim.minutes import sized_minutes
from sophia.sim.policies import DEFAULT_SLO_MS, Policy, Progress, check_policy, check_slo, quiet
from sophia.sim.workload import Workload

EXTRA_SIMULATIONS = 5  # simulations the walk may take beyond the binary search (for progress only)
TIE_USD = 1e-9  # costs closer than this are equal


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


@dataclass
class _Search:
    """Simulations run so far, one per GPU count, and the full result of the cheapest meeting the target."""

    w: Workload
    cfg: Config
    fleet: Fleet
    policy: str
    slo_ms: float
    max_wait_ms: float | None
    say: Progress
    budget: int  # simulations expected (for progress)
    sims: dict[int, dict] = field(default_factory=dict)  # GPU count -> the simulation's summary
    kept: dict[int, SimResult] = field(default_factory=dict)

    def run(self, n: int) -> SimResult:
        return simulate(self.w, self.cfg, self.fleet.resized(n), self.policy, self.slo_ms, self.max_wait_ms)

    def des(self, n: int) -> dict:
        if n not in self.sims:
            done = len(self.sims)
            self.say(
                0.2 + 0.8 * min(done / self.budget, 0.95),
                f"Simulating {n} GPU{'s' if n != 1 else ''} ({self.w.n:,} requests)…",
            )
            r = self.run(n)
            self.sims[n] = r.summary()
            if r.meets_target and all(r.costs.monthly_usd < k.costs.monthly_usd for k in self.kept.values()):
                self.kept.clear()
                self.kept[n] = r
        return self.sims[n]

    def meets(self, n: int) -> bool:
        return self.des(n)["meets_target"]

    def cost(self, n: int) -> float:
        r = self.des(n)
        return r["monthly_cost_usd"] if r["meets_target"] else math.inf

    def result(self, n: int | None) -> SimResult | None:
        if n is None:
            return None
        return self.kept.get(n) or self.run(n)  # not kept: a tie with a count simulated earlier


def _check_max_gpus(max_gpus: int) -> None:
    if isinstance(max_gpus, float):  # a whole float such as 8.0 is a typing slip, not a count
        raise ValueError(f"the largest fleet to try must be {limits.RANGES['max_gpus'].allowed()} (got {max_gpus!r})")
    limits.check("max_gpus", max_gpus, name="the largest fleet to try")


def _fluid_sweep(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    policy: str,
    slo_ms: float,
    max_wait_ms: float | None,
    counts: list[int],
    say: Progress,
) -> dict[int, FluidResult]:
    """The fluid model at every count: the first 20% of the progress."""
    say(0.0, f"Pricing {len(counts)} fleet sizes with the fluid model…")
    fl: dict[int, FluidResult] = {}
    sized = sized_minutes(w, cfg, fleet, policy)
    for i, n in enumerate(counts):
        fl[n] = fluid(sized(n), fleet.resized(n), policy, slo_ms, max_wait_ms, quantiles=True, w_for_costs=w)
        fl[n].minute = fl[n].minute.iloc[:0].copy()  # the curve reads totals: a wide range keeps no per-minute frames
        if i % 8 == 7:
            say(0.2 * (i + 1) / len(counts), f"Fluid model: {i + 1} of {len(counts)} fleet sizes")
    return fl


def _smallest_meeting(search: _Search, fl: dict[int, FluidResult], gpu_counts: list[int]) -> int | None:
    """The smallest count of one GPU or more that the simulation says meets the target.

    With GPUs, more of them never serve worse, so a binary search finds it, starting from the
    fluid model's answer. (No GPU at all is another regime: everything is serverless.)
    """
    fluid_ok = [n for n in gpu_counts if fl[n].meets_target]
    guess = fluid_ok[0] if fluid_ok else gpu_counts[-1]
    if search.meets(guess):
        a, b = gpu_counts[0], guess
    else:
        a, b = guess + 1, None
        if a <= gpu_counts[-1] and search.meets(gpu_counts[-1]):
            b = gpu_counts[-1]
    if b is None:
        return None
    while a < b:
        mid = (a + b) // 2
        if search.meets(mid):
            b = mid
        else:
            a = mid + 1
    return b


def _cheapest(
    search: _Search, fl: dict[int, FluidResult], gpu_counts: list[int], n_min: int | None, with_zero: bool
) -> int | None:
    """From the fluid model's cheapest count at or above `n_min`, walk down the simulated cost; then
    no GPU at all, and anything simulated on the way that is cheaper."""
    best, best_cost = None, math.inf
    if n_min is not None:
        best = min((n for n in gpu_counts if n >= n_min), key=lambda n: (fl[n].costs.monthly_usd, n))
        best_cost = search.cost(best)
        improved = True
        while improved:
            improved = False
            for nb in (best - 1, best + 1):
                if n_min <= nb <= gpu_counts[-1] and search.cost(nb) < best_cost - TIE_USD:
                    best, best_cost, improved = nb, search.cost(nb), True
                    break
    if with_zero and search.cost(0) < best_cost - TIE_USD:
        best, best_cost = 0, search.cost(0)
    for n, r in search.sims.items():
        if r["meets_target"] and r["monthly_cost_usd"] < best_cost - TIE_USD:
            best, best_cost = n, r["monthly_cost_usd"]
    return best


def _curve(counts: list[int], fl: dict[int, FluidResult], sims: dict[int, dict]) -> pd.DataFrame:
    """Per GPU count: the fluid figures, and the simulation's where the search ran one."""
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
    return pd.DataFrame(rows)


def optimize(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    policy: str = Policy.DEDICATED_FIRST,
    slo_ms: float = DEFAULT_SLO_MS,
    max_gpus: int = 32,
    max_wait_ms: float | None = None,
    progress: Progress | None = None,
) -> Optimum:
    """The cheapest number of GPUs (0 … max_gpus of the fleet's first server type) meeting the target.

    The curve keeps both models' figures.
    """
    t0 = time.perf_counter()
    say = progress or quiet
    check_policy(policy)
    slo_ms = check_slo(slo_ms)
    _check_max_gpus(max_gpus)
    lo = 1 if policy == Policy.DEDICATED else 0
    counts = list(range(lo, max_gpus + 1))
    fl = _fluid_sweep(w, cfg, fleet, policy, slo_ms, max_wait_ms, counts, say)
    budget = max(1, math.ceil(math.log2(len(counts) + 1))) + EXTRA_SIMULATIONS
    search = _Search(w, cfg, fleet, policy, slo_ms, max_wait_ms, say, budget)
    gpu_counts = [n for n in counts if n >= 1]
    best = _cheapest(search, fl, gpu_counts, _smallest_meeting(search, fl, gpu_counts), with_zero=lo == 0)
    best_result = search.result(best)
    curve = _curve(counts, fl, search.sims)
    say(1.0, f"Done: {len(search.sims)} simulations, {len(counts)} fluid evaluations")
    return Optimum(best, curve, best_result, policy, slo_ms, time.perf_counter() - t0)
