"""The app's Plotly figures (overview, endpoints, budgets, tuning) and the styling they share.

Streamlit-free: every builder takes frames or plain values and returns a `go.Figure`, so the
pages only place them. The simulator's figures are in `sophia.ui.sim_view`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sophia.analysis import replay
from sophia.config import Config
from sophia.log import effectiveness
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


def _quality_curve(fig: go.Figure, sw: pd.DataFrame, t: replay.Traffic, tiers: dict) -> None:
    cv = replay.curve(t, sw, tiers)
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
    # RouteLLM's CPT(50%) / CPT(80%): where the policy reaches half and 80% of the quality gap.
    for x in replay.CPT_LEVELS:
        share = cv.cpt.get("policy", {}).get(x)
        if share is not None:
            fig.add_vline(
                x=share,
                line={"dash": "dot", "color": PALETTE[0], "width": 1},
                annotation_text=f"CPT({x}%) {share:.0%}",
                annotation_position="top left" if x == 50 else "bottom right",
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
    tiers: dict,
    cfg: Config,
) -> go.Figure:
    """The threshold sweep: quality against share with labels, else monthly spend against share,
    with the current and the proposed policy marked."""
    fig = go.Figure()
    labelled = bool(tiers) and t.labelled.any() and tiers[Tier.SERVERLESS] != tiers[Tier.DEDICATED]
    if labelled:
        _quality_curve(fig, sw, t, tiers)
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


# --- overview dashboard (frames of `sophia.log.dashboard`) --------------------------------

PANEL = {"height": 320, "margin": TIGHT, "legend": {"orientation": "h", "y": -0.2}}
NO_SI = {"exponentformat": "none", "separatethousands": True}  # "$0.0001", never "$100µ"


def score_histogram(c: dict) -> go.Figure:
    """Requests per complexity bin (`dashboard.complexity`), split at the current threshold, with
    the threshold marked; a bar's hover says what a threshold at its upper edge would shift."""
    bins = c["bins"].copy()
    first = bins["bin"] == 0
    # Scores of exactly 0 (bin -1) are drawn with the first bin, which starts at 0.
    for side in ("below", "above"):
        bins.loc[first, side] += int(bins.loc[bins["bin"] == -1, side].sum())
    bins = bins[bins["bin"] >= 0].reset_index(drop=True)
    moves = c["moves"].set_index("threshold")
    where = "dedicated GPUs" if c["gpus"] else "the premium model"
    custom = np.column_stack(
        [
            bins["lo"],
            bins["hi"],
            moves.loc[bins["hi"], "dedicated"].to_numpy(),
            moves.loc[bins["hi"], "shift"].to_numpy(),
        ]
    )
    hover = (
        "scores %{customdata[0]:.2f}–%{customdata[1]:.2f}: %{y:,} requests ({name})<br>"
        "threshold at %{customdata[1]:.2f}: %{customdata[2]:,} to " + where + " (%{customdata[3]:+,} vs now)"
        "<extra></extra>"
    )
    fig = go.Figure()
    mid, width = (bins["lo"] + bins["hi"]) / 2, bins["hi"] - bins["lo"]
    for side, name, color in (
        ("below", "at or under the threshold", TIER_COLORS[Tier.SERVERLESS]),
        ("above", f"over it: to {where}", TIER_COLORS[Tier.DEDICATED]),
    ):
        fig.add_bar(
            x=mid,
            y=bins[side],
            width=width,
            name=name,
            marker_color=color,
            customdata=custom,
            hovertemplate=hover.replace("{name}", name),
        )
    fig.add_vline(
        x=c["threshold"],
        line={"color": RED, "dash": "dash"},
        annotation_text=f"threshold {c['threshold']:.2f}",
        annotation_position="top",
    )
    fig.update_layout(barmode="stack", bargap=0.05, **PANEL)
    fig.update_xaxes(title="complexity score", range=[0, 1], dtick=0.1)
    fig.update_yaxes(title="requests", tickformat=",")
    return fig


def tier_latency(tiers: pd.DataFrame) -> go.Figure:
    """p50 and p95 latency, and time to first token where logged, of each tier side by side
    (frame of `dashboard.tiers`)."""
    measures = [("Latency p50", "p50_ms"), ("Latency p95", "p95_ms")]
    if tiers["ttft_requests"].sum() > 0:
        measures += [("First token p50", "ttft_p50_ms"), ("First token p95", "ttft_p95_ms")]
    fig = go.Figure()
    for _, row in tiers.iterrows():
        fig.add_bar(
            x=[label for label, _ in measures],
            y=[row[col] for _, col in measures],
            name=str(row["tier"]),
            marker_color=TIER_COLORS.get(row["tier"], SLATE),
            hovertemplate="%{fullData.name}, %{x}: %{y:,.0f} ms<extra></extra>",
        )
    fig.update_layout(barmode="group", **PANEL)
    fig.update_yaxes(title="milliseconds", tickformat=",.0f", rangemode="tozero")
    return fig


