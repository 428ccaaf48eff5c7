"""Cost simulator: size a fleet of dedicated GPUs beside a serverless tier for some traffic.

UI only: traffic, fleet and policy go in the sidebar form; `sophia.sim` does the work (the run
pipeline in `sophia.sim.pipeline`: discrete-event simulation, fluid month projection, break-even,
optimizer; presets in `sophia.sim.choices`, exports in `sophia.sim.scenarios`).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import common
from sophia import sim
from sophia.analysis import replay
from sophia.log import analytics, versions
from sophia.sim import choices, reference, scenarios
from sophia.sim import workload as traffic_mod
from sophia.ui import appstate, metrics, sim_form, sim_view

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

# Presets: published prices (editable) from sophia/money/presets.toml, and the configured ones.
GPUS = choices.gpu_choices(cfg, usd=appstate.usd)
SERVERLESS = choices.serverless_choices(cfg)
PUBLISHED = reference.published()
gpu_options = list(GPUS)
sl_options = list(SERVERLESS)
primary, premium = cfg.routing.serverless_model, cfg.routing.premium_model


def _apply_gpu_preset() -> None:
    st.session_state.update(sim_form.gpu_fields(GPUS[st.session_state["sim_gpu_preset"]]))


def _apply_sl_preset() -> None:
    st.session_state.update(sim_form.serverless_fields(SERVERLESS[st.session_state["sim_sl_preset"]]))


def _defaults() -> None:
    st.session_state.update(sim_form.defaults(cfg, gpu_options[0], sl_options[0]))
    _apply_gpu_preset()
    _apply_sl_preset()


if "sim_gpus" not in st.session_state:
    _defaults()
st.session_state.setdefault("sim_scenarios", {})

# --- which traffic -------------------------------------------------------------------------------

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


def _fit_profile() -> None:
    s0, e0 = appstate.resolve_range(ss.get("sim_range", "All time"), common.now(), ss.get("sim_dates"))
    tr = _traffic(common.paths(), data_version, tuple(ss.get("sim_sources") or ()), s0, e0)
    try:
        prof = traffic_mod.fit_profile(traffic_mod.from_traffic(tr))
    except ValueError as e:
        ss.sim_fit_error = str(e)
        return
    ss.pop("sim_fit_error", None)
    ss.update(sim_form.fitted_fields(prof))


with st.sidebar:
    st.markdown("### :material/calculate: Simulation")
    st.selectbox(
        "GPU type preset",
        gpu_options,
        key="sim_gpu_preset",
        on_change=_apply_gpu_preset,
        help="Fills the GPU fields below with a published price (and assumed performance); edit any field.",
    )
    st.caption(f"Source: {GPUS[st.session_state['sim_gpu_preset']]['source']}")
    st.selectbox(
        "Serverless provider preset",
        sl_options,
        key="sim_sl_preset",
        on_change=_apply_sl_preset,
        help="Fills the serverless prices below with the provider's published prices; edit any field.",
    )
    st.caption(f"Source: {SERVERLESS[st.session_state['sim_sl_preset']]['source']}")
    if has_log:
        st.button(
            "Fit the synthetic profile to the log",
            key="sim_fit",
            on_click=_fit_profile,
            icon=":material/auto_fix_high:",
            width="stretch",
            help="Volume, burstiness and log-normal token distributions of the selected sources and range "
            "(as last run) become the synthetic profile's.",
        )
    with st.form("sim_form", border=False):
        st.markdown("**Traffic**")
        modes = ([sim_form.LOGGED] if has_log else []) + [sim_form.SYNTHETIC]
        mode = st.radio(
            "Traffic",
            modes,
            key="sim_mode",
            label_visibility="collapsed",
            help="A selection of the log with its real arrival times and tokens, or a synthetic profile.",
        )
        if has_log:
            sources = st.multiselect(
                "Sources",
                known_sources,
                key="sim_sources",
                placeholder="All sources",
                help="Logged sources or imported files (each its own source).",
            )
            # The last week by default: a log mixing imported years-old traces with today's traffic
            # spans years, and a simulation (with break-even sweeps) of such a span takes minutes.
            start, end = common.time_range("sim")
        st.number_input(
            "Scale (× arrival rate)",
            key="sim_scale",
            step=0.5,
            format="%.2f",
            help="2 doubles the arrival rate over the same span (copies laid over the traffic), "
            "0.5 keeps a random half.",
        )
        with st.expander("Synthetic profile", icon=":material/ssid_chart:"):
            st.number_input("Requests per day (average day)", key="sim_rpd", step=10_000.0, format="%.0f")
            st.number_input("Days to simulate", key="sim_days", step=1.0, format="%.2f")
            st.number_input("Burstiness (CV of the per-minute rate)", key="sim_burst", step=0.1, format="%.2f")
            c1, c2 = st.columns(2)
            c1.number_input("Prompt tokens, median", key="sim_pmed", step=10.0, format="%.0f")
            c2.number_input("Prompt sigma (log)", key="sim_psig", step=0.1, format="%.2f")
            c1.number_input("Output tokens, median", key="sim_cmed", step=10.0, format="%.0f")
            c2.number_input("Output sigma (log)", key="sim_csig", step=0.1, format="%.2f")
            st.number_input("max_tokens", key="sim_maxtok", step=64)
        st.number_input(
            "Growth per month (for the month projection)",
            key="sim_growth",
            step=0.05,
            format="%.2f",
            help="0.1 = 10% more traffic each month.",
        )
        st.markdown("**Dedicated GPUs**")
        st.number_input("GPUs", key="sim_gpus", step=1, help="Servers of the GPU type above (0: none).")
        c1, c2 = st.columns(2)
        c1.number_input("USD per GPU-hour", key="sim_hourly", step=0.1, format="%.3f")
        c2.number_input(
            "Output tokens/s",
            key="sim_tps",
            step=100.0,
            format="%.0f",
            help="One server's output tokens per second with a full batch.",
        )
        c1.number_input("Prefill tokens/s", key="sim_prefill", step=1000.0, format="%.0f")
        c2.number_input("Max concurrency", key="sim_conc", step=1, help="Requests in one batch.")
        st.number_input("Unloaded ms per output token", key="sim_itl", step=1.0, format="%.1f")
        st.markdown("**Serverless tier**")
        c1, c2 = st.columns(2)
        c1.number_input("Primary in $/1M", key="sim_in", step=0.01, format="%.3f", help=primary)
        c2.number_input("Primary out $/1M", key="sim_out", step=0.01, format="%.3f", help=primary)
        c1.number_input("Premium in $/1M", key="sim_pin", step=0.01, format="%.3f", help=premium)
        c2.number_input("Premium out $/1M", key="sim_pout", step=0.01, format="%.3f", help=premium)
        c1.number_input("First token (ms)", key="sim_ttft", step=10.0, format="%.0f")
        c2.number_input("ms per token", key="sim_tpot", step=1.0, format="%.1f")
        st.number_input("Rate limit (requests/min, 0 = none)", key="sim_rpm", step=100.0, format="%.0f")
        st.markdown("**Other fixed costs (USD/month)**")
        c1, c2, c3 = st.columns(3)
        c1.number_input("Servers", key="sim_other_servers", step=10.0, format="%.0f")
        c2.number_input("Storage", key="sim_other_storage", step=10.0, format="%.0f")
        c3.number_input("Network", key="sim_other_network", step=10.0, format="%.0f")
        st.markdown("**Policy and target**")
        st.selectbox(
            "Policy",
            sim.POLICIES,
            key="sim_policy",
            format_func=sim.POLICY_LABELS.get,
            help=" · ".join(f"{sim.POLICY_LABELS[p]}: {h}" for p, h in sim_form.POLICY_HELP.items()),
        )
        history = _policy_versions(common.paths(), data_version)
        labels = {
            v.version: f"v{v.version} · {v.origin}" + (" (current)" if v.version == rt.router.policy_version else "")
            for v in history
        }
        chosen_version = st.selectbox(
            "Router policy version",
            list(labels) or [None],
            key="sim_version",
            format_func=lambda v: labels.get(v, "current settings"),
            help="Any stored policy version (e.g. applied from Threshold tuning).",
        )
        c1, c2 = st.columns(2)
        c1.number_input("Target p95 first token (ms)", key="sim_slo", step=50.0, format="%.0f")
        c2.number_input(
            "Wait before overflow (ms)",
            key="sim_wait",
            value=None,
            step=50.0,
            format="%.0f",
            placeholder="auto",
            help="A dedicated request that would queue longer goes serverless. Empty: the target less "
            "the p95 time to first token on an idle GPU.",
        )
        c1, c2 = st.columns(2)
        c1.checkbox("Optimizer", key="sim_opt", help="The cheapest GPU count meeting the target.")
        c2.number_input("up to GPUs", key="sim_max_gpus", step=1)
        st.checkbox("Break-even curves", key="sim_be")
        st.text_input("Scenario name", key="sim_name", max_chars=60)
        run = st.form_submit_button(
            "Run simulation", type="primary", icon=":material/play_arrow:", key="sim_run", width="stretch"
        )

ss = st.session_state


def _request() -> sim.SimRequest:
    """The sidebar's fields as a simulation request (a ValueError says which field is wrong)."""
    synthetic = ss.get("sim_mode", modes[0]) == sim_form.SYNTHETIC
    settings = next((v.settings for v in history if v.version == chosen_version), None)
    traffic = (sources, start, end) if has_log else ([], None, None)
    return sim_form.request(ss, cfg, GPUS[ss.sim_gpu_preset], traffic, settings, synthetic)


