"""The cost simulator: queueing theory, conservation, real traces, the optimizer, the CLI function, the page."""

from __future__ import annotations

import json
import math
import re
import tomllib
import tracemalloc
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from sophia import sim
from sophia.analysis import replay
from sophia.ingest import demo, importers
from sophia.log.db import Database
from sophia.money import pricing
from sophia.sim import fleet as fleet_mod
from sophia.sim import limits, queueing
from sophia.sim import workload as traffic_mod
from sophia.sim.fleet import Fleet, GPUPool
from tests.helpers import reference, reference_config, write_toml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "traces"
CFG = reference_config()
PAGE = str(ROOT / "pages" / "simulator.py")
APP = ROOT / "app.py"


def pool(count=2, **kw) -> GPUPool:
    t = fleet_mod.template(CFG)
    return replace(t, count=count, **kw)


def fleet(count=2, **kw) -> Fleet:
    return Fleet((pool(count, **kw),))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A log with 20,000 demo requests over 3 days (the router's own decisions recorded)."""
    path = tmp_path_factory.mktemp("sim") / "demo.duckdb"
    db = Database(path)
    demo.write(db, demo.generate(CFG, 20_000, 3, seed=5))
    with db.cursor() as cur:
        t = replay.load(cur)
    yield {"db": db, "path": path, "traffic": t}
    db.close()


@pytest.fixture(scope="module")
def bursty():
    """Half an hour of bursty traffic at ~17 requests/s: one GPU cannot keep up, three can."""
    p = traffic_mod.Profile(requests_per_day=1_500_000, days=0.02, hourly=(1.0,) * 24, burstiness=0.5, seed=3)
    return traffic_mod.synthetic(p)


# --- queueing theory -----------------------------------------------------------------------------


def _poisson_exponential(c: int, rho: float, n: int, seed: int) -> traffic_mod.Workload:
    """Poisson arrivals at rho·c per second, exponential service of mean 1 s (1000 tokens at 1 ms each).

    Both samples are scaled to their exact nominal means (moment matching), which takes away
    the noise of the sample's own rate without changing the shape of either distribution.
    """
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0, n)
    gaps *= (1.0 / (rho * c)) / gaps.mean()
    t = np.cumsum(gaps)
    svc = rng.exponential(1.0, n)
    tokens = np.maximum(np.rint(svc / svc.mean() * 1000), 0).astype(np.int64)
    z = np.zeros(n, dtype=np.int64)
    return traffic_mod.Workload(t, z, tokens, z, z, tokens.copy(), {}, float(t[-1]) + 1.0)


@pytest.mark.slow
@pytest.mark.parametrize(("rho", "n"), [(0.5, 600_000), (0.8, 1_000_000), (0.95, 4_000_000)])
def test_des_matches_erlang_c(rho, n):
    """c servers, one request each (no batching slowdown), Poisson arrivals, exponential service:
    the simulated mean wait and probability of waiting are within 5% of Erlang C."""
    c = 4
    w = _poisson_exponential(c, rho, n, seed=11)
    servers = Fleet((GPUPool("mmc", count=c, hourly_usd=1.0, throughput_tps=1000.0, max_concurrency=1, itl_ms=1.0),))
    r = sim.simulate(w, CFG, servers, "dedicated", slo_ms=1000)
    assert r.count(sim.DEDICATED) == n
    wait_s = r.wait_ms / 1000
    mean_service = w.completion_tokens.mean() / 1000
    p_wait, mean_wait = queueing.mmk_wait(c, rho * c, 1 / mean_service)
    assert abs((wait_s > 0).mean() / p_wait - 1) < 0.05, ((wait_s > 0).mean(), p_wait)
    assert abs(wait_s.mean() / mean_wait - 1) < 0.05, (wait_s.mean(), mean_wait)


def test_erlang_formulas():
    # Erlang C for 2 servers at a = 1: 1/3; M/M/1 P(wait) = rho.
    assert queueing.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert queueing.mmk_wait(1, 0.7, 1.0) == pytest.approx((0.7, 0.7 / 0.3))
    # With an unbounded wait the balking model is Erlang C.
    q = queueing.balking(8, np.array([4.0, 7.6]), 1.0, math.inf)
    for i, lam in enumerate([4.0, 7.6]):
        pw, mw = queueing.mmk_wait(8, lam, 1.0)
        assert q["p_wait"][i] == pytest.approx(pw) and q["mean_wait"][i] == pytest.approx(mw)


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.6, 1.0, 2.0])
def test_balking_model_matches_the_simulation(rho):
    """The fluid model's M/M/k with balking at the wait budget (any load) against the DES."""
    k, w_max, n = 8, 0.3, 400_000
    w = _poisson_exponential(k, rho, n, seed=5)
    servers = Fleet((GPUPool("mmk", count=k, hourly_usd=1.0, throughput_tps=1000.0, max_concurrency=1, itl_ms=1.0),))
    r = sim.simulate(w, CFG, servers, "dedicated-first", slo_ms=1000, max_wait_ms=w_max * 1000)
    q = queueing.balking(k, rho * k, w.completion_tokens.mean() / 1000, w_max)
    balked = r.count(sim.OVERFLOW) / n
    assert balked == pytest.approx(float(q["p_balk"][()]), rel=0.05, abs=1e-3)
    served_wait = np.nanmean(r.wait_ms) / 1000
    assert served_wait == pytest.approx(float(q["mean_wait"][()]), rel=0.05, abs=1e-3)
    for y in (0.0, 0.1, 0.2):
        emp = np.mean(np.nan_to_num(r.wait_ms / 1000, nan=np.inf) <= y)
        assert emp == pytest.approx(float(queueing.wait_cdf(y, q, w_max)), abs=0.01)


