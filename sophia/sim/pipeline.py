"""The run pipeline both faces call: traffic, fleet and policy in (a `SimRequest`), figures out (a `SimReport`).

The page calls `prepare` then `compute` (it shows progress in between and passes the log
selection it has cached); `sophia simulate` calls `simulate_command`, which reads the log and
the active policy version itself and answers with the CLI's JSON and text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from sophia.analysis import replay
from sophia.config import Config
from sophia.log import versions
from sophia.money.periods import MONTH_DAYS
from sophia.sim import fleet as fleet_mod
from sophia.sim import workload as traffic_mod
from sophia.sim.analytic import FluidResult, project
from sophia.sim.breakeven import BreakEven, break_even
from sophia.sim.des import SimResult, simulate
from sophia.sim.fleet import Fleet
from sophia.sim.policies import (
    DEFAULT_SLO_MS,
    HYBRID_POLICIES,
    POLICY_LABELS,
    Policy,
    Progress,
    check_policy,
    check_slo,
    plan,
    quiet,
)
from sophia.sim.sizing import Optimum, optimize
from sophia.sim.workload import Profile, Workload

DEFAULT_MAX_GPUS = 32


@dataclass
class SimRequest:
    """What to simulate, as plain values (the page's fields or the CLI's flags).

    Traffic is a selection of the log (`source`, `start`, `end`) or a synthetic `profile` (a
    profile file, or a `Profile`), scaled by `scale`. The fleet is given whole (`fleet`) or is
    the configured one with `gpus`, `gpu_hourly`, `throughput`, `max_concurrency` overridden.
    """

    source: list[str] | None = None
    profile: str | Path | Profile | None = None
    start: datetime | None = None
    end: datetime | None = None
    scale: float = 1.0
    fleet: Fleet | None = None
    gpus: int | None = None
    gpu_hourly: float | None = None
    throughput: float | None = None
    max_concurrency: int | None = None
    prices: dict[str, tuple[float, float]] | None = None  # serverless model -> USD per 1M input, output
    settings: dict | None = None  # a stored policy version's settings (None: the configuration's)
    policy: str = Policy.ROUTER
    slo_ms: float = DEFAULT_SLO_MS
    max_wait_ms: float | None = None
    project: bool = False  # the fluid model on the sample, and a month projection
    growth_per_month: float = 0.0
    optimize: bool = False
    max_gpus: int | None = None  # None: DEFAULT_MAX_GPUS, or `gpus` when larger
    break_even: bool = False

    def check(self) -> SimRequest:
        """Refuse a bad value before any work, naming the flag and what is allowed."""
        self.policy = check_policy(self.policy or Policy.ROUTER)
        self.slo_ms = check_slo(self.slo_ms)
        self.scale = traffic_mod.check_scale(self.scale)
        g = self.gpus
        if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 0):
            raise ValueError(f"--gpus must be a whole number >= 0 (got {g!r})")
        for flag, v, what in (
            ("--gpu-hourly", self.gpu_hourly, "a GPU's price per hour in USD"),
            ("--throughput", self.throughput, "output tokens per second of one GPU at saturation"),
        ):
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise ValueError(f"{flag} must be > 0 (got {v!r}): {what}")
        mc = self.max_concurrency
        if mc is not None and mc < 1:
            raise ValueError(f"--max-concurrency must be a whole number >= 1 (got {mc!r})")
        if self.profile and self.source:
            raise ValueError("give either --source (logged or imported traffic) or --profile (synthetic), not both")
        return self

    @property
    def sizing_limit(self) -> int:
        return self.max_gpus if self.max_gpus is not None else max(DEFAULT_MAX_GPUS, self.gpus or 0)

    @property
    def hybrid_policy(self) -> str:
        """The policy of the break-even's hybrid curve: this one if it mixes tiers, else dedicated-first."""
        return self.policy if self.policy in HYBRID_POLICIES else Policy.DEDICATED_FIRST


@dataclass
class Prepared:
    """A request's inputs, built and checked: the scaled workload, the fleet, the configuration."""

    request: SimRequest
    workload: Workload
    fleet: Fleet
    cfg: Config


