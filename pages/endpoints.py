"""Endpoints: health, recent latency and errors of each endpoint; the active configuration."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from pages import common
from sophia.ui import appstate, charts, metrics
from sophia.vocab import Tier

common.require_shell()
rt = common.runtime()
cfg = rt.cfg
common.page_header(
    "Endpoints",
    "Each endpoint's health as this app sees it, its recent latency and errors from the "
    "log, and the configuration in force (secrets masked).",
)

WINDOWS = {"Last hour": timedelta(hours=1), "Last 24 hours": timedelta(hours=24), "Last 7 days": timedelta(days=7)}
STATE_COLOR = {"healthy": "green", "degraded": "yellow", "cooling-down": "red", "probing": "orange"}


def endpoint_card(e, s, h: dict) -> None:
    """One endpoint: what it is, its health in this process, its record in the log."""
    st.markdown(f"**{e.name}**")
    badges = st.container(horizontal=True, gap="small")
    with badges:
        state = h.get("state", "unknown")
        label = state.replace("-", " ")
        if h.get("cooldown_remaining_s"):
            label += f" · {h['cooldown_remaining_s']:.0f} s left"
        st.badge(label, color=STATE_COLOR.get(state, "gray"), icon=":material/favorite:")
        st.badge(e.tier, color="violet" if e.tier == Tier.DEDICATED else "blue")
        if e.simulated:
            st.badge("simulated", icon=":material/science:", color="orange")
    a, b, c = st.columns([1, 1, 1.4])  # the latency takes the most digits
    a.metric("Tries", f"{int(s['tries']):,}", help="Requests whose failover path named this endpoint.")
    b.metric(
        "Errors",
        appstate.pct(s["error_rate"]) if pd.notna(s["error_rate"]) else "—",
        help="Tries that failed here (the request moved on, or ended in an error).",
    )
    c.metric(
        "p95 (ms)",  # the unit in the label: "13,202" fits a card where "13,202 ms" would be cut
        metrics.latency_ms(s["p95_ms"], unit=False),
        help=f"95th percentile latency of requests it served (p50 {metrics.latency_ms(s['p50_ms'])}, "
        f"first token p50 {metrics.latency_ms(s['ttft_p50_ms'])}).",
    )
    price = (
        f"{appstate.usd(e.hourly_usd)}/h, {e.throughput_tps:,.0f} tok/s" if e.tier == Tier.DEDICATED else "per token"
    )
    where = "built-in simulation" if e.simulated else appstate.mask_url(e.base_url)
    st.caption(f"{', '.join(e.models)}  \n{where} · {price}")
    if pd.notna(s["last_ts"]):
        st.caption(f"Last request {s['last_ts']:%Y-%m-%d %H:%M} UTC")
    if h.get("last_error"):
        st.caption(f":red[Last error: {h['last_error']}]")


@st.fragment
def health_panel() -> None:
    top = st.columns([2, 1], vertical_alignment="bottom")
    window = top[0].segmented_control("Window", list(WINDOWS), default="Last 24 hours", key="ep_window", required=True)
    if top[1].button(
        "Check all now",
        icon=":material/stethoscope:",
        key="ep_check",
        width="stretch",
        help="Ask every endpoint whether it answers; one that passes leaves its cool-down.",
    ):
        with st.status("Checking endpoints…", expanded=True) as status:
            results = {}
            for e in cfg.endpoints:
                st.write(f"{e.name}…")
                results.update(rt.router.check([e.name]))
            failed = [n for n, ok in results.items() if not ok]
            status.update(
                label=("All endpoints answered" if not failed else f"No answer from {', '.join(failed)}"),
                state="complete" if not failed else "error",
                expanded=bool(failed),
            )
    version = common.version()
    since = common.now() - WINDOWS[window]
    since = since.replace(second=0, microsecond=0)
    logged = common.cached("endpoint_stats", version, since)
    health = rt.router.health.snapshot()
    per_row = 2
    for i in range(0, len(cfg.endpoints), per_row):
        cols = st.columns(per_row)
        for col, e in zip(cols, cfg.endpoints[i : i + per_row], strict=False):
            s = logged.loc[logged["endpoint"] == e.name].iloc[0]
            with col.container(border=True, key=f"ep_card_{e.name}", height="stretch"):
                endpoint_card(e, s, health.get(e.name, {}))
    st.caption(
        "Health (state, cool-down, last error) is what this app process saw in its own calls and checks; "
        "tries, error rates and latency come from the log and cover every process. A try failed when the "
        "request moved on to another endpoint or ended in an error there."
    )
    if version[0] == 0:
        st.info(
            "No request is logged yet, so there is no latency or error history. Send a message in the "
            "Chat playground or run `sophia demo` to load demo traffic.",
            icon=":material/info:",
        )
        return
    grain = "hour" if WINDOWS[window] <= timedelta(days=3) else "day"
    lat = common.cached("endpoint_latency", version, since, grain)
    if lat.empty:
        st.info(f"No successful request in the {window.lower()}: widen the window.", icon=":material/info:")
        return
    st.subheader("Recent latency (p95)")
    fig = charts.endpoint_latency(lat, [e.name for e in cfg.endpoints], lambda n: common.simulated_label(n, cfg))
    st.plotly_chart(fig, key="ep_latency")
    st.caption(f"One point per {grain} (UTC).")


health_panel()

st.subheader("Active configuration")
info = appstate.app_info(cfg, common.paths()[1])
masked = appstate.masked_config(cfg)
st.caption(
    f"From `{info.config_path}`. API keys are never shown: only the variable that holds each key and whether it is set."
)
if keys := metrics.key_status(masked):
    st.caption(keys)
st.markdown("##### Endpoints")
st.table(metrics.endpoint_table(masked))
st.caption(
    f"Dedicated endpoints cost {appstate.usd(masked['fixed_cost_per_hour_usd'])} an hour together, busy or idle."
)
st.markdown("##### Models and prices")
st.table(metrics.model_table(cfg))
st.markdown("##### Routing, scorer, failover and cache")
st.table(metrics.settings_table(masked))
st.caption("Settings are named as in the configuration file; `_s` is seconds, `_usd` US dollars.")