def tier_cost(tiers: pd.DataFrame) -> go.Figure:
    """What a request cost on each tier: metered tokens plus its share of GPU time, stacked
    (frame of `dashboard.tiers`; the idle GPU-hours are in no request)."""
    n = tiers["requests"].where(tiers["requests"] > 0)
    fig = stacked_bars(
        [
            ("metered (per token)", tiers["tier"], tiers["metered_usd"] / n, PALETTE[0]),
            ("GPU-time share", tiers["tier"], tiers["amortized_usd"] / n, PALETTE[1]),
        ],
        hover="%{x}: $%{y:.6f} a request ({name})<extra></extra>",
    )
    fig.update_layout(**PANEL)
    fig.update_yaxes(title="USD per request", tickprefix="$", **NO_SI)
    return fig


def failover_causes(causes: pd.DataFrame) -> go.Figure:
    """Failed-over and failed requests by cause and first failed endpoint, colored by outcome
    (the `causes` frame of `dashboard.failovers`)."""
    df = causes.assign(what=causes["cause"] + " · " + causes["endpoint"])
    colors = {"served by a fallback": PALETTE[4], "failed after failover": AMBER, "failed, no fallback": RED}
    fig = go.Figure()
    for outcome, part in df.groupby("outcome", sort=False):
        fig.add_bar(
            x=part["requests"],
            y=part["what"],
            orientation="h",
            name=str(outcome),
            marker_color=colors.get(outcome, SLATE),
            hovertemplate="%{y}<br>%{x:,} requests (" + str(outcome) + ")<extra></extra>",
        )
    fig.update_layout(barmode="stack", **{**PANEL, "height": max(220, 60 + 34 * df["what"].nunique())})
    fig.update_xaxes(title="requests", tickformat=",")
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def recovery_times(rec: pd.DataFrame) -> go.Figure:
    """Median and longest time to recovery of each endpoint (frame of `dashboard.recovery`), on a
    log axis when they differ a lot: a minute-long outage beside second-long blips."""
    df = rec[rec["recovered"] > 0]
    fig = go.Figure()
    for name, col, color in (("median", "median_s", PALETTE[0]), ("longest", "max_s", AMBER)):
        fig.add_bar(
            x=df[col],
            y=df["endpoint"],
            orientation="h",
            name=name,
            marker_color=color,
            customdata=df["recovered"],
            hovertemplate="%{y}: %{x:,.1f} s (" + name + " of %{customdata:,} outages)<extra></extra>",
        )
    spread = (df["max_s"].max() / df["median_s"].min()) if len(df) and df["median_s"].min() > 0 else 1
    fig.update_layout(barmode="group", **{**PANEL, "height": max(220, 80 + 60 * len(df))})
    fig.update_xaxes(title="seconds to recovery", type="log" if spread > 50 else "linear", tickformat=",")
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def requests_per_second(series: pd.DataFrame, grain: str) -> go.Figure:
    """Requests per second in each bucket (the `series` frame of `dashboard.throughput`)."""
    fig = go.Figure(
        go.Scatter(
            x=series["bucket"],
            y=series["per_s"],
            mode="lines+markers",
            line={"color": PALETTE[0], "shape": "hv"},
            marker={"size": 4},
            customdata=series["requests"],
            hovertemplate="%{x}<br>%{y:,.3f} requests/s (%{customdata:,} in the " + grain + ")<extra></extra>",
        )
    )
    fig.update_layout(**OVER_TIME, showlegend=False)
    fig.update_yaxes(title=f"requests/s (average over each {grain})", rangemode="tozero", **NO_SI)
    return fig


def metered_savings(df: pd.DataFrame, primary_model: str, premium_model: str) -> go.Figure:
    """Savings of the metered spend against each per-token baseline, per bucket (frame of
    `dashboard.savings`); the hover gives the three spends."""
    custom = np.column_stack([df["metered_usd"], df["primary_usd"], df["premium_usd"]])
    fig = go.Figure()
    for name, col, color in (
        (f"vs. all on {primary_model}", "saved_vs_primary_usd", PALETTE[0]),
        (f"vs. all on {premium_model}", "saved_vs_premium_usd", AMBER),
    ):
        fig.add_scatter(
            x=df["bucket"],
            y=df[col],
            name=name,
            mode="lines+markers",
            line={"color": color},
            marker={"size": 4},
            customdata=custom,
            hovertemplate="saved $%{y:,.4f} " + name + "<extra></extra>",
        )
    fig.add_scatter(
        x=df["bucket"],
        y=df["metered_usd"],
        name="metered spend (actual)",
        mode="lines",
        line={"color": SLATE, "dash": "dot"},
        hovertemplate="metered spend $%{y:,.4f}<extra></extra>",
    )
    fig.add_hline(y=0, line={"color": "#94A3B8", "width": 1})
    fig.update_layout(**OVER_TIME)
    fig.update_yaxes(title="USD per bucket", tickprefix="$", **NO_SI)
    return fig