def test_batching_slows_tokens_down_as_the_batch_fills():
    p = pool(1, max_concurrency=32, throughput_tps=1500.0, itl_ms=20.0)
    assert p.itl_s(1) == pytest.approx(0.020)
    assert p.saturation_tps == pytest.approx(1500.0)
    assert p.itl_s(32) > p.itl_s(16) > p.itl_s(1)
    # Simultaneous requests on one server: the later ones join a bigger batch and decode slower.
    n = 20
    z = np.zeros(n, dtype=np.int64)
    w = traffic_mod.Workload(np.zeros(n), z, np.full(n, 100), z, z, np.full(n, 100), {}, 60.0)
    r = sim.simulate(w, CFG, Fleet((p,)), "dedicated", slo_ms=1000)
    assert np.all(np.diff(r.latency_ms) > 0)


# --- conservation ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", sim.POLICIES)
def test_every_request_is_served_exactly_once(bursty, policy):
    r = sim.simulate(bursty, CFG, fleet(2), policy, slo_ms=300)
    counts = [r.count(x) for x in (sim.SERVERLESS, sim.DEDICATED, sim.OVERFLOW)]
    assert sum(counts) == r.requests == bursty.n
    assert int(r.minute_requests.sum()) == bursty.n
    assert np.isfinite(r.latency_ms).all() and np.isfinite(r.ttft_ms).all()
    assert (r.ttft_ms <= r.latency_ms + 1e-9).all()
    ded = r.route == sim.DEDICATED
    assert np.isfinite(r.wait_ms[ded]).all() and np.isnan(r.wait_ms[~ded]).all()
    if policy == "dedicated":
        assert counts[2] == 0 and counts[0] == 0
    if policy == "serverless":
        assert counts == [bursty.n, 0, 0]
    s = r.summary()
    assert s["monthly_cost_usd"] == pytest.approx(s["fixed_cost_usd"] + s["metered_cost_usd"], abs=0.011)


def test_all_serverless_metered_cost_equals_the_replay_engine(demo_db):
    t = demo_db["traffic"]
    w = traffic_mod.from_traffic(t)
    r = sim.simulate(w, CFG, Fleet(), "serverless")
    everything_serverless = CFG.with_routing(complexity_threshold=1.0, cost_threshold_usd=1e12)
    rep = replay.replay(t, everything_serverless)
    assert rep.by_tier == {"serverless": t.n}
    assert round(r.costs.metered_usd, 2) == round(rep.metered_cost_usd, 2)
    assert r.costs.metered_usd == pytest.approx(rep.metered_cost_usd, abs=1e-9 * t.n)
    # The same traffic through the fluid model costs the same too.
    f = sim.project(w, CFG, Fleet(), "serverless", days=None)
    assert round(f.costs.metered_usd, 2) == round(rep.metered_cost_usd, 2)


def test_router_policy_is_the_routing_policy(demo_db):
    """Under the router policy the simulator sends to dedicated exactly what replay does."""
    t = demo_db["traffic"]
    w = traffic_mod.from_traffic(t)
    r = sim.simulate(w, CFG, fleet_mod.from_config(CFG), "router")
    rep = replay.replay(t, CFG)
    assert r.count(sim.DEDICATED) + r.count(sim.OVERFLOW) == rep.by_tier["dedicated"]
    # Recorded decisions that were not runtime-only are reproduced.
    ded = np.zeros(t.n, dtype=bool)
    order = np.argsort((t.ts - t.ts.min()) / np.timedelta64(1, "us"), kind="stable")
    ded[order] = r.route != sim.SERVERLESS
    keep = ~t.runtime_only
    assert (ded[keep] == t.recorded_dedicated[keep]).all()


