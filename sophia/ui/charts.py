"""The app's Plotly figures (overview, endpoints, budgets, tuning) and the styling they share.

Streamlit-free: every builder takes frames or plain values and returns a `go.Figure`, so the
pages only place them. The simulator's figures are in `sophia.ui.sim_view` and `sim_plan_view`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sophia.analysis import effectiveness, replay
from sophia.config import Config
from sophia.routing import policy
from sophia.vocab import Tier

TIER_COLORS = {Tier.SERVERLESS: "#4F46E5", Tier.DEDICATED: "#0EA5A4"}
PALETTE = ["#4F46E5", "#0EA5A4", "#F59E0B", "#EC4899", "#10B981", "#8B5CF6", "#EF4444", "#64748B"]
TIGHT = {"l": 10, "r": 10, "t": 10, "b": 10}  # margins of a chart under its own subheader
RED, AMBER, SLATE = "#EF4444", "#F59E0B", "#64748B"


def color_map(values: Iterable[Any]) -> dict[str, str]:
    """A stable color per value: the tiers keep theirs, other values take unused palette colors."""
    out = dict(TIER_COLORS)
    free = [c for c in PALETTE if c not in out.values()]
    i = 0
    for v in values:
        if v not in out:
            out[v] = free[i % len(free)]
            i += 1
    return out


def stacked_bars(bars: Iterable[tuple[str, Any, Any, str]], hover: str | None = None, **style: Any) -> go.Figure:
    """One bar trace per (name, x, y, color), stacked; `hover` may name the trace as {name}."""
    fig = go.Figure()
    for name, x, y, color in bars:
        extra = {"hovertemplate": hover.replace("{name}", name)} if hover else {}
        fig.add_bar(x=x, y=y, name=name, marker_color=color, **style, **extra)
    fig.update_layout(barmode="stack")
    return fig


def lines(traces: Iterable[tuple[str, Any, Any, dict]], **layout: Any) -> go.Figure:
    """One line trace per (name, x, y, line style)."""
    fig = go.Figure()
    for name, x, y, line in traces:
        fig.add_scatter(x=x, y=y, name=name, mode="lines", line=line)
    fig.update_layout(**layout)
    return fig


# --- overview -----------------------------------------------------------------------------

OVER_TIME = {"height": 380, "margin": TIGHT, "hovermode": "x unified", "legend": {"orientation": "h", "y": -0.15}}


def latency_over_time(df: pd.DataFrame) -> go.Figure:
    """p50 and p95 latency per bucket (frame of `analytics.latency_series`)."""
    fig = lines(
        [
            ("p50", df["bucket"], df["p50_ms"], {"color": PALETTE[0]}),
            ("p95", df["bucket"], df["p95_ms"], {"color": AMBER, "dash": "dot"}),
        ],
        **OVER_TIME,
    )
    fig.update_yaxes(title="latency (ms)", rangemode="tozero")
    return fig


def groups_over_time(df: pd.DataFrame, measure: str, fixed: pd.DataFrame | None = None) -> go.Figure:
    """Requests or spend per bucket, one stacked bar per group (frame of `analytics.timeseries`).

    For spend, `fixed` (from `analytics.fixed_series`) adds the GPU-hours paid as a line on a
    second axis: they usually dwarf per-request costs.
    """
    colors = color_map(df["group"].unique())
    fig = stacked_bars(
        (
            str(g),
            part["bucket"],
            part["requests"] if measure == "Requests" else part["metered_usd"] + part["amortized_usd"],
            colors[g],
        )
        for g, part in df.groupby("group", sort=True)
    )
    if measure != "Spend":
        fig.update_yaxes(title="requests")
    else:
        if fixed is not None and fixed["fixed_usd"].sum() > 0:
            fig.add_scatter(
                x=fixed["bucket"],
                y=fixed["fixed_usd"],
                name="GPU-hours paid (fixed, right axis)",
                mode="lines",
                line={"color": "#1E2233", "dash": "dash", "shape": "hv"},
                yaxis="y2",
            )
            fig.update_layout(
                yaxis2={
                    "title": "GPU-hours paid (USD)",
                    "overlaying": "y",
                    "side": "right",
                    "tickprefix": "$",
                    "rangemode": "tozero",
                    "showgrid": False,
                }
            )
        fig.update_layout(yaxis={"title": "request cost (USD)", "tickprefix": "$"})
    fig.update_layout(**OVER_TIME)
    return fig


def spend_by_model(by_model: pd.DataFrame) -> go.Figure:
    """Horizontal bars of each model's cost (frame of `analytics.breakdown_by(..., "model")`)."""
    cost = by_model["metered_usd"] + by_model["amortized_usd"]
    colors = color_map(by_model["group"])
    fig = go.Figure(
        go.Bar(
            x=cost,
            y=by_model["group"],
            orientation="h",
            marker_color=[colors[g] for g in by_model["group"]],
            customdata=by_model["requests"],
            hovertemplate="%{y}<br>$%{x:.4f} over %{customdata:,} requests<extra></extra>",
        )
    )
    fig.update_layout(height=260, margin=TIGHT, xaxis={"tickprefix": "$"}, yaxis={"autorange": "reversed"})
    return fig


