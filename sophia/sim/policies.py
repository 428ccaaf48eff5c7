"""Inputs of a simulation: the policies, the latency target, the wait before overflow, and the plan.

The latency target (`slo_ms`) is on the time to first token: it is met when the p95 TTFT of
all requests is within it. A dedicated request overflows when its queueing wait would exceed
`max_wait_ms` (default: the target less the p95 unloaded time to first token on the GPUs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from sophia.analysis import replay
from sophia.config import Config
from sophia.routing import policy as policy_mod
from sophia.sim import fleet as fleet_mod
from sophia.sim.fleet import Fleet, GPUPool
from sophia.sim.workload import Workload
from sophia.vocab import Tier, words


class Policy(StrEnum):
    """Where a simulated fleet sends requests (the last two are named after the tier they use)."""

    ROUTER = "router"
    DEDICATED_FIRST = "dedicated-first"
    SERVERLESS = Tier.SERVERLESS.value
    DEDICATED = Tier.DEDICATED.value


POLICIES = words(Policy)
POLICY_LABELS = {
    Policy.ROUTER: "Router policy",
    Policy.DEDICATED_FIRST: "Dedicated first (overflow to serverless)",
    Policy.SERVERLESS: "All serverless",
    Policy.DEDICATED: "All dedicated",
}
HYBRID_POLICIES = (Policy.ROUTER, Policy.DEDICATED_FIRST)  # the policies that mix both tiers
DEFAULT_SLO_MS = 500.0
TARGET_QUANTILE = 0.95

Progress = Callable[[float, str], None]


def quiet(frac: float, msg: str) -> None:
    """A progress callback that says nothing."""


def check_policy(name: str) -> str:
    if name not in POLICIES:
        raise ValueError(f"policy {name!r} is not known: expected one of {', '.join(POLICIES)}")
    return name


def check_slo(slo_ms: float) -> float:
    if isinstance(slo_ms, bool) or not isinstance(slo_ms, (int, float)) or not math.isfinite(slo_ms) or slo_ms <= 0:
        raise ValueError(
            f"the latency target must be a number of milliseconds > 0 (got {slo_ms!r}): e.g. 500 for a "
            "p95 time to first token of half a second"
        )
    return float(slo_ms)


def max_wait_s(policy: str, slo_ms: float, max_wait_ms: float | None, unloaded_ttft_s: float = 0.0) -> float:
    """The wait before a dedicated request overflows: `max_wait_ms` when given, else the target less
    the 95th percentile of the unloaded time to first token on the GPUs (so that a request that
    waited its whole budget still gets its first token within the target, unless its prompt is
    among the longest 5%); no limit under all-dedicated."""
    if policy == Policy.DEDICATED:
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
    if policy == Policy.DEDICATED and not active:
        raise ValueError(
            "the all-dedicated policy needs at least one GPU (got 0): add GPUs, or choose "
            "dedicated-first, router or serverless"
        )
    pcfg = fleet_mod.policy_config(cfg, fleet)
    primary, premium = cfg.routing.serverless_model, cfg.routing.premium_model
    n = w.n
    group = np.full(n, -1, dtype=np.int64)
    groups: list[tuple[GPUPool, ...]] = []
    if policy == Policy.ROUTER:
        counts = replay.group_counts(w, pcfg)
        d = policy_mod.decide_table(w.prompt_chars, w.est_prompt_tokens, w.max_tokens, counts, pcfg)
        model = np.asarray(d["model"], dtype=object).copy()
        ded = d["tier"] == policy_mod.DEDICATED
        for g, p in enumerate(active):
            groups.append((p,))
            group[ded & (d["endpoint"] == p.name)] = g
        model[ded] = premium  # failover: a dedicated request that cannot be served goes to the premium model
    else:
        model = np.empty(n, dtype=object)
        model[:] = primary  # one shared str: np.full would make a copy of it for every request
        if policy != Policy.SERVERLESS and active:
            groups.append(active)
            group[:] = 0
    return Plan(policy, pcfg, group, groups, model)


def serverless_endpoints(cfg: Config, models: np.ndarray) -> np.ndarray:
    """The configured endpoint serving each serverless model."""
    out = np.empty(len(models), dtype=object)
    for m in pd.unique(models):
        out[models == m] = cfg.endpoint_for_model(m).name
    return out


def notes(fleet: Fleet) -> list[str]:
    """What the user should know about the fleet's figures (a throughput a batch cannot reach)."""
    out = []
    for p in fleet.active:
        if not p.reachable:
            out.append(
                f"{p.name}: {p.slots} requests at {p.itl_ms:g} ms per token make at most "
                f"{p.saturation_tps:,.0f} tokens/s, below the {p.throughput_tps:,.0f} tokens/s given; "
                "the simulation uses what the batch can make"
            )
    return out
