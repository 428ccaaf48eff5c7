"""Cost simulator: size a fleet of dedicated GPUs beside a serverless tier for some traffic.

UI only. The inputs sit in the main area (presets, then a form with Traffic, Fleet, Serverless
and Policy tabs) and run on request: the Run button, beside the results, runs the pipeline in
`sophia.sim.pipeline`; the last result stays in the session, so the page opens at once with it
(or with an empty state). Ranges, defaults and the request are `sophia.ui.sim_form`; figures,
tables and captions `sophia.ui.sim_view` (one run) and `sophia.ui.sim_plan_view` (planning);
presets `sophia.sim.choices`; exports `sophia.sim.scenarios`.
"""

from __future__ import annotations

import streamlit as st

from pages import common
from sophia import sim
from sophia.analysis import replay
from sophia.log import analytics, versions
from sophia.sim import choices, reference, scenarios
from sophia.sim import workload as traffic_mod
from sophia.ui import appstate, metrics, sim_form, sim_plan_view, sim_view

# The page runs inside app.py (navigation, sidebar, error handling) once app.py lists it.
if "pages/simulator.py" in common.APP.read_text(encoding="utf-8"):
    common.require_shell()
rt = common.runtime()
cfg = rt.cfg
common.page_header(
    "Cost simulator",
    "Sizes a fleet: your traffic (logged, imported or synthetic) served by dedicated GPUs, paid by the hour busy "
    "or idle, and a serverless tier paid per token. A discrete-event simulation of every request, and a fluid "
    "model for the month; nothing is called or recorded.",
)
ss = st.session_state

# Presets: published prices (editable) from sophia/money/presets.toml, and the configured ones.
GPUS = choices.gpu_choices(cfg, usd=appstate.usd)
SERVERLESS = choices.serverless_choices(cfg)
PUBLISHED = reference.published()
gpu_options = list(GPUS)
sl_options = list(SERVERLESS)
primary, premium = cfg.routing.serverless_model, cfg.routing.premium_model


def _apply_gpu_preset() -> None:
    ss.update(sim_form.gpu_fields(GPUS[ss["sim_gpu_preset"]]))


def _apply_sl_preset() -> None:
    ss.update(sim_form.serverless_fields(SERVERLESS[ss["sim_sl_preset"]]))


if "sim_gpus" not in ss:
    ss.update(sim_form.defaults(cfg, gpu_options[0], sl_options[0]))
    _apply_gpu_preset()
    _apply_sl_preset()
ss.setdefault("sim_scenarios", {})
ss.setdefault("sim_name", "Scenario 1")
ss.setdefault("sim_range", appstate.DEFAULT_RANGE)
ss.setdefault("sim_dates", sim_form.default_dates(common.now().date()))

data_version = common.version()
has_log = data_version[0] > 0
facets = common.cached("facets", data_version) if has_log else {"source": []}
known_sources = analytics.distinct(facets["source"]) if has_log else []


@st.cache_resource(max_entries=4, show_spinner="Loading the traffic to simulate…")
def _traffic(where: tuple[str, str], data_version, sources: tuple, start, end):
    with common.runtime().reader() as cur:
        return replay.load(cur, list(sources) or None, start, end)


@st.cache_resource(max_entries=4, show_spinner=False)
def _policy_versions(where: tuple[str, str], data_version) -> list:
    with common.runtime().reader() as cur:
        return versions.history(cur)


@st.cache_data(show_spinner="Working out what the published figures assume…")
def _explained(where: tuple[str, str]) -> dict:
    return reference.explain(cfg, seconds=20)


def _fit_profile() -> None:
    try:
        sources, s0, e0, _ = sim_form.selection(ss, common.now())
        tr = _traffic(common.paths(), data_version, tuple(sources), s0, e0)
        prof = traffic_mod.fit_profile(traffic_mod.from_traffic(tr))
    except ValueError as e:
        ss.sim_fit_error = str(e)
        return
    ss.pop("sim_fit_error", None)
    ss.update(sim_form.fitted_fields(prof))