def test_zero_traffic_costs_exactly_the_fixed_costs():
    f = Fleet((pool(3),), other_monthly=(("storage", 40.0), ("network", 12.5)))
    w = traffic_mod.empty(7 * traffic_mod.DAY_S)
    r = sim.simulate(w, CFG, f, "dedicated-first")
    gpu_month = pricing.hourly_fixed(f.endpoints()) * sim.MONTH_HOURS
    assert r.costs.metered_usd == 0
    assert r.costs.monthly_usd == pytest.approx(gpu_month + 52.5, abs=1e-9)
    start = np.datetime64(w.start, "s").astype(object)
    end = start + np.timedelta64(7, "D").astype(object)
    assert r.costs.gpu_usd == pricing.fixed_cost(f.endpoints(), start, end)
    assert r.costs.span_usd == pytest.approx(r.costs.gpu_usd + 52.5 * 7 / 30, abs=1e-9)
    fl = sim.project(w, CFG, f, "dedicated-first")
    assert fl.costs.monthly_usd == pytest.approx(gpu_month + 52.5, abs=1e-9)
    assert r.summary()["requests"] == 0 and r.summary()["meets_target"]


def test_more_gpus_never_increase_overflow(bursty):
    des, flu = [], []
    for n in range(0, 7):
        f = fleet(n)
        des.append(sim.simulate(bursty, CFG, f, "dedicated-first", slo_ms=200).overflow_share if n else 1.0)
        flu.append(sim.project(bursty, CFG, f, "dedicated-first", slo_ms=200, days=None).overflow_share if n else 1.0)
    assert des[1] > 0.01  # the test means something: one GPU cannot keep up
    assert all(b <= a for a, b in zip(des, des[1:], strict=False)), des
    assert all(b <= a + 1e-12 for a, b in zip(flu, flu[1:], strict=False)), flu


def test_deterministic_under_a_seed():
    p = traffic_mod.Profile(requests_per_day=50_000, days=0.1, burstiness=0.8)
    a, b = traffic_mod.synthetic(p, seed=9), traffic_mod.synthetic(p, seed=9)
    assert np.array_equal(a.t, b.t) and np.array_equal(a.completion_tokens, b.completion_tokens)
    assert not np.array_equal(a.t[:100], traffic_mod.synthetic(p, seed=10).t[:100])
    sa, sb = traffic_mod.scale(a, 2.5, seed=1), traffic_mod.scale(a, 2.5, seed=1)
    assert np.array_equal(sa.t, sb.t)
    ra, rb = (sim.simulate(x, CFG, fleet(1), "dedicated-first", 200) for x in (sa, sb))
    assert np.array_equal(ra.latency_ms, rb.latency_ms) and np.array_equal(ra.route, rb.route)


# --- traffic ---------------------------------------------------------------------------------


def test_scale_and_extend(bursty):
    two = traffic_mod.scale(bursty, 2, seed=0)
    assert two.n == 2 * bursty.n and two.span_s == bursty.span_s
    assert np.array_equal(np.sort(two.completion_tokens), np.sort(np.repeat(bursty.completion_tokens, 2)))
    assert np.all(np.diff(two.t) >= 0) and two.t.min() >= 0 and two.t.max() <= two.span_s
    half = traffic_mod.scale(bursty, 0.5, seed=0)
    assert abs(half.n / bursty.n - 0.5) < 0.02 and np.isin(half.t, bursty.t).all()
    assert traffic_mod.scale(bursty, 1) is bursty
    longer = traffic_mod.extend(bursty, 5 * bursty.span_s / traffic_mod.DAY_S)
    assert longer.span_s == pytest.approx(5 * bursty.span_s) and longer.n == 5 * bursty.n
    assert longer.minutes == 5 * bursty.minutes and np.all(np.diff(longer.t) >= 0)
    cut = traffic_mod.extend(bursty, 2.5 * bursty.span_s / traffic_mod.DAY_S)
    assert cut.n == 2 * bursty.n + np.count_nonzero(bursty.t < 0.5 * bursty.span_s)


def test_profiles(tmp_path):
    f = tmp_path / "profile.toml"
    f.write_text(
        "requests_per_day = 28800\ndays = 1\nburstiness = 0\ncompletion_tokens_median = 200\n"
        "weekly = [1, 1, 1, 1, 1, 1, 1]\n"
        "hourly = [" + ", ".join(["1"] * 24) + "]\n"
    )
    p = traffic_mod.load_profile(f)
    w = traffic_mod.synthetic(p)
    assert abs(w.n / 28_800 - 1) < 0.03 and w.span_s == traffic_mod.DAY_S
    fit = traffic_mod.fit_profile(w)
    assert fit.completion_tokens_median == pytest.approx(200, rel=0.05)
    assert fit.burstiness < 0.1
    bursty = traffic_mod.synthetic(replace(p, burstiness=1.0))
    assert traffic_mod.fit_profile(bursty).burstiness > 0.5
    grown = traffic_mod.minute_rates(replace(p, growth_per_month=1.0), days=30)
    assert grown[-1] / grown[0] == pytest.approx(2.0, rel=0.01)
    (tmp_path / "bad.toml").write_text("requests_per_hour = 5\n")
    with pytest.raises(ValueError, match="requests_per_hour is not a profile setting: expected one of"):
        traffic_mod.load_profile(tmp_path / "bad.toml")


