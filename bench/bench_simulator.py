"""Cost simulator speed.

Targets (issue 5): a discrete-event simulation of 1,000,000 requests <= 5 s; a 30-day projection
at 1-minute resolution <= 1 s; the optimizer over 0-32 GPUs on a day of traffic <= 10 s.
Baselines in the same run: a bare Python loop doing one heap push and pop per request (the
floor of any event loop in Python), and one numpy pass over the month's minutes.
Traffic: a synthetic day of 1M requests (daily rhythm, bursty), and the Azure conversation trace
(../shared/data, when present) repeated to a day.
"""

from __future__ import annotations

import heapq
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sophia import config, sim
from sophia.analysis import replay
from sophia.ingest import importers
from sophia.log.db import Database
from sophia.sim import fleet
from sophia.sim import workload as traffic

CFG = config.load(ROOT / "sophia.toml")
TRACE = ROOT.parent / "shared" / "data" / "traces" / "azure_llm_2023_conv.csv"


def timed(fn, runs=3):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def heap_floor(n: int) -> None:
    h: list[tuple[float, int]] = []
    for i in range(n):
        heapq.heappush(h, (float(i), i))
        if len(h) > 32:
            heapq.heappop(h)


def ok(x: float, limit: float) -> str:
    return "OK" if x <= limit else "OVER"


def conv_day() -> traffic.Workload | None:
    if not TRACE.exists():
        return None
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "bench.duckdb")
        importers.import_file(db, CFG, TRACE, "azure")
        with db.cursor() as cur:
            t = replay.load(cur)
        db.close()
    return traffic.extend(traffic.from_traffic(t, label="azure conv"), 1)


def main() -> None:
    profile = traffic.Profile(requests_per_day=1_000_000, days=1, weekly=(1.0,) * 7, burstiness=0.3, seed=1)
    t0 = time.perf_counter()
    w = traffic.synthetic(profile)
    keep = np.arange(min(w.n, 1_000_000))
    w = w.take(keep, span_s=w.span_s)
    print(f"setup: {w.n:,} synthetic requests over a day in {time.perf_counter() - t0:.2f} s")
    gpus8 = fleet.homogeneous(CFG, 8)

    base = timed(lambda: heap_floor(w.n))
    des = timed(lambda: sim.simulate(w, CFG, gpus8, "dedicated-first"))
    r = sim.simulate(w, CFG, gpus8, "dedicated-first")
    print(
        f"discrete-event simulation, {w.n:,} requests on 8 GPUs (dedicated-first): median {des:.2f} s "
        f"(target <= 5 s)  {ok(des, 5)}; baseline heap push+pop per request {base:.2f} s"
    )
    print(
        f"  {r.dedicated_share:.1%} dedicated, {r.overflow_share:.2%} overflowed, utilization {r.utilization:.1%} "
        f"(peak minute {r.peak_minute_utilization:.1%}), p95 TTFT {r.ttft_quantile():.0f} ms"
    )
    des_r = timed(lambda: sim.simulate(w, CFG, fleet.from_config(CFG), "router"))
    print(f"  same traffic, router policy on the configured fleet: median {des_r:.2f} s")

    minutes_base = timed(lambda: np.cumsum(np.ones(30 * 1440)), runs=5)
    proj = timed(lambda: sim.project(w, CFG, gpus8, "dedicated-first", days=30), runs=5)
    f = sim.project(w, CFG, gpus8, "dedicated-first", days=30)
    mins = sim.minutes_of(w, CFG, gpus8, "dedicated-first")
    fl_only = timed(lambda: sim.fluid(mins.repeated(30), gpus8, "dedicated-first"), runs=5)
    prof = timed(
        lambda: sim.fluid(
            sim.minutes_of_profile(profile, CFG, gpus8, "dedicated-first", days=30), gpus8, "dedicated-first"
        ),
        runs=5,
    )
    print(
        f"30-day projection at 1-minute resolution ({len(f.minute):,} minutes) from the 1M-request day: median "
        f"{proj:.2f} s (target <= 1 s)  {ok(proj, 1)}; of which the fluid model {fl_only:.2f} s; from a profile "
        f"{prof:.2f} s; baseline one numpy pass over the minutes {minutes_base * 1e3:.2f} ms"
    )
    print(f"  month: {f.summary()['monthly_cost_usd']:,.0f} USD, p95 TTFT {f.ttft.get('p95')} ms")
    one = fleet.homogeneous(CFG, 1)
    scale = sim.Autoscale(
        min_instances=2, max_instances=16, target_utilization=0.7, scale_up_delay_s=5, cool_down_s=300
    )
    fixed_m = timed(lambda: sim.project(w, CFG, gpus8, "dedicated-first", days=30), runs=5)
    auto_m = timed(lambda: sim.project(w, CFG, one, "dedicated-first", days=30, autoscale=scale), runs=5)
    a = sim.project(w, CFG, one, "dedicated-first", days=30, autoscale=scale)
    print(
        f"autoscaled month (2-16 instances, 70% target, 5 s delay, 300 s cool-down), fluid model: median "
        f"{auto_m:.2f} s (target <= 1 s)  {ok(auto_m, 1)}; baseline the fixed-fleet (8 GPUs) fluid month in the "
        f"same run {fixed_m:.2f} s; ratio {auto_m / fixed_m:.2f}x"
    )
    print(
        f"  autoscaled month: {a.summary()['monthly_cost_usd']:,.0f} USD, mean {a.scaling.mean_instances:.2f} "
        f"instances, p95 TTFT {a.ttft.get('p95')} ms"
    )

    day = conv_day()
    label = "the Azure conversation trace repeated to a day"
    if day is None:
        day = traffic.synthetic(traffic.Profile(requests_per_day=465_000, days=1, burstiness=0.3, seed=2))
        label = "a synthetic day (../shared/data absent)"
    steps = []
    one = fleet.homogeneous(CFG, 1)
    opt_t = timed(
        lambda: sim.optimize(
            day, CFG, one, "dedicated-first", max_gpus=32, progress=lambda frac, msg: steps.append(msg)
        ),
        runs=3,
    )
    o = sim.optimize(day, CFG, one, "dedicated-first", max_gpus=32)
    simulated = int((o.curve["method"] == "simulation").sum())
    print(
        f"optimizer over 0-32 GPUs, {label} ({day.n:,} requests): median {opt_t:.2f} s (target <= 10 s)  "
        f"{ok(opt_t, 10)}; best {o.best_gpus} GPUs, {simulated} simulations + 33 fluid evaluations, "
        f"{len(steps) // 3} progress reports per run"
    )
    opt_r = timed(lambda: sim.optimize(day, CFG, one, "dedicated", max_gpus=32), runs=3)
    o2 = sim.optimize(day, CFG, one, "dedicated", max_gpus=32)
    print(f"  all-dedicated policy: median {opt_r:.2f} s, best {o2.best_gpus} GPUs")


if __name__ == "__main__":
    main()
