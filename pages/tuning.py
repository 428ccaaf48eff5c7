"""Threshold tuning: move the thresholds and weights, see logged or imported traffic replayed at once."""

from __future__ import annotations

import streamlit as st

from pages import common
from sophia.analysis import replay, tuning
from sophia.log import analytics, versions
from sophia.ui import charts, metrics
from sophia.vocab import Tier

common.require_shell()
rt = common.runtime()
common.page_header(
    "Threshold tuning",
    "Replays the traffic you choose through the routing policy — the same code live routing runs — under the "
    "settings you move. Nothing is called and nothing is recorded until you apply a new policy version.",
)

version = common.logged_version("tuning")

# --- which traffic ------------------------------------------------------------------------

facets = common.cached("facets", version)
known = analytics.distinct(facets["source"])
c1, c2 = st.columns([2, 1.1], vertical_alignment="bottom")
with c2:
    start, end = common.time_range("tn", default="All time")
with c1:
    sources = st.multiselect(
        "Traffic to replay",
        known,
        key="tn_sources",
        placeholder="All sources",
        help="Logged sources (playground, cli, api, demo) or imported files, each its own source.",
    )


@st.cache_resource(max_entries=4, show_spinner="Loading the traffic to replay…")
def _traffic(where: tuple[str, str], data_version, sources: tuple, start, end) -> replay.Traffic:
    with common.runtime().reader() as cur:
        return replay.load(cur, list(sources) or None, start, end)


@st.cache_resource(max_entries=32, show_spinner=False)
def _prepared(traffic_key: tuple, scorer_key: str, _t: replay.Traffic, _cfg, tiers: tuple) -> replay.Prepared:
    return replay.prepare(_t, _cfg, dict(tiers))


@st.cache_resource(max_entries=16, show_spinner="Sweeping 101 thresholds…")
def _sweep(traffic_key: tuple, scorer_key: str, cost_threshold: float, _t, _cfg, tiers: tuple, _p):
    return replay.sweep(_t, _cfg, tiers=dict(tiers), prepared=_p)


traffic_key = (common.paths(), version, tuple(sources), start, end)
t = _traffic(*traffic_key)
if t.n == 0:
    st.info(
        "No request matches this selection. Pick other sources or widen the range.", icon=":material/filter_alt_off:"
    )
    st.stop()

current_cfg = rt.cfg
label_models = list(t.labels)
tiers: dict[str, str] = {}
if label_models:
    default = replay.label_tiers(t)
    with st.expander(
        f"Quality labels: {int(t.labelled.sum()):,} labelled requests", expanded=False, icon=":material/verified:"
    ):
        st.caption(
            "Which labelled model stands for which tier (by default the less accurate one serves the "
            "serverless tier, the more accurate one the dedicated tier)."
        )
        a, b = st.columns(2)
        sl = a.selectbox(
            "Serverless tier answers like",
            label_models,
            index=label_models.index(default[Tier.SERVERLESS]),
            key="tn_weak",
        )
        dd = b.selectbox(
            "Dedicated tier answers like",
            label_models,
            index=label_models.index(default[Tier.DEDICATED]),
            key="tn_strong",
        )
        tiers = {Tier.SERVERLESS: sl, Tier.DEDICATED: dd}
        if sl == dd:
            st.warning("Both tiers stand for the same model: quality cannot change with the split.")

span_start, span_end = t.span
st.caption(
    f"{t.n:,} requests from {span_start:%Y-%m-%d %H:%M} to {span_end:%Y-%m-%d %H:%M} UTC · "
    f"current policy: version {rt.router.policy_version}"
)


def _scorer_key(cfg) -> str:
    """What replay.prepare depends on: every setting but the two thresholds, which a slider moves."""
    s = versions.settings_of(cfg)
    for k in ("complexity_threshold", "cost_threshold_usd"):
        s["routing"].pop(k)
    return versions.digest(s)


def _set(**values) -> None:
    for k, v in values.items():
        st.session_state[k] = v


