"""The Streamlit-free builders behind the pages: figures, metric cards, card text, the simulator's form."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pytest

from sophia import sim
from sophia.sim import choices
from sophia.ui import cards, charts, metrics, sim_form, sim_plan_view, sim_view
from sophia.vocab import Tier
from tests.helpers import reference_config

CFG = reference_config()
T0 = datetime(2025, 1, 1)


def _names(fig) -> list[str]:
    return [tr.name for tr in fig.data]


# --- shared styling ------------------------------------------------------------------------


def test_color_map_keeps_tier_colors_and_gives_others_unused_ones():
    colors = charts.color_map([Tier.DEDICATED, "gpt-4o", "gpt-4o-mini"])
    assert colors[Tier.SERVERLESS] == charts.TIER_COLORS[Tier.SERVERLESS]
    assert colors[Tier.DEDICATED] == charts.TIER_COLORS[Tier.DEDICATED]
    others = {colors["gpt-4o"], colors["gpt-4o-mini"]}
    assert len(others) == 2 and not others & set(charts.TIER_COLORS.values())


def test_stacked_bars_name_each_trace_in_its_hover():
    fig = charts.stacked_bars([("a", [1], [2], "#000"), ("b", [1], [3], "#fff")], hover="{name}: %{y}")
    assert _names(fig) == ["a", "b"]
    assert [tr.hovertemplate for tr in fig.data] == ["a: %{y}", "b: %{y}"]
    assert fig.layout.barmode == "stack"


# --- overview -------------------------------------------------------------------------------


def _timeseries() -> pd.DataFrame:
    buckets = [T0, T0 + timedelta(hours=1)]
    return pd.DataFrame(
        {
            "bucket": buckets * 2,
            "group": [Tier.SERVERLESS] * 2 + [Tier.DEDICATED] * 2,
            "requests": [3, 4, 1, 2],
            "metered_usd": [0.1, 0.2, 0.0, 0.0],
            "amortized_usd": [0.0, 0.0, 0.05, 0.07],
        }
    )


def test_groups_over_time_stacks_one_bar_per_group():
    fig = charts.groups_over_time(_timeseries(), "Requests")
    assert sorted(_names(fig)) == sorted([Tier.SERVERLESS, Tier.DEDICATED])
    assert all(tr.type == "bar" for tr in fig.data)
    bars = {tr.name: list(tr.y) for tr in fig.data}
    assert bars[Tier.SERVERLESS] == [3, 4] and bars[Tier.DEDICATED] == [1, 2]
    assert fig.layout.yaxis.title.text == "requests"


def test_spend_over_time_adds_gpu_hours_on_a_second_axis():
    fixed = pd.DataFrame({"bucket": [T0, T0 + timedelta(hours=1)], "fixed_usd": [2.0, 2.0]})
    fig = charts.groups_over_time(_timeseries(), "Spend", fixed)
    line = fig.data[-1]
    assert line.type == "scatter" and line.yaxis == "y2" and list(line.y) == [2.0, 2.0]
    bars = {tr.name: list(tr.y) for tr in fig.data if tr.type == "bar"}
    assert bars[Tier.DEDICATED] == pytest.approx([0.05, 0.07])
    # no GPU-hours paid: no second axis
    no_fixed = charts.groups_over_time(_timeseries(), "Spend", fixed.assign(fixed_usd=0.0))
    assert all(tr.type == "bar" for tr in no_fixed.data)


def test_latency_model_and_reason_figures():
    lat = pd.DataFrame({"bucket": [T0], "p50_ms": [100.0], "p95_ms": [300.0]})
    assert _names(charts.latency_over_time(lat)) == ["p50", "p95"]
    by = pd.DataFrame({"group": ["m1", "m2"], "requests": [5, 7], "metered_usd": [1.0, 0.5], "amortized_usd": [0, 0.5]})
    bar = charts.spend_by_model(by).data[0]
    assert bar.orientation == "h" and list(bar.x) == [1.0, 1.0]
    pie = charts.share_pie(by).data[0]
    assert pie.type == "pie" and list(pie.values) == [5, 7]


def test_endpoint_latency_one_line_per_endpoint_with_its_label():
    lat = pd.DataFrame({"endpoint": ["a", "a", "b"], "bucket": [T0, T0, T0], "p95_ms": [1.0, 2.0, 3.0]})
    fig = charts.endpoint_latency(lat, ["a", "b"], lambda n: f"{n}!")
    assert _names(fig) == ["a!", "b!"]


# --- budgets --------------------------------------------------------------------------------


def test_cumulative_spend_ends_at_least_at_the_guards_figure():
    assert charts.cumulative_spend([1.0, 2.0], 0.5, spent=0.0) == [1.5, 4.0]
    assert charts.cumulative_spend([1.0, 2.0], 0.5, spent=10.0) == [1.5, 10.0]
    assert charts.cumulative_spend([], 0.5, spent=3.0) == []


def test_budget_forecast_shows_the_range_only_before_the_period_ends():
    period = (T0, T0 + timedelta(days=1))
    f = SimpleNamespace(projected_usd=8.0, projected_low_usd=6.0, projected_high_usd=10.0)
    fig = charts.budget_forecast(period, T0 + timedelta(hours=2), [1.0, 2.0], 2.0, (10.0, 0.8), f)
    assert _names(fig) == ["spent", "forecast range", "forecast"]
    assert [s.y0 for s in fig.layout.shapes] == [10.0, 8.0]
    after = charts.budget_forecast(period, T0 + timedelta(days=2), [1.0], 1.0, (10.0, 0.8), f)
    assert _names(after) == ["spent"]


# --- metric cards and text -----------------------------------------------------------------


def test_tuning_metrics_show_deltas_only_when_something_moved():
    r = SimpleNamespace(
        dedicated_share=0.2, metered_cost_usd=5.0, quality=None, labelled=0, amortized_cost_usd=1.0, fixed_cost_usd=9.0
    )
    c = SimpleNamespace(
        current=r, proposed=r, monthly_current=100.0, monthly_proposed=100.0, changed=0, to_dedicated=0, to_serverless=0
    )
    rows = metrics.tuning(c)
    assert [len(r) for r in rows] == [3, 3]
    assert all(m.delta is None for row in rows for m in row)
    assert rows[1][0].value == "no labels"
    moved = SimpleNamespace(**{**vars(r), "dedicated_share": 0.25})
    c2 = SimpleNamespace(**{**vars(c), "proposed": moved, "changed": 4, "to_dedicated": 4})
    rows = metrics.tuning(c2)
    assert rows[0][0].delta == "+5.0 pts" and rows[0][0].delta_color == "off"
    assert rows[1][1].delta == "4 to GPUs · 0 to serverless"


def test_routing_card_and_record_text():
    card = {
        "prompt_tokens": 12,
        "completion_tokens": 1234,
        "usage_estimated": True,
        "complexity": None,
        "estimated_cost_usd": 0.001,
        "cost_usd": 0.002,
        "latency_ms": 900.0,
        "ttft_ms": None,
        "amortized_cost_usd": 0.0,
        "breakdown": {},
        "failed_over": True,
        "path": ["a", "b"],
        "cached": False,
        "request_id": "r1",
    }
    table = cards.routing_table(card)
    assert "| — |" in table and "12 + 1,234 (estimated)" in table
    caption = cards.routing_caption(card)
    assert "**Failover path:** a → b" in caption and caption.endswith("`r1`")
    note = cards.session_note((0.5, 0.01), "Auto", Tier.DEDICATED, "Auto", None, (0.5, 0.02))
    assert note == (
        f"Session settings differ from the configuration: tier forced to {Tier.DEDICATED}, cost threshold $0.0200."
    )


# --- the simulator ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report() -> sim.SimReport:
    gpus = choices.gpu_choices(CFG)
    sls = choices.serverless_choices(CFG)
    gpu, sl = next(iter(gpus)), next(iter(sls))
    state = sim_form.defaults(CFG, gpu, sl) | sim_form.gpu_fields(gpus[gpu]) | sim_form.serverless_fields(sls[sl])
    state |= {"sim_rpd": 20_000.0, "sim_days": 0.25, "sim_wait": None, "sim_max_gpus": 3, "sim_be": True}
    assert set(sim_form.inputs(state)) <= set(sim_form.INPUTS)
    req = sim_form.request(state, CFG, gpus[gpu], ([], None, None, ""), None, synthetic=True)
    assert req.profile is not None and req.source is None
    return sim.compute(sim.prepare(req, CFG, None))


def test_simulator_figures_have_a_trace_per_part(report):
    s, month = report.des.summary(), report.month.summary()
    cost = sim_view.cost_chart(s, month)
    assert _names(cost) == ["GPU-hours", "Metered", "Other fixed"]
    assert list(cost.data[0].y) == [s["gpu_cost_usd"], month["gpu_cost_usd"]]
    assert _names(sim_view.utilization_chart(report)) == ["Simulation (per minute)", "Fluid model"]
    routes = sim_view.route_chart(report)
    assert _names(routes) == list(sim.ROUTES)
    total = sum(sum(tr.y) for tr in routes.data)
    assert total == report.workload.n
    pick = sim_view.sample(report.des)
    ttft = sim_view.latency_histogram(report.des, pick, first_token=True)
    assert ttft.data and all(tr.type == "histogram" for tr in ttft.data)
    assert ttft.layout.shapes[0].x0 == report.des.slo_ms
    assert not sim_view.latency_table(report.des).empty


def test_simulator_optimizer_and_break_even_views(report):
    opt = report.optimum
    fig = sim_plan_view.optimizer_chart(opt)
    assert _names(fig) == ["monthly cost", "p95 first token (ms)"]
    found, verdict = sim_plan_view.optimizer_verdict(opt)
    assert found == (opt.best_gpus is not None) and verdict
    be = report.break_even
    be_fig = sim_plan_view.break_even_chart(be, 1e6)
    assert _names(be_fig)[0] == "All serverless"
    table = sim_plan_view.crossovers_table(be)  # every pair of curves, with its crossover or a dash
    assert len(table) == 3 and (table["Monthly cost there"] != "—").sum() == len(be.crossovers)
    assert "growth" not in sim_view.month_caption(report.month, None)
    assert "with 10% growth per month" in sim_view.month_caption(report.month, 0.1)
    assert "simulated in" in sim_view.headline(report)
