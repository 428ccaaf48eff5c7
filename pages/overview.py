"""Overview: spend (metered + fixed GPU-hours), traffic, latency and savings over a time range."""

from __future__ import annotations

import streamlit as st

from pages import common
from sophia.analysis import effectiveness
from sophia.log import analytics
from sophia.log.analytics import Filters
from sophia.ui import appstate, charts, metrics
from sophia.vocab import Source

common.require_shell()
rt = common.runtime()
cfg = rt.cfg
common.page_header(
    "Overview",
    "What the routed traffic cost, how fast it was served and what the routing saved. "
    "Spend is metered (per token) plus fixed (every GPU-hour, busy or idle).",
)

version = common.logged_version("overview")

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
f = Filters(start=start, end=end, source=tuple(sources), exclude_source=() if include_demo else (Source.DEMO,))
o = common.cached("overview", version, f)
first, last = common.cached("span", version, f)

if o["total_requests"] == 0:
    st.info(
        "No request matches this range and these sources. Widen the range, pick other sources, or "
        "include demo traffic. GPU-hours are still paid while nothing is routed.",
        icon=":material/filter_alt_off:",
    )

# --- headline figures --------------------------------------------------------------------

common.metric_rows(metrics.overview(o, cfg.routing.premium_model), height="stretch")
if o["verdict"]:  # the GPUs cost more than they save: said in words, with their break-even
    st.warning(o["verdict"], icon=":material/trending_down:")

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
    if measure == "Latency":
        fig = charts.latency_over_time(common.cached("latency", version, f, grain))
    else:
        fixed = (
            analytics.fixed_series(cfg, chart_start, chart_end, grain, o["fleet_periods"], o["sources"])
            if measure == "Spend"
            else None
        )
        fig = charts.groups_over_time(common.cached("timeseries", version, f, by, grain), measure, fixed)
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
    fig = charts.spend_by_model(common.cached("breakdown", version, f, "model"))
    st.plotly_chart(fig, key="ov_by_model")
with right:
    st.subheader("Routing reasons")
    fig = charts.share_pie(common.cached("breakdown", version, f, "reason"))
    st.plotly_chart(fig, key="ov_by_reason")

# --- routing effectiveness ------------------------------------------------------------------

NUM = st.column_config.NumberColumn
TIER_COLUMNS = {
    "requests": NUM("requests", format="localized"),
    "p50_ms": NUM("latency p50 ms", format="localized"),
    "p95_ms": NUM("latency p95 ms", format="localized"),
    "ttft_p50_ms": NUM("first token p50 ms", format="localized"),
    "cost_per_request_usd": NUM("cost a request", format="$%.6f"),
}
FAILOVER_COLUMNS = {
    "cause": st.column_config.TextColumn("cause", help="Why the first endpoint failed: timeout, http_status, connect…"),
    "failed_endpoint": st.column_config.TextColumn("failed first"),
    "served_by": st.column_config.TextColumn("served by"),
    "requests": NUM("requests", format="localized"),
}
RECOVERY_COLUMNS = {
    "outages": NUM("outages", format="localized"),
    "failures": NUM("failed requests", format="localized"),
    "open_outages": NUM("still open", format="localized"),
    "median_recovery_s": NUM("median recovery s", format="%.1f"),
    "longest_recovery_s": NUM("longest recovery s", format="%.1f"),
}

st.subheader("Routing effectiveness")
t_score, t_tiers, t_fail, t_rate, t_save = st.tabs(
    ["Complexity scores", "Serverless vs dedicated", "Failovers", "Throughput", "Savings over time"]
)
with t_score:
    threshold = cfg.routing.complexity_threshold
    st.plotly_chart(
        charts.complexity_histogram(common.cached("complexity_histogram", version, f), threshold), key="ov_hist"
    )
    st.caption(
        f"Requests per score bin; the dashed line is the complexity threshold ({threshold:.2f}): scores above it "
        "go to the dedicated GPUs. Hover a bar: how many requests moving the threshold to its edge would shift."
    )
with t_tiers:
    st.dataframe(
        common.cached("tiers_side_by_side", version, f),
        hide_index=True,
        width="stretch",
        column_config=TIER_COLUMNS,
    )
    st.caption("Latency and time to first token of successful requests; cost is metered plus the GPU-time share.")
with t_fail:
    causes, rec = common.cached("failovers_by_cause", version, f), common.cached("recovery", version, f)
    st.metric(
        "Failover rate", appstate.pct(o["failover_rate"], 2), help="Requests served after another endpoint failed."
    )
    if causes.empty:
        st.caption("No request failed over in this selection.")
    else:
        st.dataframe(causes, hide_index=True, width="stretch", column_config=FAILOVER_COLUMNS)
        st.dataframe(rec, hide_index=True, width="stretch", column_config=RECOVERY_COLUMNS)
        st.caption(
            "Time to recovery: from an endpoint's first failure in a run to its next successful request. "
            "An outage still open has no recovery yet."
        )
with t_rate:
    rate, peak, when = common.cached("throughput", version, f, grain)
    st.plotly_chart(charts.throughput_over_time(rate, peak), key="ov_rate")
    st.caption(
        f"Mean requests a second per {grain}; the busiest minute"
        + (f" was {when:%Y-%m-%d %H:%M} UTC." if when else ".")
    )
with t_save:
    fixed_b = analytics.fixed_series(cfg, chart_start, chart_end, grain, o["fleet_periods"], o["sources"])
    sav = effectiveness.with_gpu_hours(common.cached("savings_over_time", version, f, grain), fixed_b)
    st.plotly_chart(
        charts.savings_over_time(sav, cfg.routing.serverless_model, cfg.routing.premium_model), key="ov_savings"
    )
    st.caption(
        f"Per {grain}: what was paid (metered + GPU-hours while the fleet ran) against the same tokens all on "
        f"{cfg.routing.serverless_model} and all on {cfg.routing.premium_model}. The gap to the first is the saving."
    )