history = _policy_versions(common.paths(), data_version)
labels = {
    v.version: f"v{v.version} · {v.origin}" + (" (current)" if v.version == rt.router.policy_version else "")
    for v in history
}
modes = ([sim_form.LOGGED] if has_log else []) + [sim_form.SYNTHETIC]

# --- inputs: presets (they fill the form's fields at once), then the form -----------------------------

c1, c2, c3 = st.columns([2, 2, 1.4], vertical_alignment="bottom")
c1.selectbox(
    "GPU type preset",
    gpu_options,
    key="sim_gpu_preset",
    on_change=_apply_gpu_preset,
    help="Fills the Fleet fields with a published price (and assumed performance); edit any field. "
    f"Source: {GPUS[ss['sim_gpu_preset']]['source']}.",
)
c2.selectbox(
    "Serverless provider preset",
    sl_options,
    key="sim_sl_preset",
    on_change=_apply_sl_preset,
    help="Fills the serverless prices with the provider's published prices; edit any field. "
    f"Source: {SERVERLESS[ss['sim_sl_preset']]['source']}.",
)
if has_log:
    c3.button(
        "Fit the profile to the log",
        key="sim_fit",
        on_click=_fit_profile,
        icon=":material/auto_fix_high:",
        width="stretch",
        help="Volume, burstiness and log-normal token distributions of the selected sources and time range "
        "(as last run) become the synthetic profile's.",
    )
if ss.get("sim_fit_error"):
    st.warning(f"The profile could not be fitted: {ss.sim_fit_error}", icon=":material/warning:")


def _numbers(section: str) -> None:
    """A section's numeric fields, row by row (rows stack in order on a narrow screen)."""
    for row in sim_form.LAYOUT[section]:
        for col, key in zip(st.columns(max(3, len(row))), row, strict=False):
            f = sim_form.FIELDS[key]
            empty = {"value": None, "placeholder": "auto"} if key == "sim_wait" else {}
            col.number_input(
                f.label,
                key=key,
                step=f.step,
                format=f.format,
                help=sim_form.range_help(key, primary=primary, premium=premium),
                **empty,
            )


with st.form("sim_form", border=True, enter_to_submit=False):
    t_traffic, t_fleet, t_serverless, t_policy = st.tabs(
        [
            ":material/ssid_chart: Traffic",
            ":material/dns: Fleet",
            ":material/cloud: Serverless & costs",
            ":material/rule: Policy & target",
        ]
    )
    with t_traffic:
        st.radio(
            "Traffic",
            modes,
            key="sim_mode",
            horizontal=True,
            help="A selection of the log with its real arrival times and tokens, or a synthetic profile.",
        )
        if has_log:
            c1, c2, c3 = st.columns(3)
            c1.multiselect(
                "Sources",
                known_sources,
                key="sim_sources",
                placeholder="All sources",
                help="Logged sources or imported files (each its own source).",
            )
            # The last week by default: a log mixing imported years-old traces with today's traffic spans years.
            c2.selectbox("Time range", list(appstate.RANGES), key="sim_range", help="Of the logged traffic; UTC.")
            c3.date_input(
                "Custom days (UTC)",
                key="sim_dates",
                help="The first and last day, both included, when the time range is Custom.",
                max_value=common.now().date(),
            )
        _numbers("traffic")
        with st.expander(
            "Synthetic profile", icon=":material/ssid_chart:", expanded=ss.get("sim_mode") == sim_form.SYNTHETIC
        ):
            st.caption("Its volume when Traffic is Synthetic profile; its tokens also feed the reference scenario.")
            _numbers("profile")
    with t_fleet:
        _numbers("fleet")
        st.checkbox(
            "Autoscale this GPU type",
            key="sim_auto",
            help="Also simulate the GPU type autoscaled between min and max instances, beside this fleet and "
            "all-serverless: instances are paid from request (provisioning) to release.",
        )
        _numbers("autoscale")
    with t_serverless:
        _numbers("serverless")
        st.caption("**Other fixed costs**")
        _numbers("fixed")
    with t_policy:
        c1, c2 = st.columns(2)
        c1.selectbox(
            "Policy",
            sim.POLICIES,
            key="sim_policy",
            format_func=sim.POLICY_LABELS.get,
            help=" · ".join(f"{sim.POLICY_LABELS[p]}: {t}" for p, t in sim_form.POLICY_HELP.items()),
        )
        chosen_version = c2.selectbox(
            "Router policy version",
            list(labels) or [None],
            key="sim_version",
            format_func=lambda v: labels.get(v, "current settings"),
            help="Any stored policy version (e.g. applied from Threshold tuning).",
        )
        _numbers("target")
        c1, c2, c3 = st.columns(3, vertical_alignment="bottom")
        c1.checkbox("Optimizer", key="sim_opt", help="The cheapest GPU count meeting the target.")
        f = sim_form.FIELDS["sim_max_gpus"]
        c2.number_input(f.label, key=f.key, step=f.step, help=sim_form.range_help(f.key))
        c3.checkbox("Break-even curves", key="sim_be", help="Monthly cost against traffic volume, three options.")
    run = st.form_submit_button("Run simulation", type="primary", icon=":material/play_arrow:", key="sim_run")


