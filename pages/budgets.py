"""Budgets: spend against each budget, forecasts, alerts; edit budgets; spend tables and CSV."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from pages import common
from sophia.budgets import alerts, spend
from sophia.budgets import model as bmod
from sophia.budgets import store as budget_store
from sophia.config import ConfigError
from sophia.ui import appstate, charts, metrics
from sophia.vocab import LIVE_SOURCES, BudgetAction, Period, Source, Tier, words

common.require_shell()
rt = common.runtime()
common.page_header(
    "Budgets",
    "Spend against each budget: per-token (metered) spend of the requests in its scope plus the GPU-hours of "
    "the dedicated endpoints in its scope, which accrue hour by hour whether the GPUs are busy or idle.",
)

STATE_BADGE = {"ok": ("on track", "green"), "soft": ("soft limit passed", "orange"), "hard": ("limit reached", "red")}

snapshot = rt.guard.snapshot()
try:
    forecasts = rt.forecasts()
except Exception as e:  # a busy file: figures without forecasts rather than no page
    st.warning(f"Forecasts are not available right now: {e}")
    forecasts = {}


def _forecast_chart(s: dict, f: bmod.Forecast | None) -> go.Figure:
    b = next(x for x in rt.guard.budgets if x.name == s["name"])
    start, end, now = s["period_start"], s["period_end"], rt.guard.now()
    with rt.reader() as cur:
        hourly = budget_store.hourly_metered(cur, b, start, min(now, end))
    cum = charts.cumulative_spend(hourly, bmod.fixed_hourly(b, rt.cfg), s["spent_usd"])
    return charts.budget_forecast((start, end), now, cum, s["spent_usd"], (b.amount_usd, b.soft_limit), f)


# --- each budget --------------------------------------------------------------------------

if not snapshot:
    st.info(
        "No budget is set. Add one below, in `sophia.toml` ([[budgets]]), or with "
        "`sophia budget set NAME --amount USD`.",
        icon=":material/savings:",
    )

for s in snapshot:
    f = forecasts.get(s["name"])
    label, color = STATE_BADGE[s["state"]]
    with st.container(border=True):
        h1, h2 = st.columns([3, 1], vertical_alignment="center")
        h1.markdown(f"#### {s['name']}")
        h1.caption(
            f"{s['scope']} · per {s['period']} (from {s['period_start']:%Y-%m-%d %H:%M} UTC) · "
            f"at the limit: {s['action']} · counts {', '.join(s['sources'])}"
        )
        h2.badge(label, color=color)
        st.progress(
            min(s["percent"] / 100, 1.0),
            text=f"{appstate.usd(s['spent_usd'])} of {appstate.usd(s['amount_usd'])} ({s['percent']:,.0f}%)",
        )
        m = st.columns(4)
        m[0].metric("Metered", appstate.usd(s["metered_usd"]), help="Per-token spend of the requests in scope.")
        m[1].metric(
            "Fixed (GPU-hours)",
            appstate.usd(s["fixed_usd"]),
            help="Every started hour of the dedicated endpoints in scope, busy or idle.",
        )
        m[2].metric(
            "Reserved now",
            appstate.usd(s["reserved_usd"]),
            help="Estimates of requests in flight in this app, held until they settle.",
        )
        if f is not None:
            m[3].metric(
                "Forecast at period end",
                appstate.usd(f.projected_usd),
                help=f"Range {appstate.usd(f.projected_low_usd)} – {appstate.usd(f.projected_high_usd)} "
                f"from a burn rate of {appstate.usd(f.burn_rate_usd_per_hour)}/h.",
            )
            st.caption(
                f"Burn rate {appstate.usd(f.burn_rate_usd_per_hour)} an hour (metered over the trailing window "
                f"plus GPU-hours); at that rate the budget "
                + (f"**runs out {f.runs_out_at:%Y-%m-%d %H:%M} UTC**." if f.runs_out_at else "lasts the period.")
            )
            st.plotly_chart(_forecast_chart(s, f), width="stretch", key=f"bud_chart_{s['name']}")

# --- alerts ---------------------------------------------------------------------------------

st.subheader("Alerts")
recent = common.read(alerts.recent, 100)
if recent:
    st.dataframe(
        metrics.alert_table(recent),
        hide_index=True,
        width="stretch",
        column_config={
            "created_at": st.column_config.DatetimeColumn("raised (UTC)", format="YYYY-MM-DD HH:mm"),
            "period_start": st.column_config.DatetimeColumn("period", format="YYYY-MM-DD"),
            "spent_usd": st.column_config.TextColumn("spent"),
            "amount_usd": st.column_config.TextColumn("limit"),
            "delivered": st.column_config.CheckboxColumn("webhook delivered"),
        },
    )
else:
    st.caption("No alert yet. An alert is raised once per budget, kind (soft limit, limit, forecast) and period.")

# --- editing --------------------------------------------------------------------------------

st.subheader("Set a budget")
scopes = (
    ["global", *(f"tier:{t}" for t in Tier)]
    + [f"endpoint:{e.name}" for e in rt.cfg.endpoints]
    + [f"model:{m}" for m in sorted({m for e in rt.cfg.endpoints for m in e.models})]
)
names = [b.name for b in rt.guard.budgets]
with st.form("bud_form", border=True):
    c = st.columns(3)
    name = c[0].text_input(
        "Name", placeholder="e.g. monthly-total", max_chars=80, help="An existing name replaces that budget."
    )
    scope = c[1].selectbox("Scope", scopes)
    period = c[2].selectbox("Period", words(Period), index=2)
    c = st.columns(4)
    # No min/max on the widget: out of range it would silently keep the old value; the range is
    # checked on saving, with a message.
    amount = c[0].number_input(
        "Amount (USD)",
        value=100.0,
        step=10.0,
        format="%.4f",
        help=f"Spend allowed a period: more than $0, at most {appstate.usd(bmod.MAX_AMOUNT_USD)}.",
    )
    soft = c[1].slider(
        "Soft limit",
        5,
        100,
        80,
        5,
        format="%d%%",
        help="5% to 100% of the amount. Past it, serverless requests use the budget model.",
    )
    action = c[2].selectbox(
        "At the limit",
        words(BudgetAction),
        help="downgrade: budget model · dedicated-only: no metered spend · block: refuse",
    )
    sources = c[3].multiselect(
        "Counts traffic from", [s for s in words(Source) if s != Source.IMPORT], default=[s.value for s in LIVE_SOURCES]
    )
    note = st.text_input("Note", placeholder="why", max_chars=200)
    save = st.form_submit_button("Save budget", type="primary", icon=":material/save:")
if save:
    try:
        new = bmod.parse_budget(
            {
                "name": name,
                "scope": scope,
                "period": period,
                "amount_usd": amount,
                "soft_limit": soft / 100,
                "action": action,
                "sources": sources,
            },
            rt.cfg,
        )
    except ConfigError as e:
        st.error(f"Not saved: {e}", icon=":material/error:")
    else:
        v = rt.save_budgets([*[b for b in rt.guard.budgets if b.name != new.name], new], "page", note or None)
        common.flash(
            f"Budget '{new.name}' saved (budgets version {v}); routing enforces it from the next request.",
            icon=":material/check_circle:",
        )
        st.rerun()
if names:
    d1, d2 = st.columns([1, 3], vertical_alignment="bottom")
    gone = d1.selectbox("Delete a budget", names, key="bud_delete")
    if d2.button("Delete", icon=":material/delete:", key="bud_delete_go"):
        v = rt.save_budgets([b for b in rt.guard.budgets if b.name != gone], "page", f"deleted {gone}")
        common.flash(f"Budget '{gone}' deleted (budgets version {v}).", icon=":material/delete:")
        st.rerun()

# --- spend tables ---------------------------------------------------------------------------

st.subheader("Spend")
version = common.version()
if version[0] == 0:
    st.caption("The log is empty: spend tables appear once requests are routed.")
    st.stop()
t1, t2, t3 = st.columns([1, 2, 2])
by = t1.selectbox("By", words(Period), key="bud_by")
groups = t2.multiselect("Split by", spend.GROUPS, default=["tier"], key="bud_groups")
srcs = t3.multiselect(
    "Sources", common.cached("facets", version)["source"], key="bud_sources", placeholder="All sources"
)
tz = rt.alert_settings.timezone
table = common.read(lambda cur: spend.spend(cur, rt.cfg, by, groups, srcs or None, tz))
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        "period_start": st.column_config.DatetimeColumn(f"{by} from ({tz})", format="YYYY-MM-DD"),
        "requests": st.column_config.NumberColumn("requests", format="localized"),
        "prompt_tokens": st.column_config.NumberColumn("prompt tokens", format="localized"),
        "completion_tokens": st.column_config.NumberColumn("completion tokens", format="localized"),
        "metered_cost_usd": st.column_config.NumberColumn("metered", format="$%.4f"),
        "fixed_cost_usd": st.column_config.NumberColumn("GPU-hours", format="$%.2f"),
        "total_cost_usd": st.column_config.NumberColumn("total", format="$%.2f"),
        "all_serverless_primary_usd": st.column_config.NumberColumn(
            "all on primary", format="$%.4f", help=f"The same tokens on {rt.cfg.routing.serverless_model}"
        ),
        "all_premium_usd": st.column_config.NumberColumn(
            "all on premium", format="$%.4f", help=f"The same tokens on {rt.cfg.routing.premium_model}"
        ),
    },
)
st.download_button(
    "Download spend as CSV",
    spend.to_csv(table),
    file_name=f"sophia-spend-by-{by}.csv",
    mime="text/csv",
    icon=":material/download:",
    key="bud_csv",
)
st.caption(
    "GPU-hours: every started hour of each dedicated endpoint in each period while it was part of the fleet, "
    "busy or idle; metered spend is per token. \"All on primary / premium\" are the same tokens at those models' "
    "prices: a period's savings is its primary figure minus its total. Cells are made inert for spreadsheets."
)