def _defaults() -> None:
    s = current_cfg.scorer
    _set(
        tn_cx=current_cfg.routing.complexity_threshold,
        tn_cost=current_cfg.routing.cost_threshold_usd,
        tn_mt=s.max_tokens_weight,
        **{f"tn_g_{g.name}": g.weight for g in s.keyword_groups},
        **{f"tn_b_{c}": w for c, w in s.length_bands},
    )


if "tn_cx" not in st.session_state:
    _defaults()


@st.fragment
def tuner() -> None:
    s = current_cfg.scorer
    left, right = st.columns([1, 2.2], gap="large")
    with left:
        st.markdown("**Thresholds**")
        cx = st.slider(
            "Complexity threshold",
            0.0,
            1.0,
            step=0.01,
            key="tn_cx",
            help="A score strictly above it goes to a dedicated GPU (high-complexity).",
        )
        cost = st.number_input(
            "Cost threshold (USD)",
            min_value=0.0,
            max_value=1000.0,
            step=0.01,
            format="%.4f",
            key="tn_cost",
            help="An estimated serverless cost above it goes dedicated.",
        )
        with st.expander("Scorer weights", icon=":material/tune:"):
            bands = {
                c: st.slider(f"Prompt over {c:,} characters", 0.0, 1.0, step=0.05, key=f"tn_b_{c}")
                for c, _ in s.length_bands
            }
            groups = {
                g.name: st.slider(
                    f"Each {g.name} word ({', '.join(g.words)})", 0.0, 1.0, step=0.05, key=f"tn_g_{g.name}"
                )
                for g in s.keyword_groups
            }
            mt = st.slider(f"max_tokens over {s.max_tokens_over:,}", 0.0, 1.0, step=0.05, key="tn_mt")
        st.button("Back to the current policy", on_click=_defaults, icon=":material/restart_alt:")
    try:
        proposed_cfg = tuning.propose(current_cfg, cx, cost, groups, bands, mt)
    except ValueError as e:
        right.error(str(e))
        return
    tier_key = tuple(sorted(tiers.items()))
    cur_key, new_key = _scorer_key(current_cfg), _scorer_key(proposed_cfg)
    p_cur = _prepared(traffic_key, cur_key, t, current_cfg, tier_key)
    p_new = _prepared(traffic_key, new_key, t, proposed_cfg, tier_key)
    c = tuning.compare(t, current_cfg, proposed_cfg, tiers, p_cur, p_new)
    sw = _sweep(traffic_key, new_key, cost, t, proposed_cfg, tier_key, p_new)

    with right:
        b = c.proposed
        cv = replay.labelled_curve(t, sw, tiers)
        common.metric_rows(metrics.tuning(c, cv))
        lat = " · ".join(f"{k} p50 {v['p50']:,.0f} / p95 {v['p95']:,.0f} ms" for k, v in b.latency_ms.items())
        st.caption(
            f"Estimated latency: {lat}. Against the log: {b.changed_decisions:,} decisions differ "
            f"({b.runtime_only:,} runtime-only ones — failover, budget, forced, cache — not compared)."
        )
        st.plotly_chart(charts.tuning_curve(sw, c.current, b, t, cv, rt.cfg), width="stretch", key="tn_curve")

    _knobs(sw, t)
    _apply(proposed_cfg, c)


_GOALS = {  # (label, the largest value allowed)
    "share": ("Target dedicated share", 100.0),
    "budget": ("Monthly budget", 1e9),
    "quality": ("Quality floor", 100.0),
}


def _goal(kind: str, sw, t: replay.Traffic) -> None:
    """Button callback: set the complexity threshold that meets a goal (before widgets are drawn)."""
    value = st.session_state[f"tn_goal_{kind}"]
    # The inputs take any number (a widget's own bounds silently keep the old value); the
    # ranges are checked here, with a message that says what is allowed.
    label, hi = _GOALS[kind]
    if value is None or not 0 <= value <= hi:
        st.session_state["tn_goal_msg"] = f"{label} = {value:,.0f} is not allowed: expected 0 to {hi:,.0f}."
        return
    if kind == "share":
        th = replay.threshold_for_share(sw, value / 100)
        why = None
    elif kind == "budget":
        th = replay.threshold_for_budget(sw, t, rt.cfg, value)
        why = "No threshold fits this budget: the GPU-hours alone cost more. Raise it, or size the fleet down."
    else:
        th = replay.threshold_for_quality(sw, value / 100)
        why = "No complexity threshold reaches this quality with these weights."
    if th is None:
        st.session_state["tn_goal_msg"] = why
    else:
        st.session_state["tn_cx"] = th
        st.session_state.pop("tn_goal_msg", None)


