"""Cost truth: GPU-hours only while the fleet ran, savings against named baselines, forecasts
that see the current hour. Figures are checked against computations written here."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sophia import config
from sophia.budgets import model as bmod
from sophia.budgets import spend
from sophia.ingest import importers
from sophia.log import append, fleet_store, metered, schema, stats
from sophia.log.db import Database
from sophia.money import baselines, fleet, pricing
from sophia.money.fleet import FleetPeriod
from sophia.runtime import Runtime
from tests.helpers import merge, reference, reference_config, write_toml
from tests.test_analytics import handmade

CFG = reference_config()
HOURLY = sum(e.hourly_usd for e in CFG.tier_endpoints("dedicated"))
T0 = datetime(2026, 6, 1)


def _append(cur, rows: list[dict]) -> None:
    append.append(cur, schema.to_arrow(rows))


def h(n: float) -> timedelta:
    return timedelta(hours=n)


# --- the fleet's history, pure ----------------------------------------------------------------


def test_overlapping_periods_of_one_endpoint_are_paid_once():
    ps = [FleetPeriod("a", 2.0, T0, T0 + h(10)), FleetPeriod("a", 2.0, T0 + h(5), T0 + h(20), "demo")]
    assert fleet.charged(ps, T0, T0 + h(100), T0 + h(100)) == pytest.approx(40.0)
    # A selection pays the spans of the sources it reads: the configured fleet for live traffic.
    live = fleet.charged(ps, T0, T0 + h(100), T0 + h(100), sources=["api"], live_sources=["api"])
    assert live == pytest.approx(20.0)
    assert fleet.charged(ps, T0, T0 + h(100), T0 + h(100), sources=["demo"], live_sources=["api"]) == 30.0


def test_whole_hours_charge_every_started_hour_and_never_past_now():
    ps = [FleetPeriod("a", 3.0, T0 + timedelta(minutes=30), None)]
    now = T0 + h(2) + timedelta(minutes=1)  # 1 h 31 min of running
    assert fleet.charged(ps, T0, T0 + h(24), now, whole_hours=True) == pytest.approx(6.0)
    assert fleet.charged(ps, T0, T0 + h(24), now) == pytest.approx(3.0 * (91 / 60))


def test_where_two_prices_overlap_the_higher_is_paid():
    ps = [FleetPeriod("a", 1.0, T0, T0 + h(4)), FleetPeriod("a", 5.0, T0 + h(2), T0 + h(3), "x")]
    assert fleet.charged(ps, T0, T0 + h(4), T0 + h(9)) == pytest.approx(1 * 3 + 5 * 1)


# --- the configured fleet kept in step with the file ---------------------------------------


def _db(tmp_path: Path) -> Database:
    return Database(tmp_path / "f.duckdb")


def test_an_endpoint_added_today_is_not_charged_for_last_year(tmp_path):
    db = _db(tmp_path)
    year_ago, today = T0 - timedelta(days=365), T0
    small = config.parse(
        merge(reference(), endpoints=[e for e in reference()["endpoints"] if e["name"] != "sophia-production"])
    )
    with db.cursor() as cur:
        _append(cur, [handmade(1, ts=year_ago, source="api")])
        fleet_store.sync(cur, small, year_ago)  # the first fleet: from the first live request
        fleet_store.sync(cur, CFG, today)  # the bulk endpoint joins today
        ps = fleet_store.periods(cur)
    by_ep = fleet.charged_by_endpoint(ps, year_ago, today + h(10), today + h(10))
    bulk = CFG.endpoint("sophia-production").hourly_usd
    assert by_ep["sophia-production"] == pytest.approx(bulk * 10)
    assert by_ep["sophia-ai-core"] == pytest.approx(CFG.endpoint("sophia-ai-core").hourly_usd * (365 * 24 + 10))
    # Leaving the file closes its period; syncing again changes nothing.
    with db.cursor() as cur:
        fleet_store.sync(cur, small, today + h(10))
        fleet_store.sync(cur, small, today + h(20))
        ps = fleet_store.periods(cur)
    assert fleet.charged_by_endpoint(ps, year_ago, today + h(50), today + h(50))["sophia-production"] == (
        pytest.approx(bulk * 10)
    )
    db.close()


def test_reading_figures_writes_nothing_and_sees_the_configured_fleet(tmp_path):
    db = _db(tmp_path)
    with db.cursor() as cur:
        _append(cur, [handmade(1, ts=T0, source="api"), handmade(2, ts=T0 + h(5), source="api")])
        read = stats.stats(cur, CFG, None, now=T0 + h(6))
        assert cur.execute("SELECT count(*) FROM fleet_periods").fetchone()[0] == 0  # a read is a read
        fleet_store.sync(cur, CFG, T0 + h(6))
        after = stats.stats(cur, CFG, None, now=T0 + h(6))
        assert fleet_store.current(cur, CFG, T0 + h(6)) == fleet_store.periods(cur)
    # The same figures before and after the fleet was written down: the first fleet ran from the
    # first live request.
    assert read["fixed_cost_usd"] == after["fixed_cost_usd"] == pytest.approx(HOURLY * (5 + 1e-6 / 3600), rel=1e-6)
    db.close()


def _trace(path: Path) -> Path:
    times = ["2023-11-03T10:00:00Z", "2024-02-10T12:30:00Z", "2024-06-01T08:15:00Z"]
    path.write_text("".join(json.dumps({"t": t, "p": 100, "c": 40}) + "\n" for t in times))
    return path


def test_a_2023_trace_imported_today_charges_no_gpu_hours_for_its_past(tmp_path):
    db = _db(tmp_path)
    rep = importers.import_file(
        db, CFG, _trace(tmp_path / "az.jsonl"), "jsonl", mapping=importers.Mapping("t", "iso", "p", "c")
    )
    now = datetime(2026, 12, 2, 9, 0)
    with db.cursor() as cur:
        s = stats.stats(cur, CFG, now=now)
        df = spend.spend(cur, CFG, "month", now=now)
    assert s["total_requests"] == 3 and s["fixed_cost_usd"] == 0.0
    assert s["actual_total_usd"] == pytest.approx(s["metered_cost_usd"])
    # The baselines of the imported trace, to the cent, from its own tokens (3 × 100 in, 40 out).
    for key, model in (
        ("all_serverless_primary_usd", CFG.routing.serverless_model),
        ("all_premium_usd", CFG.routing.premium_model),
    ):
        p = pricing.price_of(CFG, model)
        assert s[key] == pytest.approx((300 * p.input_per_mtok + 120 * p.output_per_mtok) / 1e6, abs=0.005)
    assert s["cost_savings_usd"] == pytest.approx(s["all_serverless_primary_usd"] - s["actual_total_usd"], abs=1e-9)
    past = df[df["period_start"] < datetime(2026, 12, 1)]
    assert len(past) == 3 and (past["fixed_cost_usd"] == 0).all()
    # The import itself is still there to be counted, under its own source.
    assert rep.source == "az-jsonl"
    db.close()


def test_an_import_that_asks_is_charged_exactly_its_own_span(tmp_path):
    db = _db(tmp_path)
    rep = importers.import_file(
        db,
        CFG,
        _trace(tmp_path / "az.jsonl"),
        "jsonl",
        mapping=importers.Mapping("t", "iso", "p", "c"),
        charge_fleet=True,
    )
    now = datetime(2026, 12, 2, 9, 0)
    first, last = datetime(2023, 11, 3, 10), datetime(2024, 6, 1, 8, 15)
    span_h = ((last - first).total_seconds() + 1e-6) / 3600
    with db.cursor() as cur:
        s = stats.stats(cur, CFG, [rep.source], now=now)
        everything = stats.stats(cur, CFG, now=now, start=datetime(2020, 1, 1), end=now)
        df = spend.spend(cur, CFG, "month", now=now)
    assert s["fixed_cost_usd"] == pytest.approx(HOURLY * span_h, abs=1e-4)
    # Over a range far wider than the trace, still only its span (the live fleet never ran).
    assert everything["fixed_cost_usd"] == pytest.approx(HOURLY * span_h, abs=1e-4)
    months = df.groupby("period_start")["fixed_cost_usd"].sum()
    assert months[datetime(2023, 10, 1) : datetime(2023, 10, 31)].sum() == 0
    assert months[datetime(2024, 7, 1) :].sum() == 0
    # Whole started hours in each month of the span: November 2023 from the 3rd 10:00 on.
    assert months[datetime(2023, 11, 1)] == pytest.approx(HOURLY * (30 * 24 - (2 * 24 + 10)))
    db.close()


# --- savings against named baselines -------------------------------------------------------


def _served(i: int, ts: datetime, tier: str, p: int, c: int) -> dict:
    if tier == "serverless":
        price = pricing.price_of(CFG, CFG.routing.serverless_model)
        m = round((p * price.input_per_mtok + c * price.output_per_mtok) / 1e6, 9)
        return handmade(i, ts=ts, source="api", prompt_tokens=p, completion_tokens=c, metered_cost_usd=m)
    ep = CFG.endpoint("sophia-ai-core")
    return handmade(
        i,
        ts=ts,
        source="api",
        tier="dedicated",
        endpoint=ep.name,
        model=ep.models[0],
        prompt_tokens=p,
        completion_tokens=c,
        metered_cost_usd=0.0,
        amortized_cost_usd=float(pricing.amortized_cost(p, c, ep)),
    )


def test_savings_and_every_baseline_equal_a_hand_computation_and_can_be_negative(tmp_path):
    db = _db(tmp_path)
    recs = [
        _served(i, T0 + timedelta(minutes=7 * i), "dedicated" if i % 4 == 0 else "serverless", 300 + i, 80 + i)
        for i in range(40)
    ]
    with db.cursor() as cur:
        _append(cur, recs)
        end = T0 + h(6)
        s = stats.stats(cur, CFG, start=T0, end=end, now=end + h(1))
    prim = pricing.price_of(CFG, CFG.routing.serverless_model)
    prem = pricing.price_of(CFG, CFG.routing.premium_model)
    at_primary = sum(
        (r["prompt_tokens"] * prim.input_per_mtok + r["completion_tokens"] * prim.output_per_mtok) / 1e6 for r in recs
    )
    at_premium = sum(
        (r["prompt_tokens"] * prem.input_per_mtok + r["completion_tokens"] * prem.output_per_mtok) / 1e6 for r in recs
    )
    metered_usd = sum(r["metered_cost_usd"] for r in recs)
    fixed = HOURLY * 6  # the fleet ran the whole range (from the first live request on)
    assert s["fixed_cost_usd"] == pytest.approx(fixed, abs=0.005)
    assert s["actual_total_usd"] == pytest.approx(metered_usd + fixed, abs=0.005)
    assert s["all_serverless_primary_usd"] == pytest.approx(at_primary, abs=0.005)
    assert s["all_premium_usd"] == pytest.approx(at_premium, abs=0.005)
    assert s["all_dedicated_usd"] == pytest.approx(HOURLY * 6, abs=0.005)
    assert s["all_dedicated_unserved_share"] == 0.0  # 40 small requests fit the fleet easily
    assert s["cost_savings_usd"] == pytest.approx(at_primary - metered_usd - fixed, abs=0.005)
    assert s["cost_savings_usd"] < 0  # three GPUs for 40 requests cost far more than per-token
    # The GPUs' own account and the break-even volume, by hand.
    ded = [r for r in recs if r["tier"] == "dedicated"]
    ded_primary = sum(
        (r["prompt_tokens"] * prim.input_per_mtok + r["completion_tokens"] * prim.output_per_mtok) / 1e6 for r in ded
    )
    assert s["gpu_net_savings_usd"] == pytest.approx(ded_primary - fixed, abs=0.005)
    assert s["break_even_multiple"] == pytest.approx(fixed / ded_primary, rel=1e-3)
    assert s["break_even_requests"] == round(fixed / ded_primary * len(ded))
    amortized = sum(r["amortized_cost_usd"] for r in ded)
    assert s["capacity_multiple"] == pytest.approx(fixed / amortized, rel=1e-3)
    text = baselines.verdict(baselines.Baselines(**{k: s[k] for k in baselines.Baselines.__dataclass_fields__}), "m")
    assert text.startswith("The GPUs cost $") and "break even" in text
    db.close()


def test_all_dedicated_reports_the_share_beyond_its_throughput():
    # Two hours: one needs 2 hours of GPU time, the other 30 minutes.
    assert baselines.unserved_share([7200.0, 1800.0]) == pytest.approx(3600 / 9000)
    assert baselines.unserved_share([]) == 0.0


def test_no_verdict_when_the_gpus_pay_for_themselves():
    t = baselines.Totals(100, 1.0, 2.0, 1.5, 10.0, 20.0, 50, 8.0, 2.0, 0.0)
    b = baselines.compute(t)
    assert b.gpu_net_savings_usd == pytest.approx(6.0) and baselines.verdict(b, "m") is None
    assert b.cost_savings_usd == pytest.approx(7.0) and b.cost_savings_percentage == pytest.approx(70.0)


# --- forecasts see the present ---------------------------------------------------------------


def test_forecast_mid_hour_is_not_zero_right_after_spend(tmp_path):
    now = datetime(2026, 6, 10, 10, 30)  # mid-hour, injected
    data = reference()
    data["budgets"] = [{"name": "all", "scope": "tier:serverless", "amount_usd": 100.0, "period": "month"}]
    path = write_toml(tmp_path / "sophia.toml", data)
    rt = Runtime.open(str(path), str(tmp_path / "r.duckdb"), now=lambda: now)
    try:
        with rt.db.cursor() as cur:
            _append(cur, [handmade(1, ts=now - timedelta(minutes=5), source="api", metered_cost_usd=2.4)])
        rt.refresh_spend()
        f = rt.forecasts()["all"]
        window = rt.alert_settings.forecast_window_hours
        assert f.burn_rate_usd_per_hour == pytest.approx(2.4 / window)
        with rt.db.cursor() as cur:
            buckets = metered.hourly(cur, now - h(1), now, sources=["api"])
        assert buckets == [0.0, pytest.approx(2.4)]  # the current partial hour is a bucket
        left = (datetime(2026, 7, 1) - now).total_seconds() / 3600
        assert f.projected_usd == pytest.approx(2.4 + 2.4 / window * left)
    finally:
        rt.close()
    assert math.isfinite(bmod.forecast(rt.guard.budgets[0], 0, [], 0.0, now, now + h(1), 0).projected_usd)


def test_replay_reports_the_actual_total_beside_the_baselines(tmp_path):
    from sophia.analysis import replay
    from sophia.ingest import demo

    db = _db(tmp_path)
    demo.write(db, demo.generate(CFG, 2000, 3, seed=4), cfg=CFG)
    with db.cursor() as cur:
        t = replay.load(cur, None)
        toks = cur.execute("SELECT sum(prompt_tokens), sum(completion_tokens) FROM requests").fetchone()
    d = replay.replay(t, CFG.with_routing(complexity_threshold=0.4)).as_dict()
    prim = pricing.price_of(CFG, CFG.routing.serverless_model)
    prem = pricing.price_of(CFG, CFG.routing.premium_model)
    assert d["all_serverless_primary_usd"] == pytest.approx(
        (toks[0] * prim.input_per_mtok + toks[1] * prim.output_per_mtok) / 1e6, abs=1e-5
    )
    assert d["all_premium_usd"] == pytest.approx(
        (toks[0] * prem.input_per_mtok + toks[1] * prem.output_per_mtok) / 1e6, abs=1e-5
    )
    assert d["actual_total_usd"] == pytest.approx(d["metered_cost_usd"] + d["fixed_cost_usd"], abs=1e-6)
    assert d["cost_savings_usd"] == pytest.approx(d["all_serverless_primary_usd"] - d["actual_total_usd"], abs=1e-6)
    db.close()
