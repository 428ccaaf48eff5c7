"""Autoscaling in the simulator: the controller, both models, the comparison and the bounds."""

from __future__ import annotations

from dataclasses import fields as dc_fields
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sophia import config, sim
from sophia.sim import autoscale as A
from sophia.sim import fleet
from sophia.sim import workload as traffic
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
CFG = config.load(ROOT / "sophia.toml")
POLICY = "dedicated-first"

# Fluid vs discrete-event on the same autoscaled sample: the GPU-hours agree exactly (one schedule);
# the month cost within 2%, the overflow share within 0.02 (absolute), the p95 first token within 25%.
COST_REL, OVERFLOW_ABS, P95_REL = 0.02, 0.02, 0.25


@pytest.fixture(scope="module")
def day() -> traffic.Workload:
    prof = traffic.Profile(requests_per_day=1_500_000, days=0.25, burstiness=0.5, seed=3)
    return traffic.synthetic(prof)


def burst(rate_before: float, rate_after: float, at_s: float, span_s: float, seed: int = 0) -> traffic.Workload:
    """Flat Poisson traffic that jumps from one rate to another at `at_s`."""
    a = traffic.poisson(rate_before, at_s, seed=seed)
    b = traffic.poisson(rate_after, span_s - at_s, seed=seed + 1)
    arrays = {
        f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)])
        for f in dc_fields(a)
        if isinstance(getattr(a, f.name), np.ndarray) and len(getattr(a, f.name)) == a.n and f.name != "t"
    }
    return replace(a, t=np.concatenate([a.t, b.t + at_s]), span_s=span_s, **arrays)


def test_min_equal_max_is_the_fixed_fleet_exactly(day):
    f4 = fleet.homogeneous(CFG, 4)
    fixed = sim.simulate(day, CFG, f4, POLICY)
    scaled = sim.simulate(day, CFG, f4, POLICY, autoscale=A.Autoscale(4, 4, 0.5, 5, 300))
    assert scaled.costs == fixed.costs
    assert np.array_equal(scaled.route, fixed.route)
    assert np.array_equal(scaled.ttft_ms, fixed.ttft_ms)
    assert np.array_equal(scaled.latency_ms, fixed.latency_ms)
    assert scaled.utilization == fixed.utilization
    assert np.array_equal(scaled.minute_utilization, fixed.minute_utilization)
    assert scaled.scaling is not None and scaled.scaling.mean_instances == 4


def test_more_max_instances_never_raise_overflow(day):
    f1 = fleet.homogeneous(CFG, 1)
    prev_des, prev_fl = 1.0, 1.0
    for top in (1, 2, 3, 4, 6, 8):
        a = A.Autoscale(1, top, 0.7, 5, 120)
        d = sim.simulate(day, CFG, f1, POLICY, autoscale=a)
        f = sim.project(day, CFG, f1, POLICY, days=None, autoscale=a, quantiles=False)
        assert d.overflow_share <= prev_des + 1e-12
        assert f.overflow_share <= prev_fl + 1e-12
        prev_des, prev_fl = d.overflow_share, f.overflow_share
    assert prev_des < 0.05  # and enough of them serve nearly all of it (the rest: the minute it takes to react)


def test_a_burst_raises_instances_only_after_the_scale_up_delay():
    w = burst(1, 120, at_s=600, span_s=1800)
    delay = 90.0
    r = sim.simulate(w, CFG, fleet.homogeneous(CFG, 1), POLICY, autoscale=A.Autoscale(1, 20, 0.6, delay, 300))
    s = r.scaling
    assert s.requested[:10].max() == 1  # before the burst: the minimum
    first_up = s.times[np.flatnonzero(s.counts > 1)[0]]
    # The controller sees the burst's first minute at its end (660 s); its instances serve `delay` later.
    assert first_up == pytest.approx(660 + delay)
    assert s.serving_at(660 + delay - 1e-6) == 1
    assert int(s.requested[11]) > 1  # requested (and paid) from 660 s, while they provision
    assert s.serving_at(1700) > 1