@dataclass
class SimReport:
    """What a run found: the simulation, and the fluid model, break-even and optimum when asked for."""

    request: SimRequest
    workload: Workload
    fleet: Fleet
    des: SimResult | None = None  # the request's fleet, simulated (None: the optimum stands for it)
    fluid: FluidResult | None = None
    month: FluidResult | None = None
    break_even: BreakEven | None = None
    optimum: Optimum | None = None

    @property
    def chosen(self) -> SimResult:
        """The optimum's simulation when there is one, else the request's fleet."""
        if self.optimum is not None and self.optimum.best is not None:
            return self.optimum.best
        assert self.des is not None
        return self.des

    def summary(self) -> dict:
        """`sophia simulate --json`: the chosen simulation's figures, the optimum's curve, the traffic."""
        out = self.chosen.summary()
        if self.optimum is not None:
            out |= self.optimum.as_dict()
        w = self.workload
        out["traffic"] = {
            "label": w.label,
            "requests": w.n,
            "span_hours": round(w.span_s / 3600, 3),
            "scale": self.request.scale,
        }
        return out


def workload(req: SimRequest, traffic: replay.Traffic | None) -> Workload:
    """The request's traffic, scaled: its synthetic profile, else the log selection `traffic`."""
    if isinstance(req.profile, Profile):
        w = traffic_mod.synthetic(req.profile.check(), label="synthetic profile")
    elif req.profile:
        w = traffic_mod.synthetic(traffic_mod.load_profile(req.profile), label=f"profile {req.profile}")
    else:
        if traffic is None:
            raise ValueError(
                "no database to read traffic from: run `sophia demo` or `sophia import`, or pass --profile"
            )
        if not traffic.n:
            raise ValueError(
                "no request matches this selection of the log: pick other sources, widen the time "
                "range, or simulate a synthetic profile"
            )
        w = traffic_mod.from_traffic(
            traffic,
            np.datetime64(req.start) if req.start else None,
            np.datetime64(req.end) if req.end else None,
            label=", ".join(req.source) if req.source else "the whole log",
        )
    return traffic_mod.scale(w, req.scale, seed=0)


def configuration(req: SimRequest, cfg: Config) -> Config:
    """`cfg` with the request's serverless prices, under the request's policy version."""
    c = fleet_mod.with_prices(cfg, req.prices) if req.prices else cfg
    return versions.config_from(c, req.settings) if req.settings is not None else c


def prepare(req: SimRequest, cfg: Config, traffic: replay.Traffic | None = None) -> Prepared:
    """Build and check every input, so that a bad one is refused before the long work."""
    req.check()
    w = workload(req, traffic)
    c = configuration(req, cfg)
    fleet = (
        req.fleet.check()
        if req.fleet is not None
        else fleet_mod.homogeneous(c, req.gpus, req.gpu_hourly, req.throughput, req.max_concurrency)
    )
    if req.optimize and not fleet.pools:
        raise ValueError(
            "--optimize needs a GPU type: configure a dedicated endpoint or give --gpu-hourly and --throughput"
        )
    if _simulates_fleet(req):
        plan(w.take(np.arange(0)), c, fleet, req.policy)
    return Prepared(req, w, fleet, c)


def _simulates_fleet(req: SimRequest) -> bool:
    # An optimizing CLI run reports the optimum, so it simulates the given fleet only if none is found.
    return req.project or not req.optimize


class _Steps:
    """Progress over a run's steps, each step's own progress a share of the whole."""

    def __init__(self, count: int, progress: Progress, on_step: Callable[[str], None] | None) -> None:
        self.count, self.done, self.progress, self.on_step = count, 0, progress, on_step

    def run(self, label: str, fn: Callable[[Progress], object]):
        if self.on_step is not None:
            self.on_step(label)

        def sub(frac: float, msg: str) -> None:
            self.progress(min(1.0, (self.done + frac) / self.count), msg)

        t0 = time.perf_counter()
        out = fn(sub)
        self.done += 1
        self.progress(min(1.0, self.done / self.count), f"{label} ({time.perf_counter() - t0:.1f} s)")
        return out


