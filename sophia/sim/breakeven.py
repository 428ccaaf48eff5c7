"""Break-even: monthly cost against traffic volume for all-serverless, dedicated-only and a hybrid."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sophia.config import Config
from sophia.money.periods import DAY_S, MONTH_DAYS
from sophia.sim import limits
from sophia.sim.analytic import fluid
from sophia.sim.costs import gpu_month_usd
from sophia.sim.fleet import Fleet
from sophia.sim.minutes import Minutes, minutes_of, sized_minutes
from sophia.sim.policies import (
    DEFAULT_SLO_MS,
    HYBRID_POLICIES,
    Policy,
    Progress,
    check_policy,
    check_slo,
    quiet,
)
from sophia.sim.workload import Workload

CURVES = {"all_serverless_usd": "all-serverless", "dedicated_only_usd": "dedicated-only", "hybrid_usd": "hybrid"}
# Every pair of curves: each baseline (all-serverless, dedicated-only) against the others.
PAIRS = (
    ("all_serverless_usd", "dedicated_only_usd"),
    ("all_serverless_usd", "hybrid_usd"),
    ("dedicated_only_usd", "hybrid_usd"),
)
VOLUMES = 25  # points of the default volume grid


@dataclass
class BreakEven:
    curves: pd.DataFrame  # per volume: requests/month, req/s, the three monthly costs, GPUs each uses
    crossovers: list[dict]
    slo_ms: float
    policy: str


def _multipliers(multipliers, metered_month: float, gpu_month: float) -> np.ndarray:
    """The volumes to price, as multiples of the workload's: by default from well below to well above
    the volume where one GPU-month buys as much as the metered bill."""
    if multipliers is None:
        k_star = gpu_month / metered_month if metered_month > 0 else 1.0
        lo, hi = min(0.1, k_star / 10), max(10.0, k_star * 20)
        lo = max(lo, hi / 1e5)
        ks = np.unique(np.append(np.geomspace(lo, hi, VOLUMES), 1.0))
    else:
        ks = np.sort(np.asarray(multipliers, dtype=float))
        limits.check("volumes", len(ks), name="the number of break-even volumes")
        for k in ks:
            limits.check("multiplier", float(k), name="a break-even volume multiplier")
    return ks


def _fewest_meeting(
    at: Callable[[int], Minutes], w: Workload, fleet: Fleet, k: float, slo_ms: float, start: int, max_gpus: int
) -> tuple[float, int | None]:
    """(monthly cost, GPUs) of the fewest GPUs from `start` meeting the target all-dedicated at volume k.

    More GPUs never serve worse, so a binary search over start … max_gpus finds them."""

    def run(n: int):
        return fluid(at(n).scaled(k), fleet.resized(n), Policy.DEDICATED, slo_ms, None, quantiles=False, w_for_costs=w)

    first = run(start)
    if first.meets_target:
        return first.costs.monthly_usd, start
    lo, hi, best = start + 1, max_gpus, None
    while lo <= hi:
        mid = (lo + hi) // 2
        r = run(mid)
        if r.meets_target:
            best, hi = (r, mid), mid - 1
        else:
            lo = mid + 1
    return (best[0].costs.monthly_usd, best[1]) if best else (math.nan, None)


def _cheapest_hybrid(
    at: Callable[[int], Minutes],
    w: Workload,
    fleet: Fleet,
    k: float,
    policy: str,
    slo_ms: float,
    max_wait_ms: float | None,
    max_gpus: int,
    gpu_month: float,
) -> tuple[float, int | None]:
    """(monthly cost, GPUs) of the cheapest fleet of 1 … max_gpus GPUs under `policy` at volume k."""
    other = fleet.other_monthly_usd
    best, best_n = math.inf, None
    for n in range(1, max_gpus + 1):
        if n * gpu_month + other >= best:  # more GPUs cost more than the best so far, whatever they save
            break
        r = fluid(
            at(n).scaled(k), fleet.resized(n), policy, slo_ms, max_wait_ms, quantiles=False, w_for_costs=w, target=False
        )
        if r.costs.monthly_usd < best:
            best, best_n = r.costs.monthly_usd, n
    return best, best_n


def break_even(
    w: Workload,
    cfg: Config,
    fleet: Fleet,
    slo_ms: float = DEFAULT_SLO_MS,
    policy: str = Policy.DEDICATED_FIRST,
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
    say = progress or quiet
    slo_ms = check_slo(slo_ms)
    check_policy(policy)
    if policy not in HYBRID_POLICIES:
        raise ValueError(
            f"the hybrid curve needs a policy that mixes tiers: router or dedicated-first (got {policy!r})"
        )
    if w.n == 0:
        raise ValueError("break-even needs traffic to scale: the selection has no request")
    base_sl = minutes_of(w, cfg, fleet.resized(0), Policy.SERVERLESS)
    ded_at = sized_minutes(w, cfg, fleet, Policy.DEDICATED)
    hyb_at = sized_minutes(w, cfg, fleet, policy)
    gpu_month = gpu_month_usd(fleet)
    metered_month = float(base_sl.serverless_metered.sum()) * w.monthly_factor
    ks = _multipliers(multipliers, metered_month, gpu_month)
    other = fleet.other_monthly_usd
    monthly_requests = w.n * w.monthly_factor
    rows = []
    n_ded = 1  # the fewest GPUs meeting the target grows with the volume
    exhausted = False  # no fleet up to max_gpus met the target at a lower volume: none will at a higher one
    for i, k in enumerate(ks):
        say(i / len(ks), f"Volume ×{k:.2g}: sizing the fleets…")
        sl_cost = float(base_sl.serverless_metered.sum()) * k * w.monthly_factor + other
        ded_cost, ded_n = math.nan, None
        if not exhausted:
            ded_cost, ded_n = _fewest_meeting(ded_at, w, fleet, k, slo_ms, n_ded, max_gpus)
        exhausted = ded_n is None
        n_ded = ded_n or n_ded
        hyb_cost, hyb_n = _cheapest_hybrid(hyb_at, w, fleet, k, policy, slo_ms, max_wait_ms, max_gpus, gpu_month)
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


def crossovers(df: pd.DataFrame, rel_tol: float = 0.002) -> list[dict]:
    """Where each pair of cost curves crosses, interpolated between grid volumes on a log scale.

    Costs within `rel_tol` of each other are a tie, not a crossing; a crossing through a run of
    ties is placed between the last volumes on either side of it.
    """
    out = []
    x = np.log(df["requests_per_month"].to_numpy())
    for a, b in PAIRS:
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
                        "requests_per_s": vol / (MONTH_DAYS * DAY_S),
                        "monthly_cost_usd": float(va[last] + frac * (va[j] - va[last])),
                        "cheaper_above": CURVES[b] if sign[j] > 0 else CURVES[a],
                    }
                )
            last = j
    return out


def pairs(be: BreakEven, rel_tol: float = 0.002) -> list[dict]:
    """Every pair of curves with what the sweep says of it: its crossovers, or which one is cheaper
    throughout (`crossover` None), or that they cannot be compared (dedicated-only met the target
    at no volume). Rows: between, crossover (a `crossovers` dict or None), verdict (a sentence)."""
    df = be.curves
    vol = df["requests_per_month"].to_numpy()
    out = []
    for a, b in PAIRS:
        names = (CURVES[a], CURVES[b])
        found = [c for c in be.crossovers if c["between"] == names]
        for c in found:
            other = names[1] if c["cheaper_above"] == names[0] else names[0]
            out.append(
                {"between": names, "crossover": c, "verdict": f"{other} is cheaper below, {c['cheaper_above']} above"}
            )
        if found:
            continue
        va, vb = df[a].to_numpy(dtype=float), df[b].to_numpy(dtype=float)
        ok = np.isfinite(va) & np.isfinite(vb)
        if not ok.any():
            verdict = "not comparable: no fleet up to the largest tried meets the target at any volume"
        else:
            d = va[ok] - vb[ok]
            tie = np.abs(d) <= rel_tol * np.maximum(np.abs(va[ok]), np.abs(vb[ok]))
            lo, hi = _volume(vol[ok].min()), _volume(vol[ok].max())
            if tie.all():
                verdict = f"the same cost from {lo} to {hi} requests/month"
            else:
                cheaper = names[0] if (d[~tie] < 0).all() else names[1]
                verdict = f"{cheaper} is cheaper from {lo} to {hi} requests/month (no crossover)"
                if tie.any():
                    verdict = f"{cheaper} is cheaper or the same from {lo} to {hi} requests/month (no crossover)"
        out.append({"between": names, "crossover": None, "verdict": verdict})
    return out


def _volume(v: float) -> str:
    return f"{v:,.0f}" if v < 1e6 else f"{v / 1e6:,.3g}M"