# --- the fluid model, the month, the comparison ---------------------------------------------------


def test_fluid_model_is_close_to_the_simulation_on_the_same_sample(bursty):
    for n in (1, 3):
        r = sim.simulate(bursty, CFG, fleet(n), "dedicated-first", slo_ms=300)
        f = sim.project(bursty, CFG, fleet(n), "dedicated-first", slo_ms=300, days=None)
        cmp = sim.compare(r, f).set_index("metric")
        assert abs(cmp.loc["Monthly cost (USD)", "relative"]) < 0.05
        assert abs(cmp.loc["GPU utilization", "difference"]) < 0.05
        assert abs(cmp.loc["Overflow share", "difference"]) < 0.05
        assert f.requests == pytest.approx(bursty.n)
        assert f.dedicated + f.overflow + (f.serverless - f.overflow) == pytest.approx(bursty.n)


def test_thirty_day_projection_at_one_minute(bursty):
    f = sim.project(bursty, CFG, fleet(2), "dedicated-first", days=30, growth_per_month=0.2)
    assert len(f.minute) == 30 * 1440
    assert f.minute["minute"].iloc[1] - f.minute["minute"].iloc[0] == np.timedelta64(60, "s")
    gpu = pricing.hourly_fixed(fleet(2).endpoints()) * 720
    assert f.costs.monthly_gpu_usd == pytest.approx(gpu)
    assert f.costs.monthly_usd == pytest.approx(gpu + f.costs.metered_usd)  # 30 days: the span is the month
    first, last = f.minute["arrivals"].iloc[:1440].sum(), f.minute["arrivals"].iloc[-1440:].sum()
    assert last / first == pytest.approx(1.2 ** (29 / 30), rel=0.01)
    assert set(f.ttft) == {"p50", "p95", "p99"} and f.ttft["p50"] <= f.ttft["p95"] <= f.ttft["p99"]


# --- optimizer, break-even, reference --------------------------------------------------------------


@pytest.mark.slow
def test_optimizer_finds_the_cheapest_fleet_meeting_the_target(bursty):
    seen = []
    opt = sim.optimize(
        bursty, CFG, fleet(1), "dedicated", slo_ms=400, max_gpus=8, progress=lambda frac, msg: seen.append(frac)
    )
    brute = [n for n in range(1, 9) if sim.simulate(bursty, CFG, fleet(n), "dedicated", 400).meets_target]
    assert opt.best_gpus == brute[0]
    assert opt.best is not None and opt.best.meets_target and opt.best.gpus == brute[0]
    assert list(opt.curve["gpus"]) == list(range(1, 9))
    assert seen and seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:], strict=False))
    d = opt.as_dict()
    assert d["best_gpus"] == brute[0] and len(d["curve"]) == 8
    # No fleet meets an impossible target.
    none = sim.optimize(bursty, CFG, fleet(1), "dedicated", slo_ms=1, max_gpus=3)
    assert none.best_gpus is None and none.best is None


def test_break_even_curves_and_crossovers():
    w = traffic_mod.poisson(5, 1800, seed=1)
    be = sim.break_even(w, CFG, fleet(1), slo_ms=500, multipliers=np.geomspace(0.02, 20, 12), max_gpus=16)
    df = be.curves
    per_request = df["all_serverless_usd"] / df["requests_per_month"]
    assert np.allclose(per_request, per_request.iloc[0])  # serverless cost is linear in volume
    assert (np.diff(df["dedicated_only_gpus"].dropna()) >= 0).all()  # more traffic, never fewer GPUs
    cross = [c for c in be.crossovers if c["between"] == ("all-serverless", "dedicated-only")]
    assert len(cross) == 1 and cross[0]["cheaper_above"] == "dedicated-only"
    v = cross[0]["requests_per_month"]
    below = df[df["requests_per_month"] < v]
    above = df[df["requests_per_month"] > v]
    assert (below["all_serverless_usd"] < below["dedicated_only_usd"]).all()
    assert (above["all_serverless_usd"] > above["dedicated_only_usd"]).any()
    assert set(df["cheapest"]) == {"all-serverless", "dedicated-only", "hybrid"}
    for c in be.crossovers:  # each crossover separates the volumes where each curve is the cheaper
        a, b = ({v: k for k, v in sim.CURVES.items()}[x] for x in c["between"])
        after = df[df["requests_per_month"] > c["requests_per_month"]].iloc[0]
        before = df[df["requests_per_month"] < c["requests_per_month"]].iloc[-1]
        cheaper = a if c["cheaper_above"] == c["between"][0] else b
        other = b if cheaper == a else a
        assert after[cheaper] < after[other] and before[cheaper] > before[other]


