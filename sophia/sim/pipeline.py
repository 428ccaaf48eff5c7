"""The run pipeline both faces call: traffic, fleet and policy in (a `SimRequest`), figures out (a `SimReport`).

The page calls `prepare` then `compute` (it shows progress in between and passes the log
selection it has cached); `sophia simulate` calls `simulate_command`, which reads the log and
the active policy version itself and answers with the CLI's JSON and text.
"""

from __future__ import annotations

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
from sophia.sim import autoscale as autoscale_mod
from sophia.sim import fleet as fleet_mod
from sophia.sim import limits
from sophia.sim import workload as traffic_mod
from sophia.sim.analytic import FluidResult, project
from sophia.sim.autoscale import Autoscale
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
    plan,
    quiet,
)
from sophia.sim.sizing import Optimum, optimize
from sophia.sim.workload import Profile, Workload

DEFAULT_MAX_GPUS = 32
SHARE_SAMPLE = 20_000  # requests the work estimate routes to learn the policy's dedicated share
OPTIMUM_KEYS = ("gpus", "monthly_cost_usd", "p95_ttft_ms", "meets_target", "dedicated_share", "overflow_share")


@dataclass
class SimRequest:
    """What to simulate, as plain values (the page's fields or the CLI's flags).

    Traffic is a selection of the log (`source`, `start`, `end`, described by `selection`) or a
    synthetic `profile` (a profile file, or a `Profile`), scaled by `scale`. The fleet is given
    whole (`fleet`) or is the configured one with `gpus`, `gpu_hourly`, `throughput`,
    `max_concurrency` overridden. Errors name the inputs as `face` does: the CLI's flags ("cli")
    or the page's fields ("page"). Every number's range is `limits.RANGES`.
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
    selection: str | None = None  # how the page describes its log selection (None: from source, start, end)
    face: str = "cli"
    autoscale: Autoscale | None = None  # also simulate the GPU type autoscaled, beside the fleet and all-serverless

    def check(self) -> SimRequest:
        """Refuse a bad value before any work, naming the input and its range."""
        f = self.face
        self.policy = check_policy(self.policy or Policy.ROUTER)
        self.slo_ms = limits.check("slo_ms", self.slo_ms, f)
        self.scale = limits.check("scale", self.scale, f)
        for key in ("gpus", "gpu_hourly", "throughput", "max_concurrency", "max_gpus"):
            if getattr(self, key) is not None:
                setattr(self, key, limits.check(key, getattr(self, key), f))
        if self.max_wait_ms is not None:
            self.max_wait_ms = limits.check("max_wait_ms", self.max_wait_ms, f)
        self.growth_per_month = limits.check("growth", self.growth_per_month, f)
        if self.autoscale is not None:
            self.autoscale = self.autoscale.check(f)
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
    scaled: SimResult | None = None  # the GPU type autoscaled (when asked for)
    scaled_month: FluidResult | None = None  # its month, from the fluid model
    serverless: SimResult | None = None  # all-serverless on the same traffic (beside the autoscaled run)
    scaled_optimum: dict | None = None  # the optimizer's autoscaling settings (when both are asked for)

    def comparison(self) -> list[dict]:
        """Fixed fleet, autoscaled and all-serverless side by side (empty without autoscaling)."""
        if self.scaled is None:
            return []
        return autoscale_mod.comparison_rows(self.des, self.scaled, self.serverless)

    def summary(self) -> dict:
        """`sophia simulate --json`: the figures of the fleet asked for, the optimum and its curve, the traffic.

        The optimizer never replaces the fleet asked for: its answer is `best_gpus`, `optimum` (that
        fleet's figures) and `curve`, searched over `optimizer_range`."""
        assert self.des is not None
        out = self.des.summary()
        out["fleet"] = self.fleet.label or f"{self.fleet.gpus} GPUs"
        if self.optimum is not None:
            opt = self.optimum
            out |= opt.as_dict()
            out["optimizer_range"] = [int(opt.curve["gpus"].min()), int(opt.curve["gpus"].max())]
            out["optimizer_gpu_type"] = self.fleet.pools[0].name
            out["fleet_given"] = self.request.gpus is not None or self.request.fleet is not None
            best = opt.best.summary() if opt.best is not None else None
            out["optimum"] = {k: best[k] for k in OPTIMUM_KEYS} if best else None
        if self.scaled is not None:
            out["autoscale"] = {
                **self.scaled.scaling.summary(),
                "comparison": self.comparison(),
                "month": self.scaled_month.summary() if self.scaled_month is not None else None,
            }
            if self.scaled_optimum is not None:
                out["autoscale"]["optimum"] = self.scaled_optimum
        w = self.workload
        out["traffic"] = {
            "label": w.label,
            "requests": w.n,
            "span_hours": round(w.span_s / 3600, 3),
            "scale": self.request.scale,
        }
        return out


def selection_label(sources: list[str] | None, start: datetime | None, end: datetime | None) -> str:
    """A log selection in words: its sources and its time range."""
    who = ", ".join(sources) if sources else "all sources"
    if start is None and end is None:
        return f"{who}, the whole log"
    fmt = "%Y-%m-%d %H:%M"
    if start is None:
        return f"{who}, up to {end:{fmt}} UTC"
    if end is None:
        return f"{who}, from {start:{fmt}} UTC"
    return f"{who}, {start:{fmt}} to {end:{fmt}} UTC"


def _profile(req: SimRequest) -> tuple[Profile, str] | None:
    if isinstance(req.profile, Profile):
        return req.profile.check(), "synthetic profile"
    if req.profile:
        return traffic_mod.load_profile(req.profile), f"profile {req.profile}"
    return None


def _log_workload(req: SimRequest, traffic: replay.Traffic | None) -> Workload:
    if traffic is None:
        raise ValueError("no database to read traffic from: run `sophia demo` or `sophia import`, or pass --profile")
    if not traffic.n:
        raise ValueError(
            "no request matches this selection of the log: pick other sources, widen the time "
            "range, or simulate a synthetic profile"
        )
    return traffic_mod.from_traffic(
        traffic,
        np.datetime64(req.start) if req.start else None,
        np.datetime64(req.end) if req.end else None,
        label=req.selection or selection_label(req.source, req.start, req.end),
    )


def dedicated_share(w: Workload, cfg: Config, fleet: Fleet, policy: str, sample: int = SHARE_SAMPLE) -> float:
    """The share of requests the policy sends to the GPUs (from a sample of `w`): what the work estimate reads."""
    if policy == Policy.SERVERLESS or not fleet.pools or not w.n:
        return 0.0
    if policy != Policy.ROUTER:
        return 1.0
    idx = np.arange(w.n)
    if w.n > sample:
        idx = np.sort(np.random.default_rng(0).choice(w.n, sample, replace=False))
    some = fleet if fleet.gpus else fleet.resized(1)
    return float(np.mean(plan(w.take(idx), cfg, some, policy).group >= 0))


def work(req: SimRequest, fleet: Fleet, requests: float, minutes: int, share: float = 1.0) -> limits.Work:
    """What a run of `req` on `fleet` implies, for `requests` over `minutes` (before scaling), `share` of
    them sent to the GPUs."""
    sweeps = req.optimize or req.break_even
    return limits.Work(
        requests=requests * req.scale,
        minutes=minutes,
        gpus=fleet.gpus,
        slots=max((p.slots for p in fleet.pools), default=1),
        max_gpus=req.sizing_limit if sweeps else 0,
        optimize=req.optimize,
        volumes=limits.VOLUMES_DEFAULT if req.break_even else 0,
        project=req.project,
        dedicated_share=share,
    )


def workload(
    req: SimRequest, traffic: replay.Traffic | None, fleet: Fleet | None = None, cfg: Config | None = None
) -> Workload:
    """The request's traffic, scaled: its synthetic profile, else the log selection `traffic`.

    With `fleet` and `cfg`, the run's work is estimated first (`limits.check_work`) and refused
    before any request is drawn or copied when it is too much."""
    prof = _profile(req)
    if prof is not None:
        profile, label = prof
        if fleet is not None and cfg is not None:
            minutes = max(1, round(profile.days * traffic_mod.MINUTES_PER_DAY))
            sample = traffic_mod.poisson(SHARE_SAMPLE / 3600, 3600, profile, seed=profile.seed)
            share = dedicated_share(sample, cfg, fleet, req.policy)
            need = work(req, fleet, traffic_mod.expected_requests(profile), minutes, share)
            limits.check_work(need, req.face)
        w = traffic_mod.synthetic(profile, label=label)
    else:
        w = _log_workload(req, traffic)
        if fleet is not None and cfg is not None:
            limits.check_work(work(req, fleet, w.n, w.minutes, dedicated_share(w, cfg, fleet, req.policy)), req.face)
    return traffic_mod.scale(w, req.scale, seed=0)


def configuration(req: SimRequest, cfg: Config) -> Config:
    """`cfg` with the request's serverless prices, under the request's policy version."""
    c = fleet_mod.with_prices(cfg, req.prices) if req.prices else cfg
    return versions.config_from(c, req.settings) if req.settings is not None else c


def prepare(req: SimRequest, cfg: Config, traffic: replay.Traffic | None = None) -> Prepared:
    """Build and check every input, and estimate the work, so that a bad one is refused before the long work."""
    req.check()
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
    w = workload(req, traffic, fleet, c)
    plan(w.take(np.arange(0)), c, fleet, req.policy)
    return Prepared(req, w, fleet, c)


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
    scaled = req.autoscale is not None and bool(fl.pools)
    count = 1 + 2 * int(req.project) + int(with_be) + int(req.optimize) + 2 * int(scaled)
    steps = _Steps(count, progress or quiet, on_step)
    rep = SimReport(req, w, fl)
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
    if scaled:
        a = req.autoscale
        rep.scaled = steps.run(
            "Autoscaled fleet, and all-serverless, on the same traffic…",
            lambda p: simulate(w, c, fl, pol, slo, wait, autoscale=a),
        )
        rep.serverless = simulate(w, c, Fleet(), Policy.SERVERLESS, slo)
        rep.scaled_month = steps.run(
            f"The autoscaled fleet over {MONTH_DAYS} days (fluid model)…",
            lambda p: project(w, c, fl, pol, slo, wait, growth_per_month=req.growth_per_month, autoscale=a),
        )
        if req.optimize:
            rep.scaled_optimum = autoscale_mod.optimize_settings(w, c, fl, pol, slo, wait, a, req.sizing_limit)
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
        f"({d['traffic']['label']})",  # a scaled workload's label ends with its ×scale
        f"policy       {POLICY_LABELS[d['policy']]}, {_gpus(d['gpus'])} ({d.get('fleet') or 'the fleet asked for'})",
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
    if "autoscale" in d:
        lines += _autoscale_lines(d["autoscale"])
    for note in d.get("notes", []):
        lines.append(f"note         {note}")
    return "\n".join(lines)


def _gpus(n: int) -> str:
    return f"{n} GPU{'s' if n != 1 else ''}"


def _optimum_lines(d: dict) -> list[str]:
    best, (lo, hi) = d["best_gpus"], d["optimizer_range"]
    above = f"the {_gpus(d['gpus'])} asked for" if d.get("fleet_given") else f"the configured fleet, {_gpus(d['gpus'])}"
    searched = f"searched {lo}–{hi} × {d.get('optimizer_gpu_type', 'GPU')}; the figures above are {above}"
    if best is not None:
        o = d["optimum"]
        head = (
            f"{_gpus(best)} is the cheapest fleet meeting the target: ${o['monthly_cost_usd']:,.2f} a month, "
            f"p95 first token {o['p95_ttft_ms'] or 0:,.0f} ms ({searched})"
        )
    else:
        head = f"no fleet of {lo}–{hi} GPUs meets the target ({searched})"
    lines = ["optimum      " + head, "  gpus   monthly USD   p95 TTFT ms   overflow   method"]
    for r in d["curve"]:
        lines.append(
            f"  {r['gpus']:>4}   {r['monthly_cost_usd'] or 0:>11,.2f}   {r['p95_ttft_ms'] or 0:>11,.0f}"
            f"   {r['overflow_share'] or 0:>8.1%}   {r['method']}{'  ✓' if r['meets_target'] else ''}"
        )
    return lines


def _autoscale_lines(a: dict) -> list[str]:
    head = (
        f"autoscale    {a['min_instances']}–{a['max_instances']} instances at {a['target_utilization']:.0%} target "
        f"utilization, scale-up delay {a['scale_up_delay_s']:g} s, cool-down {a['cool_down_s']:g} s: "
        f"mean {a['mean_instances']:.2f} instances, peak {a['peak_instances']}, "
        f"{a['instance_hours']:,.2f} instance-hours"
    )
    lines = [head, "  option           instances             monthly USD   p95 TTFT ms   overflow"]
    for r in a["comparison"]:
        lines.append(
            f"  {r['option']:<15}  {r['instances']:<20}  {r['monthly_cost_usd']:>11,.2f}   "
            f"{r['p95_ttft_ms'] or 0:>11,.0f}   {r['overflow_share']:>8.1%}{'  ✓' if r['meets_target'] else ''}"
        )
    if a.get("month"):
        lines.append(f"  autoscaled month (fluid model): ${a['month']['monthly_cost_usd']:,.2f}")
    if a.get("optimum"):
        o = a["optimum"]
        if o.get("best") is None:
            lines.append(f"  optimizer    no autoscaling setting searched meets the target ({o['searched']} tried)")
        else:
            b = o["best"]
            lines.append(
                f"  optimizer    min {b['min_instances']}, max {b['max_instances']}, "
                f"target {b['target_utilization']:.0%}: "
                f"${b['monthly_cost_usd']:,.2f} a month, p95 first token {b['p95_ttft_ms'] or 0:,.0f} ms "
                f"({o['searched']} settings tried with the fluid model, the best simulated)"
            )
    return lines