def share_pie(df: pd.DataFrame) -> go.Figure:
    """A ring of requests per group (frame of `analytics.breakdown_by`)."""
    fig = go.Figure(
        go.Pie(labels=df["group"], values=df["requests"], hole=0.55, marker={"colors": PALETTE}, sort=False)
    )
    fig.update_layout(height=260, margin=TIGHT)
    return fig


# --- endpoints ----------------------------------------------------------------------------


def endpoint_latency(lat: pd.DataFrame, names: list[str], label: Callable[[str], str]) -> go.Figure:
    """p95 latency per endpoint over time (frame of `analytics.endpoint_latency`), in ms throughout:
    axis ticks "13,000", not "13k"; hover "4,627 ms"."""
    colors = color_map(names)
    fig = lines(
        (
            (label(name), part["bucket"], part["p95_ms"], {"color": colors.get(name)})
            for name, part in lat.groupby("endpoint", sort=False)
        ),
        height=320,
        margin=TIGHT,
        hovermode="x unified",
        yaxis={"title": "p95 latency (ms)", "rangemode": "tozero", "tickformat": ",.0f"},
        legend={"orientation": "h", "y": -0.2},
    )
    fig.update_traces(hovertemplate="%{fullData.name}: %{y:,.0f} ms<extra></extra>")
    return fig


# --- budgets ------------------------------------------------------------------------------


def cumulative_spend(hourly: list[float], fixed_per_hour: float, spent: float) -> list[float]:
    """Spend at the end of each hour; the last point is at least what the guard counts now."""
    cum, total = [], 0.0
    for i, h in enumerate(hourly):
        total += h + fixed_per_hour
        cum.append(total if i < len(hourly) - 1 else max(total, spent))
    return cum


def budget_forecast(
    period: tuple[datetime, datetime],
    now: datetime,
    cum: list[float],
    spent: float,
    limit: tuple[float, float],
    forecast: Any = None,
) -> go.Figure:
    """A budget's period: spend so far by the hour, the forecast range, the limit and soft limit.

    `limit` is (amount in USD, soft limit as a share); `forecast` a `budgets.model.Forecast`.
    """
    (start, end), (amount, soft) = period, limit
    hours = [start + timedelta(hours=i + 1) for i in range(len(cum))]
    fig = go.Figure()
    fig.add_scatter(x=[start, *hours], y=[0.0, *cum], name="spent", line={"color": PALETTE[0], "width": 3})
    if forecast is not None and now < end:
        fig.add_scatter(
            x=[now, end, end, now],
            y=[spent, forecast.projected_high_usd, forecast.projected_low_usd, spent],
            fill="toself",
            fillcolor="rgba(245,158,11,0.15)",
            line={"width": 0},
            name="forecast range",
            hoverinfo="skip",
        )
        fig.add_scatter(
            x=[now, end], y=[spent, forecast.projected_usd], name="forecast", line={"color": AMBER, "dash": "dash"}
        )
    fig.add_hline(y=amount, line={"color": RED}, annotation_text="limit")
    fig.add_hline(y=amount * soft, line={"color": AMBER, "dash": "dot"}, annotation_text=f"soft limit {soft:.0%}")
    # Plain dollars on the axis: Plotly's default SI ticks would show $0.0001 as "$100µ".
    fig.update_layout(
        height=280,
        margin={"t": 10, "b": 10},
        yaxis={"tickprefix": "$", "exponentformat": "none", "separatethousands": True},
        showlegend=False,
        xaxis_range=[start, end],
    )
    return fig