def _run(inputs: dict) -> dict:
    """Everything the page shows, with progress; a ValueError says what is wrong."""
    out: dict = {"inputs": inputs, "error": None}
    try:
        req = _request()
        tr = None if req.profile else _traffic(common.paths(), data_version, tuple(sources), start, end)
        prep = sim.prepare(req, cfg, tr)  # every bad input is found before the long work
    except ValueError as e:
        out["error"] = str(e)
        return out
    with st.status(f"Simulating {prep.workload.n:,} requests…", expanded=True) as status:
        bar = st.progress(0.0)
        try:
            out["report"] = sim.compute(prep, progress=lambda f, m: bar.progress(f, text=m), on_step=st.write)
        except ValueError as e:
            out["error"] = str(e)
            status.update(label="The simulation cannot run with these inputs", state="error", expanded=False)
            return out
        status.update(label=f"Simulated {prep.workload.n:,} requests", state="complete", expanded=False)
    return out


inputs = sim_form.inputs(ss)
last = ss.get("sim_result")
if run or last is None:  # the first visit runs the defaults; afterwards the form's button does
    ss.sim_result = last = _run(inputs)

if ss.get("sim_fit_error"):
    st.warning(f"The profile could not be fitted: {ss.sim_fit_error}", icon=":material/warning:")