def _knobs(sw, t: replay.Traffic) -> None:
    with st.expander("Find the threshold for a goal", icon=":material/my_location:"):
        k1, k2, k3 = st.columns(3)
        k1.number_input("Target dedicated share (%)", value=20.0, step=1.0, key="tn_goal_share", help="0 to 100 %.")
        k1.button("Set threshold", key="tn_go_share", on_click=_goal, args=("share", sw, t))
        k2.number_input(
            "Monthly budget (USD)",
            value=3000.0,
            step=100.0,
            key="tn_goal_budget",
            help="Metered spend plus every GPU-hour, scaled to 30 days: $0 to $1,000,000,000.",
        )
        k2.button("Set threshold", key="tn_go_budget", on_click=_goal, args=("budget", sw, t))
        labelled = bool(t.labelled.any())
        k3.number_input(
            "Quality floor (%)",
            value=80.0,
            step=1.0,
            key="tn_goal_quality",
            disabled=not labelled,
            help="0 to 100 %. Needs labelled traffic (`sophia import --format labels`).",
        )
        k3.button("Set threshold", key="tn_go_quality", disabled=not labelled, on_click=_goal, args=("quality", sw, t))
        if st.session_state.get("tn_goal_msg"):
            st.warning(st.session_state["tn_goal_msg"], icon=":material/block:")


def _apply(proposed_cfg, c: tuning.Comparison) -> None:
    same = versions.digest(versions.settings_of(proposed_cfg)) == versions.digest(versions.settings_of(rt.cfg))
    with st.form("tn_apply", border=True):
        st.markdown("**Apply as a new policy version**")
        note = st.text_input(
            "Note",
            placeholder="why: e.g. 'more long prompts to GPUs after the Q3 review'",
            max_chars=200,
            key="tn_note",
        )
        go_ = st.form_submit_button(
            "Apply",
            type="primary",
            icon=":material/published_with_changes:",
            disabled=same,
            help="Live routing uses it from the next request on."
            if not same
            else "The proposed settings are the current ones.",
        )
    if go_:
        v = rt.apply_settings(proposed_cfg, note.strip() or None)
        common.flash(
            f"Policy version {v} applied: {c.changed:,} decisions of this traffic change.",
            icon=":material/check_circle:",
        )
        st.rerun()


tuner()

# --- history ---------------------------------------------------------------------------

st.subheader("Policy versions")
hist = common.read(tuning.history)
st.dataframe(
    hist,
    hide_index=True,
    width="stretch",
    column_config={
        "applied_at": st.column_config.DatetimeColumn("applied at (UTC)", format="YYYY-MM-DD HH:mm"),
        "cost_threshold_usd": st.column_config.NumberColumn(format="$%.4f"),
    },
)
older = [int(v) for v in hist["version"] if int(v) != rt.router.policy_version]
if older:
    r1, r2 = st.columns([1, 3], vertical_alignment="bottom")
    back = r1.selectbox("Roll back to version", older, key="tn_rollback")
    if r2.button("Roll back", icon=":material/history:", key="tn_rollback_go"):
        with rt.reader() as cur:
            chosen = next(v for v in versions.history(cur) if v.version == back)
        new = rt.apply_settings(
            versions.config_from(rt.cfg, chosen.settings), f"rollback to version {back}", origin="rollback"
        )
        for k in [k for k in st.session_state if k.startswith("tn_") and k not in ("tn_sources",)]:
            del st.session_state[k]
        common.flash(f"Rolled back: version {new} has the settings of version {back}.", icon=":material/history:")
        st.rerun()