# --- threshold tuning ---------------------------------------------------------------------


def labelled_share(r: replay.ReplayResult, t: replay.Traffic, cfg: Config) -> float:
    """Share of the labelled requests a replay sends to dedicated GPUs."""
    ded = np.isin(r.code, [k for k, tg in enumerate(policy.targets(cfg)) if tg[0] == policy.DEDICATED])
    return float((ded & t.labelled).sum() / max(t.labelled.sum(), 1))


def _cpts(cv: replay.Curve, name: str) -> str:
    """ "CPT(50%) 50% · CPT(80%) 80%": the strong-tier share each level of the gap needs."""
    levels = cv.cpt.get(name, {})
    return " · ".join(f"CPT({x}%) {'never' if v is None else f'{v:.0%}'}" for x, v in levels.items())


def _quality_curve(fig: go.Figure, sw: pd.DataFrame, cv: replay.Curve) -> None:
    fig.add_scatter(
        x=cv.random["share"],
        y=cv.random["quality"],
        name=f"random (APGR {cv.random_apgr:.2f} · {_cpts(cv, 'random')})",
        line={"dash": "dot", "color": "#94A3B8"},
    )
    fig.add_scatter(
        x=cv.oracle["share"],
        y=cv.oracle["quality"],
        name=f"oracle (APGR {cv.oracle_apgr:.2f} · {_cpts(cv, 'oracle')})",
        line={"dash": "dash", "color": "#10B981"},
    )
    fig.add_scatter(
        x=sw["labelled_share"],
        y=sw["quality"],
        name=f"policy sweep (APGR {cv.apgr:.2f} · {_cpts(cv, 'policy')})",
        mode="lines+markers",
        line={"color": PALETTE[0]},
        marker={"size": 4},
        customdata=sw["threshold"],
        hovertemplate="threshold %{customdata:.2f}<br>share %{x:.1%}<br>quality %{y:.1%}<extra></extra>",
    )
    # RouteLLM's CPT(50%) / CPT(80%): the points on the policy's own curve where it reaches them.
    marks = [(x, v) for x, v in cv.cpt.get("policy", {}).items() if v is not None]
    if marks:
        gap = cv.strong - cv.weak
        fig.add_scatter(
            x=[v for _, v in marks],
            y=[cv.weak + gap * x / 100 for x, _ in marks],
            mode="markers+text",
            name="CPT",
            text=[f"CPT({x}%) {v:.0%}" for x, v in marks],
            textposition="bottom right",
            marker={"symbol": "diamond", "size": 10, "color": PALETTE[0]},
            hovertemplate="%{text}<extra></extra>",
        )
    fig.add_scatter(
        x=[0, 1],
        y=[cv.weak, cv.strong],
        mode="markers+text",
        name="one tier only",
        text=["all serverless", "all dedicated"],
        textposition=["top right", "bottom left"],
        marker={"size": 9, "color": "#0F172A"},
    )
    fig.update_layout(
        yaxis_title="quality (share correct)",
        yaxis_tickformat=".0%",
        xaxis_title="share of the labelled requests sent to dedicated GPUs",
    )


def _cost_curve(fig: go.Figure, sw: pd.DataFrame, t: replay.Traffic) -> None:
    fig.add_scatter(
        x=sw["dedicated_share"],
        y=sw["metered_cost_usd"].map(lambda v: replay.monthly(v, t)),
        name="policy sweep",
        mode="lines+markers",
        line={"color": PALETTE[0]},
        marker={"size": 4},
        customdata=sw["threshold"],
        hovertemplate="threshold %{customdata:.2f}<br>share %{x:.1%}<br>$%{y:,.2f}/month<extra></extra>",
    )
    fig.update_layout(
        yaxis_title="metered spend, USD a month", yaxis_tickprefix="$", xaxis_title="share sent to dedicated GPUs"
    )