if last.get("error"):
    st.error(f"**The simulation cannot run with these inputs.** {last['error']}", icon=":material/error:")
    st.caption("Fix the field in the sidebar and run the simulation again.")
    st.stop()

report: sim.SimReport = last["report"]
w = report.workload
des: sim.SimResult = report.des
flu: sim.FluidResult = report.fluid
month: sim.FluidResult = report.month
s = des.summary()
if last["inputs"] != inputs:
    st.info(
        "The sidebar has changed since this run: press **Run simulation** to see the new inputs' results.",
        icon=":material/update:",
    )

# --- headline figures ---------------------------------------------------------------------------

st.caption(sim_view.headline(report))
common.metric_rows(metrics.simulation(s))
for note in s["notes"]:
    st.warning(note, icon=":material/warning:")
if warning := sim_view.span_warning(w):
    st.warning(warning, icon=":material/date_range:")

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
    ]
)

with tabs[0]:
    st.plotly_chart(sim_view.cost_chart(s, month.summary()), width="stretch", key="sim_cost_chart")
    st.caption(sim_view.month_caption(month, ss.sim_growth if last["inputs"].get("sim_growth") else None))

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
    st.dataframe(
        sim.compare(des, flu),
        hide_index=True,
        width="stretch",
        column_config={"relative": st.column_config.NumberColumn("relative", format="percent")},
    )
    st.caption(sim_view.fluid_caption(des, flu))