def test_reference_scenario():
    out = sim.reference_scenario(CFG, 5, 20, seconds=120)
    before, after = out["before"], out["after"]
    assert before.gpus == 0 and before.costs.monthly_gpu_usd == 0 and before.dedicated_share == 0
    gpu = pricing.hourly_fixed(CFG.endpoints) * 720
    assert after.costs.monthly_gpu_usd == pytest.approx(gpu)
    assert after.requests > before.requests


# --- bad inputs --------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(bursty):
    with pytest.raises(ValueError, match=r"all-dedicated policy needs at least one GPU \(got 0\): add GPUs"):
        sim.simulate(bursty, CFG, fleet(0), "dedicated")
    with pytest.raises(ValueError, match=r"hourly price must be a number > 0 \(got -1.0\): enter the provider's"):
        sim.simulate(bursty, CFG, fleet(2, hourly_usd=-1.0), "dedicated-first")
    with pytest.raises(ValueError, match=r"input price must be a number >= 0 \(got -0.1\)"):
        fleet_mod.with_prices(CFG, {CFG.routing.serverless_model: (-0.1, 0.3)})
    with pytest.raises(ValueError, match=r"scale must be a number from 0.001 to 10,000 \(got 0\): 1 keeps the traffic"):
        traffic_mod.scale(bursty, 0)
    with pytest.raises(ValueError, match=r"latency target must be a number of milliseconds > 0"):
        sim.simulate(bursty, CFG, fleet(1), "router", slo_ms=0)
    with pytest.raises(ValueError, match=r"policy 'cheapest' is not known: expected one of router"):
        sim.simulate(bursty, CFG, fleet(1), "cheapest")
    with pytest.raises(ValueError, match=r"throughput must be a number > 0"):
        sim.simulate(bursty, CFG, fleet(1, throughput_tps=0.0), "dedicated")
    with pytest.raises(ValueError, match=r"number of GPUs must be a whole number >= 0 \(got -2\)"):
        sim.simulate(bursty, CFG, fleet(-2), "dedicated")
    with pytest.raises(ValueError, match=r"rate limit must be a number > 0"):
        sim.simulate(bursty, CFG, replace(fleet(1), rate_limit_rpm=0.0), "router")
    with pytest.raises(ValueError, match=r"the largest fleet to try must be a whole number from 1 to 1,024 \(got 0\)"):
        sim.optimize(bursty, CFG, fleet(1), max_gpus=0)


def test_serverless_rate_limit_delays_requests_over_it():
    z = np.zeros(300, dtype=np.int64)
    w = traffic_mod.Workload(
        np.sort(np.random.default_rng(0).random(300) * 60), z + 100, z + 10, z + 400, z + 100, z + 64, {}, 180.0
    )
    r = sim.simulate(w, CFG, replace(Fleet(), rate_limit_rpm=100.0), "serverless")
    delayed = r.ttft_ms - r.ttft_ms.min()
    assert sorted(set(np.round(delayed / 60_000).astype(int))) == [0, 1, 2]
    assert np.count_nonzero(delayed == 0) == 100


# --- real traces ---------------------------------------------------------------------------------


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/traces is absent (a fresh clone): real traces skipped")
@pytest.mark.parametrize("name", ["azure_llm_2023_conv", "azure_llm_2023_code"])
def test_azure_traces_simulate_end_to_end(tmp_path, name):
    db = Database(tmp_path / "azure.duckdb")
    source = importers.import_file(db, CFG, DATA / f"{name}.csv", "azure").source
    with db.cursor() as cur:
        t = replay.load(cur, [source])
    db.close()
    w = traffic_mod.from_traffic(t, label=name)
    assert w.n == t.n > 8000
    f = fleet(2)
    for policy in sim.POLICIES:
        r = sim.simulate(w, CFG, f, policy)
        assert sum(r.count(x) for x in range(3)) == w.n
        s = r.summary()
        assert s["monthly_cost_usd"] > 0 and s["p95_latency_ms"] > 0
    r = sim.simulate(w, CFG, f, "dedicated-first")
    per_minute = r.minute_utilization
    assert len(per_minute) == w.minutes and r.peak_minute_utilization > r.mean_minute_utilization > 0
    month = sim.project(w, CFG, f, "dedicated-first", days=30)
    assert len(month.minute) == 43_200 and month.peak_minute_utilization > month.utilization > 0


# --- the CLI function ----------------------------------------------------------------------------


def _args(**kw) -> sim.SimRequest:
    base = dict(
        source=None,
        profile=None,
        scale=1.0,
        gpus=None,
        gpu_hourly=None,
        throughput=None,
        max_concurrency=None,
        slo_ms=500.0,
        policy="router",
        optimize=False,
    )
    return sim.SimRequest(**(base | kw))


