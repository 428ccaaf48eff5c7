"""Overview: spend (metered + fixed GPU-hours), traffic, latency and savings over a time range."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from pages import common
from sophia.log import analytics
from sophia.log.analytics import Filters
from sophia.ui import appstate

common.require_shell()
rt = common.runtime()
cfg = rt.cfg
common.page_header(
    "Overview",
    "What the routed traffic cost, how fast it was served and what the routing saved. "
    "Spend is metered (per token) plus fixed (every GPU-hour, busy or idle).",
)

version = common.version()
if version[0] == 0:
    common.empty_state("overview")
    st.stop()

facets = common.cached("facets", version)
known_sources = analytics.distinct(facets["source"])
c1, c2, c3 = st.columns([1.1, 2, 1], vertical_alignment="bottom")
with c1:
    start, end = common.time_range("ov")
with c2:
    sources = st.multiselect(
        "Sources",
        known_sources,
        key="ov_sources",
        placeholder="All sources",
        help="Where requests came from: playground, cli, api, import, demo.",
    )
with c3:
    include_demo = st.toggle(
        "Include demo traffic",
        value=True,
        key="ov_demo",
        help="Demo traffic is synthetic (source 'demo'); hide it to see real use only.",
    )
f = Filters(start=start, end=end, source=tuple(sources), exclude_source=() if include_demo else ("demo",))
o = common.cached("overview", version, f)
first, last = common.cached("span", version, f)

if o["total_requests"] == 0:
    st.info(
        "No request matches this range and these sources. Widen the range, pick other sources, or "
        "include demo traffic. GPU-hours are still paid while nothing is routed.",
        icon=":material/filter_alt_off:",
    )

# --- headline figures --------------------------------------------------------------------

hours = f"{appstate.usd(o['hourly_fixed_usd'])}/h"
row = st.columns(4)
row[0].metric(
    "Total spend",
    appstate.usd(o["spend_usd"]),
    border=True,
    height="stretch",
    help="Metered per-token spend plus the fixed price of every dedicated GPU over the range.",
)
row[1].metric(
    "Metered (per token)",
    appstate.usd(o["metered_cost_usd"]),
    border=True,
    height="stretch",
    help="Serverless requests: prompt and completion tokens at the model's catalog price.",
)
row[2].metric(
    "Fixed (GPU-hours)",
    appstate.usd(o["fixed_cost_usd"]),
    border=True,
    height="stretch",
    help=f"Every dedicated endpoint's hourly price ({hours} in total) over the range, busy or idle.",
)
row[3].metric(
    "Savings vs. all-premium",
    appstate.usd(o["cost_savings_usd"]),
    delta=f"{o['cost_savings_percentage']:.1f}%" if o["premium_baseline_usd"] else None,
    border=True,
    height="stretch",
    help=f"Against sending every request to {cfg.routing.premium_model} "
    f"({appstate.usd(o['premium_baseline_usd'])}), with dedicated requests at their GPU-time share. "
    f"Counting every paid GPU-hour instead: {appstate.usd(o['savings_with_fixed_usd'])}.",
)

row = st.columns(4)
row[0].metric(
    "Requests",
    f"{o['total_requests']:,}",
    border=True,
    height="stretch",
    help=f"{o['serverless_requests']:,} serverless, {o['dedicated_requests']:,} dedicated.",
)
row[1].metric(
    "Serverless share",
    f"{o['serverless_percentage']:.1f}%",
    border=True,
    height="stretch",
    help="Requests served by the serverless tier.",
)
row[2].metric(
    "Average cost / request",
    appstate.usd(o["average_cost_per_request"]),
    border=True,
    height="stretch",
    help="(Metered + GPU-time share) ÷ requests.",
)
row[3].metric(
    "GPU time used",
    appstate.usd(o["amortized_cost_usd"]),
    delta=f"{appstate.pct(o['gpu_utilization'])} of GPU-hours" if o["gpu_utilization"] is not None else None,
    delta_color="off",
    delta_arrow="off",
    border=True,
    height="stretch",
    help="Dedicated requests' share of GPU time at each endpoint's throughput (amortized cost). "
    f"Idle GPU time in the range: {appstate.usd(o['idle_gpu_usd'])}.",
)

row = st.columns(4)
row[0].metric(
    "Latency p50",
    appstate.ms(o["latency_p50_ms"]),
    border=True,
    height="stretch",
    help="Median latency of successful requests.",
)
row[1].metric(
    "Latency p95",
    appstate.ms(o["latency_p95_ms"]),
    border=True,
    height="stretch",
    help="95th percentile latency of successful requests.",
)
row[2].metric(
    "Error rate",
    appstate.pct(o["error_rate"], 2),
    border=True,
    height="stretch",
    help=f"{o['error_requests']:,} requests did not end 'ok' (errors, refusals, cancellations).",
)
row[3].metric(
    "Failover rate",
    appstate.pct(o["failover_rate"], 2),
    border=True,
    height="stretch",
    help=f"{o['failover_requests']:,} requests were served by another endpoint than the first choice.",
)

if o["total_requests"] == 0:
    st.stop()

# --- over time ---------------------------------------------------------------------------

chart_start = start or first
chart_end = end or last
grain = analytics.granularity(chart_start, chart_end)


@st.fragment
def over_time() -> None:
    st.subheader("Over time")
    c1, c2 = st.columns([2, 1])
    with c1:
        measure = st.segmented_control(
            "Show", ["Spend", "Requests", "Latency"], default="Spend", key="ov_measure", required=True
        )
    with c2:
        by = st.segmented_control(
            "Split by",
            list(analytics.GROUP_BY),
            default="tier",
            key="ov_by",
            required=True,
            disabled=measure == "Latency",
        )
    st.caption(f"One point per {grain} (UTC), from the range.")
    fig = go.Figure()
    if measure == "Latency":
        df = common.cached("latency", version, f, grain)
        fig.add_scatter(x=df["bucket"], y=df["p50_ms"], name="p50", mode="lines", line={"color": "#4F46E5"})
        fig.add_scatter(
            x=df["bucket"], y=df["p95_ms"], name="p95", mode="lines", line={"color": "#F59E0B", "dash": "dot"}
        )
        fig.update_yaxes(title="latency (ms)", rangemode="tozero")
    else:
        df = common.cached("timeseries", version, f, by, grain)
        colors = common.color_map(df["group"].unique())
        for g, part in df.groupby("group", sort=True):
            y = part["requests"] if measure == "Requests" else part["metered_usd"] + part["amortized_usd"]
            fig.add_bar(x=part["bucket"], y=y, name=str(g), marker_color=colors[g])
        if measure == "Spend":
            fixed = analytics.fixed_series(cfg, chart_start, chart_end, grain)
            if fixed["fixed_usd"].sum() > 0:
                # GPU-hours usually dwarf per-request costs: they get their own, labelled axis.
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
        else:
            fig.update_yaxes(title="requests")
        fig.update_layout(barmode="stack")
    fig.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.15},
    )
    st.plotly_chart(fig, key="ov_chart")
    if measure == "Spend":
        st.caption(
            "Bars (left axis): what requests cost, metered tokens plus dedicated requests' GPU-time share. "
            "Dashed line (right axis): GPU-hours paid whatever the load."
        )


over_time()

# --- where it went -----------------------------------------------------------------------

left, right = st.columns(2)
with left:
    st.subheader("Spend by model")
    by_model = common.cached("breakdown", version, f, "model")
    by_model["cost"] = by_model["metered_usd"] + by_model["amortized_usd"]
    fig = go.Figure(
        go.Bar(
            x=by_model["cost"],
            y=by_model["group"],
            orientation="h",
            marker_color=[common.color_map(by_model["group"])[g] for g in by_model["group"]],
            customdata=by_model["requests"],
            hovertemplate="%{y}<br>$%{x:.4f} over %{customdata:,} requests<extra></extra>",
        )
    )
    fig.update_layout(
        height=260,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"tickprefix": "$"},
        yaxis={"autorange": "reversed"},
    )
    st.plotly_chart(fig, key="ov_by_model")
with right:
    st.subheader("Routing reasons")
    by_reason = common.cached("breakdown", version, f, "reason")
    fig = go.Figure(
        go.Pie(
            labels=by_reason["group"],
            values=by_reason["requests"],
            hole=0.55,
            marker={"colors": common.PALETTE},
            sort=False,
        )
    )
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig, key="ov_by_reason")