def _request() -> sim.SimRequest:
    """The form's fields as a simulation request (a ValueError says which field is wrong)."""
    synthetic = ss.get("sim_mode", modes[0]) == sim_form.SYNTHETIC
    settings = next((v.settings for v in history if v.version == chosen_version), None)
    traffic = sim_form.selection(ss, common.now()) if has_log and not synthetic else ([], None, None, "")
    return sim_form.request(ss, cfg, GPUS[ss.sim_gpu_preset], traffic, settings, synthetic)


def _run(key: str) -> dict:
    """Everything the page shows, with progress; an error says what is wrong (shown once, below)."""
    out: dict = {"inputs": sim_form.inputs(ss), "key": key, "error": None}
    slot = st.empty()
    try:
        req = _request()
        tr = (
            None if req.profile else _traffic(common.paths(), data_version, tuple(req.source or ()), req.start, req.end)
        )
        prep = sim.prepare(req, cfg, tr)  # every bad input, and too much work, is refused before the long work
    except ValueError as e:
        out["error"] = str(e)
        return out
    ss.pop("sim_result", None)  # the last run's arrays go before this run's are made
    try:
        with slot.status(f"Simulating {prep.workload.n:,} requests…", expanded=True):
            bar = st.progress(0.0)
            out["report"] = sim.compute(prep, progress=lambda f, m: bar.progress(f, text=m), on_step=st.write)
    except ValueError as e:
        out["error"] = str(e)
    slot.empty()
    return out


key = sim_form.run_key(ss, data_version)
last = ss.get("sim_result")
reused = False
if run:
    if last is not None and last.get("key") == key and not last.get("error"):
        reused = True  # the same inputs and log: the same result
    else:
        ss.sim_result = last = _run(key)

# --- results --------------------------------------------------------------------------------------

if last is None:
    st.info(sim_view.EMPTY_STATE, icon=":material/play_circle:")
    st.stop()
if last.get("error"):
    st.error(f"**The simulation cannot run with these inputs.** {last['error']}", icon=":material/error:")
    st.stop()

report: sim.SimReport = last["report"]
w = report.workload
des: sim.SimResult = report.des
flu: sim.FluidResult = report.fluid
month: sim.FluidResult = report.month
s = des.summary()
if last["key"] != key:
    st.info(
        "The inputs have changed since this run: press **Run simulation** to see their results.",
        icon=":material/update:",
    )