@pytest.mark.slow
def test_simulate_command(demo_db, tmp_path):
    db = demo_db["db"]
    data, text = sim.simulate_command(_args(gpus=2, policy="dedicated-first", scale=2.0), CFG, db)
    for key in (
        "monthly_cost_usd",
        "fixed_cost_usd",
        "metered_cost_usd",
        "requests",
        "dedicated_share",
        "overflow_share",
        "utilization",
        "p50_latency_ms",
        "p95_latency_ms",
    ):
        assert key in data, key
    assert data["requests"] == 2 * demo_db["traffic"].n and data["gpus"] == 2
    assert "month" in text and "GPU-hours" in text
    data, text = sim.simulate_command(_args(gpus=1, policy="dedicated", optimize=True, source=["demo"]), CFG, db)
    assert data["best_gpus"] is not None and len(data["curve"]) == 32 and "optimum" in text
    prof = tmp_path / "p.json"
    prof.write_text('{"requests_per_day": 5000, "days": 0.5}')
    data, _ = sim.simulate_command(_args(profile=str(prof), gpus=0, policy="serverless"), CFG, None)
    assert data["gpus"] == 0 and data["dedicated_share"] == 0
    with pytest.raises(ValueError, match="no request from nowhere in the log"):
        sim.simulate_command(_args(source=["nowhere"]), CFG, db)
    with pytest.raises(ValueError, match=r"--scale must be a number from 0.001 to 10,000 \(got 0\)"):
        sim.simulate_command(_args(scale=0.0), CFG, db)
    with pytest.raises(ValueError, match=r"--gpu-hourly must be a number > 0 and at most 1,000 \(got -2\)"):
        sim.simulate_command(_args(gpus=1, gpu_hourly=-2.0), CFG, db)


# --- the page -------------------------------------------------------------------------------------


@pytest.fixture
def page_env(tmp_path, monkeypatch):
    cfg_path = write_toml(tmp_path / "sophia.toml", reference())
    db_path = tmp_path / "page.duckdb"
    db = Database(db_path)
    demo.write(db, demo.generate(CFG, 3000, 2, seed=1))
    db.close()
    monkeypatch.setenv("SOPHIA_CONFIG", str(cfg_path))
    monkeypatch.setenv("SOPHIA_DB", str(db_path))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def _page() -> AppTest:
    if re.search(r"pages/simulator\.py", APP.read_text()):  # the app lists the page: run it inside the app
        at = AppTest.from_file(str(APP), default_timeout=90).run()
        return at.switch_page("pages/simulator.py")
    return AppTest.from_file(PAGE, default_timeout=90)


def _texts(at: AppTest) -> str:
    return "\n".join(
        str(e.value)
        for kind in ("markdown", "caption", "info", "warning", "error", "success")
        for e in getattr(at, kind)
    )