def test_fluid_and_simulation_agree_on_an_autoscaled_case(day):
    a = A.Autoscale(1, 8, 0.7, 5, 300)
    f1 = fleet.homogeneous(CFG, 1)
    d = sim.simulate(day, CFG, f1, POLICY, autoscale=a)
    f = sim.project(day, CFG, f1, POLICY, days=None, autoscale=a)
    assert d.scaling.instance_hours == f.scaling.instance_hours
    assert d.costs.monthly_gpu_usd == f.costs.monthly_gpu_usd
    assert f.costs.monthly_usd == pytest.approx(d.costs.monthly_usd, rel=COST_REL)
    assert abs(f.overflow_share - d.overflow_share) <= OVERFLOW_ABS
    assert f.ttft["p95"] == pytest.approx(d.ttft_quantile(), rel=P95_REL)


def test_autoscaled_month_bills_requested_instances():
    w = burst(1, 120, at_s=600, span_s=1800)
    a = A.Autoscale(1, 20, 0.6, 60, 120)
    r = sim.simulate(w, CFG, fleet.homogeneous(CFG, 1), POLICY, autoscale=a)
    hourly = fleet.homogeneous(CFG, 1).pools[0].hourly_usd
    paid_h = float(r.scaling.requested.sum()) * 60 / 3600
    assert r.costs.gpu_usd == pytest.approx(paid_h * hourly, abs=1e-6)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"min_instances": 9, "max_instances": 4}, "must not exceed"),
        ({"max_instances": 0}, "from 1 to 1,024"),
        ({"min_instances": -1}, "from 0 to 1,024"),
        ({"min_instances": 1.5}, "whole number"),
        ({"target_utilization": 0.0}, "from 0.05 to 1"),
        ({"target_utilization": float("nan")}, "from 0.05 to 1"),
        ({"scale_up_delay_s": 3601}, "from 0 to 3,600"),
        ({"cool_down_s": -5}, "from 0 to 3,600"),
    ],
)
def test_bad_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg) as e:
        A.Autoscale(**{**{"min_instances": 1, "max_instances": 4}, **kw}).check()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("flags", "msg"),
    [
        (["--autoscale-min", "9", "--autoscale-max", "4"], "--autoscale-min (9) must not exceed --autoscale-max (4)"),
        (["--target-utilization", "2"], "--target-utilization must be a number from 0.05 to 1"),
        (["--cool-down", "-1"], "--cool-down must be a number from 0 to 3,600"),
        (["--scale-up-delay", "inf"], "--scale-up-delay must be a number from 0 to 3,600"),
        (["--autoscale-max", "2000"], "--autoscale-max must be a whole number from 1 to 1,024"),
    ],
)
def test_cli_refuses_bad_autoscaling_in_one_line(tmp_path, flags, msg):
    out = run_cli(
        "simulate",
        "--config",
        str(ROOT / "sophia.toml"),
        "--db",
        str(tmp_path / "x.duckdb"),
        "--profile",
        str(ROOT / "examples" / "traffic.toml"),
        *flags,
    )
    assert out.returncode != 0
    assert msg in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_pipeline_compares_fixed_autoscaled_and_serverless(day):
    prof = traffic.Profile(requests_per_day=400_000, days=0.1, burstiness=0.5, seed=4)
    rep = sim.run(sim.SimRequest(profile=prof, gpus=3, policy=POLICY, autoscale=A.Autoscale(1, 6, 0.7, 5, 300)), CFG)
    d = rep.summary()["autoscale"]
    assert [r["option"] for r in d["comparison"]] == ["Fixed fleet", "Autoscaled", "All serverless"]
    assert d["comparison"][2]["gpu_cost_usd"] == 0
    assert 1 <= d["mean_instances"] <= 6
    assert d["month"]["autoscale"]["max_instances"] == 6