st.caption(sim_view.headline(report) + (" · same inputs as the last run: result kept" if reused else ""))
common.metric_rows(metrics.simulation(s))
for note in s["notes"]:
    st.warning(note, icon=":material/warning:")
if warning := sim_view.span_warning(w):
    st.warning(warning, icon=":material/date_range:")

# The open tab is state (key, on_change="rerun"): the server sends it back on every rerun. Plain
# tabs live in the browser only, and what precedes them varies between reruns (the run's progress
# slot, the "inputs have changed" note, warnings), so a button pressed in a later tab reran the page
# with the tabs at another place, drawn anew at the first tab.
tabs = st.tabs(
    [
        "Costs",
        "Utilization",
        "Latency",
        "Simulation vs fluid",
        "Break-even",
        "Optimizer",
        "Reference scenario",
        "Scenarios",
        "Autoscaling",
    ],
    key="sim_tab",
    on_change="rerun",
)

with tabs[0]:
    st.plotly_chart(sim_view.cost_chart(s, month.summary()), width="stretch", key="sim_cost_chart")
    growth = last["inputs"].get("sim_growth")
    st.caption(sim_view.month_caption(month, growth if growth else None))

with tabs[1]:
    st.plotly_chart(sim_view.utilization_chart(report), width="stretch", key="sim_util_chart")
    if caption := sim_view.utilization_caption(des):
        st.caption(caption)
    st.plotly_chart(sim_view.route_chart(report), width="stretch", key="sim_route_chart")

with tabs[2]:
    pick = sim_view.sample(des)
    st.plotly_chart(sim_view.latency_histogram(des, pick, first_token=True), width="stretch", key="sim_ttft_chart")
    st.plotly_chart(sim_view.latency_histogram(des, pick, first_token=False), width="stretch", key="sim_lat_chart")
    st.dataframe(sim_view.latency_table(des), hide_index=True, width="stretch")

with tabs[3]:
    st.dataframe(sim_view.compare_table(des, flu), hide_index=True, width="stretch")
    st.caption(sim_view.fluid_caption(des, flu))

with tabs[4]:
    be = report.break_even
    if be is None:
        st.info("Tick **Break-even curves** (Policy & target) and run the simulation.", icon=":material/show_chart:")
    else:
        st.plotly_chart(sim_plan_view.break_even_chart(be, w.n * w.monthly_factor), width="stretch", key="sim_be_chart")
        st.dataframe(sim_plan_view.crossovers_table(be), hide_index=True, width="stretch")
        st.caption(sim_plan_view.break_even_caption(be))

with tabs[5]:
    opt = report.optimum
    if opt is None:
        st.info("Tick **Optimizer** (Policy & target) and run the simulation.", icon=":material/tune:")
    else:
        st.plotly_chart(sim_plan_view.optimizer_chart(opt), width="stretch", key="sim_opt_chart")
        found, verdict = sim_plan_view.optimizer_verdict(opt)
        (st.success if found else st.warning)(verdict, icon=":material/check_circle:" if found else ":material/block:")
        st.dataframe(sim_plan_view.optimizer_table(opt), hide_index=True, width="stretch")
        st.caption(
            "Teal bars meet the target, grey ones miss it, the amber one is the cheapest meeting it. "
            "Rows from the simulation were simulated request by request; the others come from the fluid model."
        )