def test_page_runs_with_defaults(page_env):
    at = _page().run()
    at.button(key="sim_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Cost simulator"
    labels = [m.label for m in at.metric]
    assert "Monthly cost" in labels and "p95 first token" in labels
    assert len(at.get("plotly_chart")) >= 4
    assert any(b.label.startswith("Download") for b in at.get("download_button"))


def test_page_with_a_preset_and_a_saved_scenario(page_env):
    at = _page().run()
    at.selectbox(key="sim_gpu_preset").select_index(1)
    at.number_input(key="sim_gpus").set_value(3)
    at.button(key="sim_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    at.text_input(key="sim_name").set_value("three GPUs")
    at.button(key="sim_save").click().run()
    assert "three GPUs" in at.session_state["sim_scenarios"]
    assert "three GPUs" in _texts(at) or any("three GPUs" in str(d.value) for d in at.dataframe)


def test_page_simulates_a_synthetic_profile_on_an_empty_log(tmp_path, monkeypatch):
    cfg_path = write_toml(tmp_path / "sophia.toml", reference())
    monkeypatch.setenv("SOPHIA_CONFIG", str(cfg_path))
    monkeypatch.setenv("SOPHIA_DB", str(tmp_path / "empty.duckdb"))
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = _page().run()
        at.button(key="sim_run").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert "synthetic profile" in _texts(at)
        assert [m.value for m in at.metric if m.label == "Monthly cost"]
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


def test_page_says_what_is_wrong_with_an_impossible_input(page_env):
    at = _page().run()
    at.selectbox(key="sim_policy").set_value("dedicated")
    at.number_input(key="sim_gpus").set_value(0)
    at.button(key="sim_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    said = "\n".join(str(e.value) for e in at.error)
    assert "needs at least one GPU" in said
    at.number_input(key="sim_gpus").set_value(2)
    at.number_input(key="sim_hourly").set_value(-1.0)
    at.button(key="sim_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    said = "\n".join(str(e.value) for e in at.error)
    assert "USD per GPU-hour must be a number > 0" in said and "never free" in said


def test_scenario_export_makes_a_formula_name_inert(bursty):
    """A scenario named like a spreadsheet formula is exported as text, not as a formula."""
    from sophia.sim import scenarios

    f = fleet(1)
    rep = sim.SimReport(
        sim.SimRequest(),
        bursty,
        f,
        des=sim.simulate(bursty, CFG, f, "dedicated-first"),
        month=sim.project(bursty, CFG, f, "dedicated-first"),
    )
    name = '=HYPERLINK("http://x.example","click")'
    saved = {name: scenarios.scenario(rep, "h100", 2.99)}
    for frame in (scenarios.export_frame(saved, rep, None), scenarios.export_frame({}, rep, name)):
        text = scenarios.csv_bytes(frame).decode()
        lines = text.splitlines()
        assert lines[0].startswith("scenario,")
        assert not lines[1].startswith("=") and not lines[1].startswith('"=')
        assert "HYPERLINK" in lines[1]


# --- ranges, work limits, the CLI's answers --------------------------------------------------------

EXAMPLE = ROOT / "examples" / "traffic.toml"


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from sophia.cli.dispatch import main

    code = main(["simulate", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_range_is_stated_in_its_error():
    for key, r in limits.RANGES.items():
        bad = r.hi * 2 + 1
        with pytest.raises(ValueError, match=re.escape(f"must be {r.allowed()} (got ")):
            limits.check(key, bad)
        with pytest.raises(ValueError, match=re.escape(r.allowed())):
            limits.check(key, math.nan)
        assert limits.check(key, r.hi) == r.hi
    assert "from 0.001 to 10,000" in limits.RANGES["scale"].allowed()
    with pytest.raises(ValueError, match=r"GPUs must be a whole number from 0 to 1,024 \(got 2.5\)"):
        limits.check("gpus", 2.5)


def test_the_cli_refuses_a_huge_scale_in_one_line(capsys):
    code, out, err = _cli(capsys, "--profile", str(EXAMPLE), "--scale", "1000000")
    assert code == 1 and not out
    assert err.strip() == (
        "sophia: error: --scale must be a number from 0.001 to 10,000 (got 1,000,000): 1 keeps the traffic "
        "as recorded, 2 doubles its rate"
    )
    for argv, said in (
        (("--gpus", "5000"), "--gpus must be a whole number from 0 to 1,024 (got 5,000)"),
        (("--slo-ms", "nan"), "--slo-ms must be a number > 0 and at most 600,000 (got nan)"),
        (("--throughput", "0"), "--throughput must be a number > 0 and at most 1,000,000 (got 0)"),
        (("--max-concurrency", "5000"), "--max-concurrency must be a whole number from 1 to 4,096 (got 5,000)"),
    ):
        code, _, err = _cli(capsys, "--profile", str(EXAMPLE), *argv)
        assert code == 1 and len(err.strip().splitlines()) == 1 and said in err, err


def test_work_beyond_the_memory_budget_is_refused_before_any_request_is_drawn():
    """A profile of 20 million requests: refused with the limit, having allocated next to nothing."""
    prof = traffic_mod.Profile(requests_per_day=20_000_000, days=1)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"at most {limits.MAX_REQUESTS:,} fit in 1 GB") as e:
            sim.prepare(sim.SimRequest(profile=prof, gpus=2), CFG)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "lower --scale" in str(e.value)
    assert peak < 50e6, peak
    # A span too long for the budget (a log mixing years): refused by its minutes, with what fits.
    with pytest.raises(ValueError, match=r"the traffic spans 1,584,000 minutes \(1,100 days\): .* at most"):
        limits.check_work(limits.Work(requests=10_000, minutes=1_584_000, gpus=2, slots=32), "cli")


def test_an_optimizer_range_too_wide_says_how_far_it_may_go():
    prof = traffic_mod.Profile(requests_per_day=200_000, days=7)
    req = sim.SimRequest(profile=prof, gpus=2, policy="dedicated-first", optimize=True, max_gpus=1024, face="page")
    with pytest.raises(ValueError, match=r"the optimizer's range of 0–1,024 GPUs .* set Optimizer: up to GPUs to") as e:
        sim.prepare(req, CFG)
    most = int(re.search(r"to ([\d,]+) or less", str(e.value)).group(1).replace(",", ""))
    assert 1 <= most < 1024
    need = sim.pipeline.work(req, fleet(2), traffic_mod.expected_requests(prof), 10_080)
    assert limits.largest_range(need) == most
    sim.prepare(replace(req, max_gpus=most), CFG)  # within the range it names, the run is accepted


def test_the_memory_estimate_bounds_a_full_run():
    """Every request on the GPUs (the heaviest policy), with the fluid model, month, optimizer and break-even:
    the traced peak stays within what the estimate allows for it."""
    prof = traffic_mod.Profile(requests_per_day=150_000, days=1, burstiness=0.3)
    req = sim.SimRequest(
        profile=prof, gpus=2, policy="dedicated-first", project=True, optimize=True, max_gpus=8, break_even=True
    )
    prep = sim.prepare(req, CFG)
    w = prep.workload
    need = sim.pipeline.work(req, prep.fleet, w.n, w.minutes)
    tracemalloc.start()
    try:
        sim.compute(prep)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak + w.n * 48 <= need.memory_bytes, (peak, need.memory_bytes)  # 48 B: the workload, made before


def test_optimize_reports_the_gpus_asked_for(capsys):
    code, out, _ = _cli(capsys, "--profile", str(EXAMPLE), "--gpus", "4", "--optimize")
    assert code == 0
    assert "Router policy, 4 GPUs" in out
    assert re.search(r"optimum .*searched 0–32 × \S+; the figures above are the 4 GPUs asked for", out), out
    code, out, _ = _cli(capsys, "--profile", str(EXAMPLE), "--gpus", "4", "--optimize", "--json")
    data = json.loads(out)
    assert data["gpus"] == 4 and data["fleet_given"] and data["optimizer_range"] == [0, 32]
    assert data["optimum"]["gpus"] == data["best_gpus"]


def test_the_readme_profile_example_ships_and_runs(capsys):
    """README: `sophia simulate --profile examples/traffic.toml --policy dedicated --slo-ms 300 --optimize`."""
    p = traffic_mod.load_profile(EXAMPLE)
    assert p.requests_per_day == 200_000 and p.growth_per_month == 0.1
    code, out, err = _cli(capsys, "--profile", str(EXAMPLE), "--policy", "dedicated", "--slo-ms", "300", "--optimize")
    assert code == 0, err
    assert f"(profile {EXAMPLE})" in out and "All dedicated" in out and "optimum" in out


def test_log_selections_are_described():
    t0, t1 = datetime(2025, 1, 6), datetime(2025, 1, 13)
    assert sim.pipeline.selection_label(None, None, None) == "all sources, the whole log"
    assert sim.pipeline.selection_label(["demo"], t0, t1) == "demo, 2025-01-06 00:00 to 2025-01-13 00:00 UTC"
    from sophia.ui import sim_form

    now = datetime(2025, 1, 13, 12, 0)
    assert sim_form.selection({"sim_range": "Last 7 days"}, now)[3] == "all sources, last 7 days"
    assert sim_form.selection({"sim_range": "All time", "sim_sources": ["a", "b"]}, now)[3] == "a, b, the whole log"
    custom = {"sim_range": "Custom", "sim_dates": (t0.date(), t1.date())}
    assert sim_form.selection(custom, now)[3] == "all sources, 2025-01-06 to 2025-01-13 (UTC)"


def test_the_event_simulation_in_chunks_is_the_same(bursty, monkeypatch):
    whole = sim.simulate(bursty, CFG, fleet(2), "dedicated-first", 300)
    monkeypatch.setattr(queueing, "DES_CHUNK", 97)
    chunked = sim.simulate(bursty, CFG, fleet(2), "dedicated-first", 300)
    assert np.array_equal(whole.route, chunked.route) and np.array_equal(whole.ttft_ms, chunked.ttft_ms)


def test_break_even_lists_every_pair_and_sizes_like_a_linear_search():
    from sophia.sim import breakeven

    w = traffic_mod.poisson(5, 1800, seed=1)
    be = sim.break_even(w, CFG, fleet(1), slo_ms=500, multipliers=np.geomspace(0.02, 20, 12), max_gpus=16)
    rows = breakeven.pairs(be)
    assert {r["between"] for r in rows} == {
        ("all-serverless", "dedicated-only"),
        ("all-serverless", "hybrid"),
        ("dedicated-only", "hybrid"),
    }
    assert all(r["verdict"] for r in rows)
    # The fewest GPUs meeting the target at each volume: as a scan from one GPU up finds them.
    for k, got in zip(be.curves["multiplier"], be.curves["dedicated_only_gpus"], strict=True):
        scan = next(
            (
                n
                for n in range(1, 17)
                if sim.fluid(
                    sim.sized_minutes(w, CFG, fleet(1), "dedicated")(n).scaled(k),
                    fleet(1).resized(n),
                    "dedicated",
                    500,
                    quantiles=False,
                    w_for_costs=w,
                ).meets_target
            ),
            None,
        )
        assert (None if got != got else got) == scan, (k, got, scan)
    with pytest.raises(ValueError, match=r"the number of break-even volumes must be a whole number from 2 to 200"):
        sim.break_even(w, CFG, fleet(1), multipliers=[1.0])


def test_profile_ranges():
    for text, said in (
        ("days = 365\n", "profile days = 365 is not allowed: expected a number from 0.001 to 92"),
        ("requests_per_day = 1e9\n", "expected a number > 0 and at most 100,000,000"),
        ("max_tokens = 0\n", "profile max_tokens = 0 is not allowed: expected a whole number from 1 to 1,000,000"),
        ("seed = -1\n", "profile seed = -1 is not allowed"),
    ):
        with pytest.raises(ValueError, match=re.escape(said)):
            traffic_mod.profile_from_dict(tomllib.loads(text))
