"""Per-minute aggregates of traffic under a plan: what the fluid model reads."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from sophia.config import Config
from sophia.money import pricing
from sophia.money.periods import MONTH_DAYS
from sophia.sim import fleet as fleet_mod
from sophia.sim import workload as traffic_mod
from sophia.sim.fleet import Fleet, GPUPool
from sophia.sim.policies import Plan, Policy, plan, serverless_endpoints, unloaded_ttft_s
from sophia.sim.workload import MINUTE_S, MINUTES_PER_DAY, Workload

PROMPT_QUANTILES = 32


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

    def mapped(self, fn: Callable[[np.ndarray], np.ndarray], **changes) -> Minutes:
        """These minutes with `fn` applied to every per-minute series (counts, tokens, costs)."""
        return replace(
            self,
            serverless_n=fn(self.serverless_n),
            serverless_metered=fn(self.serverless_metered),
            n=[fn(x) for x in self.n],
            prompt=[fn(x) for x in self.prompt],
            completion=[fn(x) for x in self.completion],
            overflow_metered=[fn(x) for x in self.overflow_metered],
            **changes,
        )

    def scaled(self, k: float) -> Minutes:
        """The same minutes at k times the volume (fluid counts need not be whole)."""
        return self.mapped(lambda x: x * k)

    def repeated(self, days: float, growth_per_month: float = 0.0) -> Minutes:
        """These minutes back to back until `days` are covered, times (1 + growth) per month."""
        total = max(1, int(round(days * MINUTES_PER_DAY)))
        reps = math.ceil(total / self.count)
        g = (1 + growth_per_month) ** (np.arange(total) / (MONTH_DAYS * MINUTES_PER_DAY))

        return self.mapped(lambda x: np.tile(x, reps)[:total] * g)


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
    eps = serverless_endpoints(cfg, pl.model) if w.n else np.zeros(0, dtype=object)
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
            cfg, fleet, cfg.routing.premium_model if policy == Policy.ROUTER else primary
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

    return one.mapped(lambda x: rates * (x[0] * per_request), start=np.datetime64(profile.start, "us"), label="profile")


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