with tabs[6]:
    st.markdown(
        "The reference deployment's **published** figures, beside what the simulator computes for the "
        "configured fleet (the dedicated endpoints of the configuration, router policy) at the published "
        "request rates, with Poisson arrivals and the synthetic profile's token distributions."
    )
    st.dataframe(sim_plan_view.reference_scenario_table(cfg, PUBLISHED), hide_index=True, width="stretch")
    ref_slot = st.empty()
    if st.button("Simulate the reference scenario", key="sim_ref", icon=":material/science:"):
        ss.pop("sim_reference_error", None)
        try:
            prof = sim_form.token_profile(ss)
            with ref_slot.status("Simulating the reference scenario…", expanded=True):
                bar = st.progress(0.0)
                ss.sim_reference = sim.reference_scenario(
                    cfg,
                    PUBLISHED["before"]["requests_per_s"],
                    PUBLISHED["after"]["requests_per_s"],
                    seconds=60,
                    profile=prof,
                    slo_ms=ss.sim_slo,
                    progress=lambda f, m: bar.progress(f, text=m),
                )
        except ValueError as e:
            ss.sim_reference_error = str(e)
        ref_slot.empty()
    if ss.get("sim_reference_error"):
        st.error(f"**The reference scenario cannot run.** {ss.sim_reference_error}", icon=":material/error:")
    ref = ss.get("sim_reference")
    st.dataframe(
        sim_plan_view.reference_table(reference.comparison_rows(PUBLISHED, ref)), hide_index=True, width="stretch"
    )
    if ref:
        st.caption(sim_plan_view.reference_caption(PUBLISHED, ref["after"].summary()))
    else:
        st.caption("Press the button to simulate it (a minute of traffic at each rate, priced for a month).")
    st.markdown("**What the published figures assume, and which of the seed's claims contradict each other**")
    explained = _explained(common.paths())
    st.dataframe(sim_plan_view.assumptions_table(explained), hide_index=True, width="stretch")
    st.dataframe(sim_plan_view.contradictions_table(explained), hide_index=True, width="stretch")
    st.caption(sim_plan_view.curl_caption(explained))

with tabs[8]:
    if report.scaled is None:
        st.info("Tick **Autoscale this GPU type** (Fleet) and run the simulation.", icon=":material/expand:")
    else:
        st.plotly_chart(sim_plan_view.instances_chart(report.scaled), width="stretch", key="sim_instances_chart")
        st.dataframe(sim_plan_view.autoscale_table(report.comparison()), hide_index=True, width="stretch")
        st.caption(sim_plan_view.autoscale_caption(report))

with tabs[7]:
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    name = c1.text_input("Scenario name", key="sim_name", max_chars=60) or "Scenario"
    if c2.button("Save this run", key="sim_save", icon=":material/bookmark_add:", width="stretch"):
        ss.sim_scenarios[name] = scenarios.scenario(
            report, GPUS[last["inputs"]["sim_gpu_preset"]]["name"], last["inputs"]["sim_hourly"]
        )
        st.toast(f"Saved scenario “{name}”", icon=":material/bookmark_added:")
    if c3.button(
        "Clear scenarios",
        key="sim_clear",
        icon=":material/delete_sweep:",
        disabled=not ss.sim_scenarios,
        width="stretch",
    ):
        ss.sim_scenarios = {}
    if ss.sim_scenarios:
        st.dataframe(sim_plan_view.scenarios_table(ss.sim_scenarios), width="stretch")
    else:
        st.caption("Save runs by name to compare them side by side.")

# --- export ---------------------------------------------------------------------------------------

export = scenarios.export_frame(ss.sim_scenarios, report, ss.get("sim_name"))
per_minute = scenarios.per_minute_frame(report)
downloads = (
    (
        "Download results as CSV",
        export,
        "sophia-simulation.csv",
        "sim_csv",
        "The saved scenarios side by side, or this run when none is saved.",
    ),
    ("Download per-minute results as CSV", per_minute, "sophia-simulation-minutes.csv", "sim_csv_minutes", None),
)
for col, (label, frame, file_name, key_, help_) in zip(st.columns(2), downloads, strict=True):
    col.download_button(
        label,
        scenarios.csv_bytes(frame),
        file_name=file_name,
        mime="text/csv",
        icon=":material/download:",
        key=key_,
        on_click="ignore",
        help=help_,
    )
