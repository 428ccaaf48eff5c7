"""The Cost simulator's results as figures, tables and captions.

Streamlit-free: each function takes parts of a `sim.SimReport` and returns a `go.Figure`, a
DataFrame or a string; `pages/simulator.py` only places them in its tabs. This module shows one
run; the planning views (break-even, optimizer, reference, scenarios, autoscaling) are
`sophia.ui.sim_plan_view`, which imports the formatters and colours from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sophia import sim
from sophia.money.periods import MONTH_DAYS
from sophia.sim import workload as traffic_mod
from sophia.ui.appstate import ms, pct, usd
from sophia.ui.charts import PALETTE, TIER_COLORS, stacked_bars
from sophia.vocab import Tier

SERVERLESS_COLOR, DEDICATED_COLOR = TIER_COLORS[Tier.SERVERLESS], TIER_COLORS[Tier.DEDICATED]
FLUID_COLOR, OVERFLOW_COLOR, GREEN, GREY = PALETTE[2], PALETTE[3], "#10B981", "#CBD5E1"
CHART = dict(height=330, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
HISTOGRAM_SAMPLE = 50_000  # requests drawn for the latency histograms: enough for their shape
SERVED = (sim.DEDICATED, sim.SERVERLESS, sim.OVERFLOW)  # route codes, in the histograms' order


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def money(x: float | None) -> str:
    """Dollars, or "—" for a missing figure (None or NaN)."""
    return "—" if _missing(x) else usd(float(x))


def share(x: float | None) -> str:
    return "—" if _missing(x) else pct(float(x))


def millis(x: float | None) -> str:
    return "—" if _missing(x) else ms(float(x))


def count(x: float | None) -> str:
    return "—" if _missing(x) else f"{float(x):,.0f}"


def yes_no(x: Any) -> str:
    return "—" if _missing(x) else ("yes" if x else "no")


KINDS = {
    "usd": money,
    "share": share,
    "ms": millis,
    "count": count,
    "yes/no": yes_no,
    "policy": lambda p: "—" if _missing(p) else sim.POLICY_LABELS.get(p, str(p)),
    "text": lambda x: "—" if _missing(x) else str(x),
}


EMPTY_STATE = (
    "Set the traffic, the fleet, the prices and the policy above, then press **Run simulation**: "
    "the results appear here and stay until the next run."
)


def headline(report: sim.SimReport) -> str:
    """One line above the figures: what was simulated, how, and how fast."""
    w, des = report.workload, report.des
    return (
        f"{w.n:,} requests over {w.span_s / 3600:,.1f} h ({w.label}) · {sim.POLICY_LABELS[des.policy]} · "
        f"{plural(des.gpus, 'GPU')} · simulated in {des.elapsed_s:.2f} s"
    )


def span_warning(w: Any) -> str | None:
    """A warning when the traffic spans so long that its rates mean little (mixed periods?)."""
    if w.span_s <= 90 * traffic_mod.DAY_S:
        return None
    return (
        f"The traffic spans {w.span_s / traffic_mod.DAY_S:,.0f} days (sources from different periods?): rates "
        "are averaged over all of it. Pick sources or a time range that belong together."
    )


# --- costs --------------------------------------------------------------------------------


def cost_chart(s: Mapping[str, Any], month: Mapping[str, Any]) -> go.Figure:
    """The sample's monthly cost beside the month projection's, split into its parts."""
    x = ["Simulated sample", "Month projection (fluid)"]
    parts = [
        ("GPU-hours", "gpu_cost_usd", DEDICATED_COLOR),
        ("Metered", "metered_cost_usd", SERVERLESS_COLOR),
        ("Other fixed", "other_fixed_cost_usd", FLUID_COLOR),
    ]
    fig = stacked_bars(
        ((label, x, [s[key], month[key]], color) for label, key, color in parts),
        hover="%{x}<br>{name}: $%{y:,.2f}<extra></extra>",
    )
    fig.update_layout(title="Monthly cost breakdown", yaxis_title="USD per month", **CHART)
    return fig


def month_caption(month: sim.FluidResult, growth: float | None) -> str:
    """The month projection in a sentence; `growth` None leaves growth unmentioned."""
    ms_ = month.summary()
    grows = f" with {growth:.0%} growth per month" if growth is not None else ""
    return (
        f"The projection repeats the sample over {MONTH_DAYS} days at 1-minute resolution{grows}: "
        f"{usd(ms_['monthly_cost_usd'])} a month, {ms_['requests']:,} requests, p95 first token "
        f"{ms(ms_['p95_ttft_ms'])} (computed in {month.elapsed_s:.2f} s)."
    )


# --- utilization and routes ---------------------------------------------------------------


def _day_profile(fig: go.Figure, util: pd.Series, fluid: pd.Series) -> None:
    """Several days: the day's profile, 10-minute bins of the per-minute figures."""
    bins = (util.index.hour * 60 + util.index.minute) // 10
    tod = pd.to_datetime("2000-01-01") + pd.to_timedelta(np.arange(144) * 10, unit="min")
    for y, name, style, color, opacity in (
        (util.groupby(bins).max(), "Simulation, peak minute", dict(width=1), DEDICATED_COLOR, 0.55),
        (util.groupby(bins).mean(), "Simulation, mean", dict(width=2), DEDICATED_COLOR, 1.0),
        (fluid.groupby(bins).mean(), "Fluid model, mean", dict(dash="dot"), FLUID_COLOR, 1.0),
    ):
        fig.add_scatter(x=tod[y.index], y=y, name=name, mode="lines", line=dict(color=color, **style), opacity=opacity)