def compute(
    prep: Prepared, progress: Progress | None = None, on_step: Callable[[str], None] | None = None
) -> SimReport:
    """Run what the request asks for: the simulation, the fluid model and month, break-even, the optimum."""
    req, w, fl, c = prep.request, prep.workload, prep.fleet, prep.cfg
    pol, slo, wait = req.policy, req.slo_ms, req.max_wait_ms
    with_be = req.break_even and w.n > 0
    count = int(_simulates_fleet(req)) + 2 * int(req.project) + int(with_be) + int(req.optimize)
    steps = _Steps(max(1, count), progress or quiet, on_step)
    rep = SimReport(req, w, fl)
    if _simulates_fleet(req):
        rep.des = steps.run("Discrete-event simulation of every request…", lambda p: simulate(w, c, fl, pol, slo, wait))
    if req.project:
        rep.fluid = steps.run("Fluid model on the same sample…", lambda p: project(w, c, fl, pol, slo, wait, days=None))
        rep.month = steps.run(
            f"A {MONTH_DAYS}-day projection at 1-minute resolution…",
            lambda p: project(w, c, fl, pol, slo, wait, growth_per_month=req.growth_per_month),
        )
    if with_be:
        rep.break_even = steps.run(
            "Break-even curves…",
            lambda p: break_even(
                w, c, fl, slo, req.hybrid_policy, max_gpus=req.sizing_limit, max_wait_ms=wait, progress=p
            ),
        )
    if req.optimize:
        rep.optimum = steps.run(
            "Optimizer…",
            lambda p: optimize(w, c, fl, pol, slo, max_gpus=req.sizing_limit, max_wait_ms=wait, progress=p),
        )
        if rep.optimum.best is None and rep.des is None:
            rep.des = simulate(w, c, fl, pol, slo, wait)
    return rep


def run(
    req: SimRequest, cfg: Config, traffic: replay.Traffic | None = None, progress: Progress | None = None
) -> SimReport:
    """`prepare` then `compute`."""
    return compute(prepare(req, cfg, traffic), progress)


def simulate_command(
    req: SimRequest, cfg: Config, db, on_wait: Callable[[float], None] | None = None
) -> tuple[dict, str]:
    """`sophia simulate`: (JSON-able result, human text).

    `db` (a `sophia.log.db.Database`, or None with a profile) gives the traffic and the active
    policy version; `on_wait` is told how long it has waited for a database another process holds.
    """
    req.check()
    active, traffic = cfg, None
    if db is not None:
        with db.cursor(on_wait=on_wait) as cur:
            _, active = versions.resolve(cur, cfg)
            if not req.profile:
                traffic = replay.load(cur, req.source)
    if traffic is not None and not traffic.n:
        which = f" from {', '.join(req.source)}" if req.source else ""
        raise ValueError(
            f"no request{which} in the log: check --source (see `sophia stats`), load traffic with "
            "`sophia demo` or `sophia import`, or pass --profile FILE"
        )
    out = run(req, active, traffic).summary()
    return out, text(out)


def text(d: dict) -> str:
    """The CLI's human answer for a `SimReport.summary()`."""

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
        lines += _optimum_lines(d)
    for note in d.get("notes", []):
        lines.append(f"note         {note}")
    return "\n".join(lines)


def _optimum_lines(d: dict) -> list[str]:
    best = d["best_gpus"]
    lines = [
        "optimum      "
        + (
            f"{best} GPU{'s' if best != 1 else ''} is the cheapest fleet meeting the target"
            if best is not None
            else f"no fleet up to {d['curve'][-1]['gpus']} GPUs meets the target"
        ),
        "  gpus   monthly USD   p95 TTFT ms   overflow   method",
    ]
    for r in d["curve"]:
        lines.append(
            f"  {r['gpus']:>4}   {r['monthly_cost_usd'] or 0:>11,.2f}   {r['p95_ttft_ms'] or 0:>11,.0f}"
            f"   {r['overflow_share'] or 0:>8.1%}   {r['method']}{'  ✓' if r['meets_target'] else ''}"
        )
    return lines