def tuning_curve(
    sw: pd.DataFrame,
    current: replay.ReplayResult,
    proposed: replay.ReplayResult,
    t: replay.Traffic,
    cv: replay.Curve | None,
    cfg: Config,
) -> go.Figure:
    """The threshold sweep: quality against share with labels (`replay.labelled_curve`), else
    monthly spend against share, with the current and the proposed policy marked."""
    fig = go.Figure()
    if cv is not None:
        _quality_curve(fig, sw, cv)
        ys = (current.quality, proposed.quality)
        xs = (labelled_share(current, t, cfg), labelled_share(proposed, t, cfg))
    else:
        _cost_curve(fig, sw, t)
        ys = (replay.monthly(current.metered_cost_usd, t), replay.monthly(proposed.metered_cost_usd, t))
        xs = (current.dedicated_share, proposed.dedicated_share)
    fig.add_scatter(
        x=[xs[0]],
        y=[ys[0]],
        name="current",
        mode="markers",
        marker={"size": 14, "color": SLATE, "symbol": "circle-open", "line": {"width": 3}},
    )
    fig.add_scatter(
        x=[xs[1]], y=[ys[1]], name="proposed", mode="markers", marker={"size": 14, "color": AMBER, "symbol": "star"}
    )
    fig.update_layout(
        xaxis_tickformat=".0%",
        height=380,
        margin={"t": 30, "b": 10},
        legend={"orientation": "h", "y": -0.25},
        title="Across complexity thresholds 0.00 … 1.00 (proposed weights)",
    )
    return fig


# --- overview: routing effectiveness --------------------------------------------------------


def complexity_histogram(bins: pd.DataFrame, threshold: float) -> go.Figure:
    """Requests per complexity bin (`effectiveness.complexity_histogram`), the threshold marked;
    hovering a bar says how many requests moving the threshold to its edge would shift."""
    fig = go.Figure()
    fig.add_bar(
        x=bins["lo"] + effectiveness.BIN / 2,
        y=bins["requests"],
        width=effectiveness.BIN * 0.95,
        marker_color=PALETTE[0],
        customdata=np.stack([bins["lo"], bins["shift"]], axis=1),
        hovertemplate="score %{customdata[0]:.2f}–: %{y:,} requests<br>threshold here shifts "
        "%{customdata[1]:+,} to dedicated<extra></extra>",
        name="requests",
    )
    fig.add_vline(x=threshold, line={"color": AMBER, "dash": "dash"}, annotation_text=f"threshold {threshold:.2f}")
    fig.update_layout(height=320, margin=TIGHT, showlegend=False, bargap=0)
    fig.update_xaxes(title="complexity score", range=[0, 1])
    fig.update_yaxes(title="requests")
    return fig


def throughput_over_time(df: pd.DataFrame, peak: float) -> go.Figure:
    """Mean requests a second per bucket, and the busiest minute's rate as a line."""
    fig = lines([("mean", df["bucket"], df["per_second"], {"color": PALETTE[0]})], **OVER_TIME)
    fig.add_hline(y=peak, line={"color": AMBER, "dash": "dot"}, annotation_text=f"peak minute {peak:,.2f}/s")
    fig.update_yaxes(title="requests a second", rangemode="tozero")
    return fig


def savings_over_time(df: pd.DataFrame, primary_model: str, premium_model: str) -> go.Figure:
    """Actual spend (metered + GPU-hours) per bucket against the per-token baselines."""
    fig = lines(
        [
            ("actual (metered + GPU-hours)", df["bucket"], df["actual_usd"], {"color": PALETTE[1]}),
            (f"all on {primary_model}", df["bucket"], df["primary_usd"], {"color": PALETTE[0], "dash": "dot"}),
            (f"all on {premium_model}", df["bucket"], df["premium_usd"], {"color": AMBER, "dash": "dash"}),
        ],
        **OVER_TIME,
    )
    fig.update_yaxes(title="USD per bucket", rangemode="tozero", tickprefix="$")
    return fig