def utilization_chart(report: sim.SimReport) -> go.Figure:
    """GPU utilization per minute (one day or less), else over the day with the days overlaid."""
    w, des, flu = report.workload, report.des, report.fluid
    util = pd.Series(des.minute_utilization, index=pd.DatetimeIndex(w.clock()))
    fluid = pd.Series(flu.minute["utilization"].to_numpy(), index=util.index)
    fig = go.Figure()
    if w.span_s <= traffic_mod.DAY_S:
        fig.add_scatter(
            x=util.index, y=util, name="Simulation (per minute)", mode="lines", line=dict(color=DEDICATED_COLOR)
        )
        fig.add_scatter(
            x=util.index, y=fluid, name="Fluid model", mode="lines", line=dict(color=FLUID_COLOR, dash="dot")
        )
        fig.update_layout(title="GPU utilization, minute by minute")
    else:
        _day_profile(fig, util, fluid)
        fig.update_layout(
            title=f"GPU utilization over the day (UTC, {w.span_s / traffic_mod.DAY_S:.0f} days overlaid)",
            xaxis_tickformat="%H:%M",
        )
    top = float(max(util.max(), fluid.max(), 0.0)) if len(util) else 0.0
    fig.update_layout(
        yaxis_tickformat=".1%" if top < 0.05 else ".0%", yaxis_range=[0, min(1.05, max(0.01, top * 1.15))], **CHART
    )
    return fig


def utilization_caption(des: sim.SimResult) -> str | None:
    if not des.utilization_by_pool:
        return None
    return (
        "Share of batch slots in use. Per pool: "
        + ", ".join(f"{k} {pct(v)}" for k, v in des.utilization_by_pool.items())
        + f" · peak minute {pct(des.peak_minute_utilization)}, mean minute {pct(des.mean_minute_utilization)}"
    )