with tabs[4]:
    be = report.break_even
    if be is None:
        st.info("Tick **Break-even curves** in the sidebar and run the simulation.", icon=":material/show_chart:")
    else:
        fig = sim_view.break_even_chart(be, w.n * w.monthly_factor)
        st.plotly_chart(fig, width="stretch", key="sim_be_chart")
        if be.crossovers:
            st.dataframe(sim_view.crossovers_table(be), hide_index=True, width="stretch")
        else:
            st.caption("No crossover in this range of volumes: one option is the cheapest throughout.")
        st.caption(sim_view.break_even_caption(be))

with tabs[5]:
    opt = report.optimum
    if opt is None:
        st.info("Tick **Optimizer** in the sidebar and run the simulation.", icon=":material/tune:")
    else:
        st.plotly_chart(sim_view.optimizer_chart(opt), width="stretch", key="sim_opt_chart")
        found, verdict = sim_view.optimizer_verdict(opt)
        if found:
            st.success(verdict, icon=":material/check_circle:")
        else:
            st.warning(verdict, icon=":material/block:")
        st.dataframe(opt.curve, hide_index=True, width="stretch")
        st.caption(
            "Teal bars meet the target, grey ones miss it, the amber one is the cheapest meeting it. "
            "'simulation' rows were simulated request by request; 'fluid' rows come from the fluid model."
        )

with tabs[6]:
    pub = pd.DataFrame(PUBLISHED).T
    st.markdown(
        "The reference deployment's **published** table, beside what the simulator computes for the "
        "configured fleet (the dedicated endpoints of the configuration, router policy) at the published "
        "request rates, with Poisson arrivals and the synthetic profile's token distributions."
    )
    if st.button("Simulate the reference scenario", key="sim_ref", icon=":material/science:"):
        with st.status("Simulating the reference scenario…", expanded=True) as status:
            bar = st.progress(0.0)
            prof = sim_form.token_profile(ss)
            try:
                ref = sim.reference_scenario(
                    cfg,
                    PUBLISHED["before"]["requests_per_s"],
                    PUBLISHED["after"]["requests_per_s"],
                    seconds=60,
                    profile=prof,
                    slo_ms=ss.sim_slo,
                    progress=lambda f, m: bar.progress(f, text=m),
                )
                ss.sim_reference = ref
                status.update(label="Reference scenario simulated", state="complete", expanded=False)
            except ValueError as e:
                status.update(label="The reference scenario cannot run", state="error")
                st.error(str(e))
    ref = ss.get("sim_reference")
    rows = reference.comparison_rows(PUBLISHED, ref)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if ref:
        st.caption(sim_view.reference_caption(PUBLISHED, ref["after"].summary()))
    else:
        st.caption("Press the button to simulate it (a minute of traffic at each rate, priced for a month).")
    st.caption(f"Published table: {pub.to_dict()}")

# --- scenarios and export -------------------------------------------------------------------------

with tabs[7]:
    name = last["inputs"].get("sim_name") or "Scenario"
    c1, c2, _ = st.columns([1, 1, 3])
    if c1.button(f"Save as “{name}”", key="sim_save", icon=":material/bookmark_add:"):
        ss.sim_scenarios[name] = scenarios.scenario(
            report, GPUS[last["inputs"]["sim_gpu_preset"]]["name"], last["inputs"]["sim_hourly"]
        )
        st.toast(f"Saved scenario “{name}”", icon=":material/bookmark_added:")
    if c2.button("Clear scenarios", key="sim_clear", icon=":material/delete_sweep:", disabled=not ss.sim_scenarios):
        ss.sim_scenarios = {}
    if ss.sim_scenarios:
        table = scenarios.side_by_side(ss.sim_scenarios)
        st.dataframe(table.astype(str), width="stretch")
    else:
        st.caption("Save runs by name to compare them side by side.")

export = scenarios.export_frame(ss.sim_scenarios, report, last["inputs"].get("sim_name"))
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
for col, (label, frame, file_name, key, help_) in zip(st.columns(2), downloads, strict=True):
    col.download_button(
        label,
        scenarios.csv_bytes(frame),
        file_name=file_name,
        mime="text/csv",
        icon=":material/download:",
        key=key,
        on_click="ignore",
        help=help_,
    )