def route_chart(report: sim.SimReport) -> go.Figure:
    """Requests per bin of minutes (at most 720 bars), stacked by where they were served."""
    w, des = report.workload, report.des
    step = max(1, int(np.ceil(w.minutes / 720)))
    reqs = pd.DataFrame(des.minute_requests.T, columns=list(sim.ROUTES), index=pd.DatetimeIndex(w.clock()))
    reqs = reqs.groupby(np.arange(len(reqs)) // step).sum().set_index(reqs.index[::step])
    colors = [SERVERLESS_COLOR, DEDICATED_COLOR, OVERFLOW_COLOR]
    fig = stacked_bars(
        ((name, reqs.index, reqs[name], color) for name, color in zip(sim.ROUTES, colors, strict=True)),
        marker_line_width=0,
    )
    fig.update_layout(
        bargap=0, title=f"Requests per {step} minute{'s' if step > 1 else ''}, by where they were served", **CHART
    )
    return fig


# --- latency ------------------------------------------------------------------------------


def sample(des: sim.SimResult, cap: int = HISTOGRAM_SAMPLE) -> np.ndarray:
    """A fixed random sample of request indexes (the same on every rerun)."""
    if not des.requests:
        return np.zeros(0, int)
    return np.random.default_rng(0).choice(des.requests, size=min(cap, des.requests), replace=False)


def latency_histogram(des: sim.SimResult, pick: np.ndarray, first_token: bool) -> go.Figure:
    """Time to first token (with the target) or end-to-end latency, one histogram per route."""
    values = des.ttft_ms if first_token else des.latency_ms
    fig = go.Figure()
    for route in SERVED:
        sel = pick[des.route[pick] == route]
        if len(sel):
            name = sim.ROUTES[route]
            fig.add_histogram(
                x=values[sel],
                name=f"{name} ({des.count(route):,})" if first_token else name,
                opacity=0.75,
                nbinsx=60,
            )
    if first_token:
        fig.add_vline(x=des.slo_ms, line_dash="dash", annotation_text=f"target {des.slo_ms:,.0f} ms")
    title = "Time to first token" if first_token else "End-to-end latency"
    fig.update_layout(barmode="overlay", title=title, xaxis_title="ms", **CHART)
    return fig


TIERS = {"all": "All requests", "dedicated": "Dedicated", "serverless": "Serverless (incl. overflow)"}


def latency_table(des: sim.SimResult) -> pd.DataFrame:
    """Percentiles of first token and end-to-end latency per tier (tiers that served nothing are left out)."""
    rows = [
        {
            "Tier": TIERS.get(tier, tier),
            "Measure": "Time to first token" if what == "ttft_ms" else "End-to-end latency",
            **{f"{q} (ms)": count(v[what][q]) for q in ("p50", "p95", "p99")},
        }
        for tier, v in des.latency().items()
        for what in ("ttft_ms", "latency_ms")
        if v[what]
    ]
    return pd.DataFrame(rows, columns=["Tier", "Measure", "p50 (ms)", "p95 (ms)", "p99 (ms)"])


_COMPARE_FORMAT = {"USD": money, "share": share, "ms": millis}


def compare_table(des: sim.SimResult, flu: sim.FluidResult) -> pd.DataFrame:
    """`sim.compare` for people: each figure in its unit, the difference in the same unit, the relative one in %."""
    df = sim.compare(des, flu)
    rows = []
    for r in df.itertuples(index=False):
        unit = "USD" if "(USD)" in r.metric else ("ms" if "(ms)" in r.metric else "share")
        fmt = _COMPARE_FORMAT[unit]
        diff = r.difference
        if unit == "share":
            diff_text = "—" if _missing(diff) else f"{100 * diff:+.1f} pts"
        elif unit == "USD":
            diff_text = "—" if _missing(diff) else ("+" if diff > 0 else "") + usd(float(diff))
        else:
            diff_text = "—" if _missing(diff) else f"{diff:+,.0f} ms"
        rel = "—" if _missing(r.relative) else f"{100 * r.relative:+.1f}%"
        rows.append(
            {
                "Figure": r.metric,
                "Simulation": fmt(r.simulation),
                "Fluid model": fmt(r.fluid),
                "Fluid − simulation": diff_text,
                "Relative": rel,
            }
        )
    return pd.DataFrame(rows)


def fluid_caption(des: sim.SimResult, flu: sim.FluidResult) -> str:
    return (
        "Both models on the same sample. The fluid model sees each minute's averages (an M/M/k queue with "
        "balking per minute), so it misses bursts shorter than a minute; the simulation serves every request. "
        f"Fluid model: {flu.elapsed_s * 1000:.0f} ms; simulation: {des.elapsed_s * 1000:.0f} ms."
    )
