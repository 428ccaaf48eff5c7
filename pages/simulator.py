"""Cost simulator: size a fleet of dedicated GPUs beside a serverless tier for some traffic.

UI only: traffic, fleet and policy go in the sidebar form; `sophia.sim.simulator` does the work
(discrete-event simulation, fluid month projection, break-even, optimizer).
"""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import common
from sophia.analysis import replay
from sophia.log import analytics, versions
from sophia.sim import fleet as fleet_mod
from sophia.sim import simulator as sim
from sophia.sim import workload as traffic_mod
from sophia.sim.fleet import Fleet, GPUPool
from sophia.ui import appstate

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

# --- presets: published prices (editable), assumed performance ---------------------------------
# GPU prices are providers' published on-demand list prices per GPU-hour (2025; check the
# provider's page before relying on them). Throughput, prefill, batch size and inter-token
# latency are assumptions for a mid-size model served by vLLM-class software: measure yours.
GPU_PRESETS: dict[str, dict] = {
    "NVIDIA H100 SXM 80GB · Lambda on-demand": dict(
        name="h100",
        hourly_usd=2.99,
        throughput_tps=3000.0,
        prefill_tps=24000.0,
        max_concurrency=64,
        itl_ms=15.0,
        source="lambda.ai/pricing — on-demand, per GPU",
    ),
    "NVIDIA A100 SXM 80GB · Lambda on-demand": dict(
        name="a100",
        hourly_usd=1.79,
        throughput_tps=1600.0,
        prefill_tps=12000.0,
        max_concurrency=48,
        itl_ms=22.0,
        source="lambda.ai/pricing — on-demand, per GPU",
    ),
    "NVIDIA A10G 24GB · AWS g5.xlarge on-demand": dict(
        name="a10g",
        hourly_usd=1.006,
        throughput_tps=600.0,
        prefill_tps=4000.0,
        max_concurrency=16,
        itl_ms=28.0,
        source="aws.amazon.com/ec2/instance-types/g5 — us-east-1 on-demand",
    ),
}
# Serverless providers' published prices per 1M input / output tokens for the two Llama 4 models
# (2025; check the provider's page). Latency stays the configured one unless edited.
SERVERLESS_PRESETS: dict[str, dict] = {
    "Groq": dict(primary=(0.11, 0.34), premium=(0.20, 0.60), source="groq.com/pricing"),
    "Together AI": dict(primary=(0.18, 0.59), premium=(0.27, 0.85), source="together.ai/pricing"),
    "Fireworks AI": dict(primary=(0.15, 0.60), premium=(0.22, 0.88), source="fireworks.ai/pricing"),
}
# The reference deployment's published before/after table, shown beside what the simulator computes.
PUBLISHED = {
    "before": {"monthly_cost_usd": 3867.0, "requests_per_s": 100.0, "latency_ms": 500.0},
    "after": {"monthly_cost_usd": 2100.0, "requests_per_s": 500.0, "latency_ms": 150.0},
}
POLICY_HELP = {
    "router": "The routing policy itself (thresholds of the version chosen below); dedicated requests that would "
    "wait too long fail over to the premium serverless model.",
    "dedicated-first": "Every request goes to the GPUs you already pay for; one that would wait longer than the "
    "wait budget overflows to the primary serverless model.",
    "serverless": "Everything metered per token on the primary serverless model (GPUs, if any, sit idle).",
    "dedicated": "Everything on the GPUs, queueing as long as it takes: no overflow.",
}
CHART = dict(height=330, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))

configured = {f"{e.name} · configured ({appstate.usd(e.hourly_usd)}/h)": e for e in cfg.tier_endpoints("dedicated")}
gpu_options = list(configured) + list(GPU_PRESETS)
sl_options = ["Configured (sophia.toml)"] + list(SERVERLESS_PRESETS)
primary, premium = cfg.routing.serverless_model, cfg.routing.premium_model


def _gpu_fields(label: str) -> dict:
    if label in configured:
        p = fleet_mod.pool_from_endpoint(configured[label])
        return dict(
            name=p.name,
            hourly_usd=p.hourly_usd,
            throughput_tps=p.throughput_tps,
            prefill_tps=p.prefill_tps,
            max_concurrency=p.slots,
            itl_ms=p.itl_ms,
            source="sophia.toml",
        )
    return GPU_PRESETS[label]


def _apply_gpu_preset() -> None:
    f = _gpu_fields(st.session_state["sim_gpu_preset"])
    st.session_state.update(
        sim_hourly=float(f["hourly_usd"]),
        sim_tps=float(f["throughput_tps"]),
        sim_prefill=float(f["prefill_tps"]),
        sim_conc=int(f["max_concurrency"]),
        sim_itl=float(f["itl_ms"]),
    )


def _sl_fields(label: str) -> dict:
    if label in SERVERLESS_PRESETS:
        return SERVERLESS_PRESETS[label]
    p, q = (next(m for m in cfg.models if m.name == name) for name in (primary, premium))
    return dict(
        primary=(p.input_per_mtok, p.output_per_mtok),
        premium=(q.input_per_mtok, q.output_per_mtok),
        source="sophia.toml",
    )


def _apply_sl_preset() -> None:
    f = _sl_fields(st.session_state["sim_sl_preset"])
    st.session_state.update(
        sim_in=float(f["primary"][0]),
        sim_out=float(f["primary"][1]),
        sim_pin=float(f["premium"][0]),
        sim_pout=float(f["premium"][1]),
    )


def _defaults() -> None:
    sl_sim = cfg.serverless.simulation
    st.session_state.update(
        sim_gpu_preset=gpu_options[0],
        sim_sl_preset=sl_options[0],
        sim_gpus=2,
        sim_ttft=float(sl_sim.ttft_ms),
        sim_tpot=float(sl_sim.tpot_ms),
        sim_rpm=0.0,
        sim_policy="router",
        sim_slo=float(sim.DEFAULT_SLO_MS),
        sim_scale=1.0,
        sim_other_servers=0.0,
        sim_other_storage=0.0,
        sim_other_network=0.0,
        sim_opt=True,
        sim_max_gpus=16,
        sim_be=False,
        sim_growth=0.0,
        sim_name="Scenario 1",
        sim_rpd=100_000.0,
        sim_days=1.0,
        sim_burst=0.3,
        sim_pmed=150.0,
        sim_psig=1.1,
        sim_cmed=180.0,
        sim_csig=0.9,
        sim_maxtok=1024,
    )
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
    ss.update(
        sim_mode="Synthetic profile",
        sim_rpd=round(prof.requests_per_day, 1),
        sim_days=round(min(prof.days, 7.0), 3),
        sim_burst=round(prof.burstiness, 3),
        sim_pmed=round(prof.prompt_tokens_median, 1),
        sim_psig=round(prof.prompt_tokens_sigma, 3),
        sim_cmed=round(prof.completion_tokens_median, 1),
        sim_csig=round(prof.completion_tokens_sigma, 3),
        sim_maxtok=int(prof.max_tokens),
    )


with st.sidebar:
    st.markdown("### :material/calculate: Simulation")
    st.selectbox(
        "GPU type preset",
        gpu_options,
        key="sim_gpu_preset",
        on_change=_apply_gpu_preset,
        help="Fills the GPU fields below with a published price (and assumed performance); edit any field.",
    )
    st.caption(f"Source: {_gpu_fields(st.session_state['sim_gpu_preset'])['source']}")
    st.selectbox(
        "Serverless provider preset",
        sl_options,
        key="sim_sl_preset",
        on_change=_apply_sl_preset,
        help="Fills the serverless prices below with the provider's published prices; edit any field.",
    )
    st.caption(f"Source: {_sl_fields(st.session_state['sim_sl_preset'])['source']}")
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
        modes = (["Logged or imported traffic"] if has_log else []) + ["Synthetic profile"]
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
            help=" · ".join(f"{sim.POLICY_LABELS[p]}: {h}" for p, h in POLICY_HELP.items()),
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


INPUTS = (
    "sim_mode",
    "sim_sources",
    "sim_range",
    "sim_dates",
    "sim_scale",
    "sim_rpd",
    "sim_days",
    "sim_burst",
    "sim_pmed",
    "sim_psig",
    "sim_cmed",
    "sim_csig",
    "sim_maxtok",
    "sim_growth",
    "sim_gpu_preset",
    "sim_gpus",
    "sim_hourly",
    "sim_tps",
    "sim_prefill",
    "sim_conc",
    "sim_itl",
    "sim_sl_preset",
    "sim_in",
    "sim_out",
    "sim_pin",
    "sim_pout",
    "sim_ttft",
    "sim_tpot",
    "sim_rpm",
    "sim_other_servers",
    "sim_other_storage",
    "sim_other_network",
    "sim_policy",
    "sim_version",
    "sim_slo",
    "sim_wait",
    "sim_opt",
    "sim_max_gpus",
    "sim_be",
    "sim_name",
)


def _inputs() -> dict:
    return {k: ss[k] for k in INPUTS if k in ss}


def _workload() -> traffic_mod.Workload:
    if ss.get("sim_mode", modes[0]) == "Synthetic profile":
        prof = traffic_mod.Profile(
            requests_per_day=ss.sim_rpd,
            days=ss.sim_days,
            burstiness=ss.sim_burst,
            prompt_tokens_median=ss.sim_pmed,
            prompt_tokens_sigma=ss.sim_psig,
            completion_tokens_median=ss.sim_cmed,
            completion_tokens_sigma=ss.sim_csig,
            max_tokens=int(ss.sim_maxtok),
        ).check()
        w = traffic_mod.synthetic(prof, seed=0, label="synthetic profile")
    else:
        tr = _traffic(common.paths(), data_version, tuple(sources), start, end)
        if not tr.n:
            raise ValueError(
                "no request matches this selection of the log: pick other sources, widen the time "
                "range, or simulate a synthetic profile"
            )
        w = traffic_mod.from_traffic(
            tr,
            np.datetime64(start) if start else None,
            np.datetime64(end) if end else None,
            label=", ".join(sources) or "the whole log",
        )
    return traffic_mod.scale(w, ss.sim_scale, seed=0)


def _fleet() -> Fleet:
    f = _gpu_fields(ss.sim_gpu_preset)
    gpus = int(ss.sim_gpus)
    pool = GPUPool(
        name=f["name"],
        count=gpus,
        hourly_usd=ss.sim_hourly,
        throughput_tps=ss.sim_tps,
        prefill_tps=ss.sim_prefill,
        max_concurrency=int(ss.sim_conc),
        itl_ms=ss.sim_itl,
        model=configured[ss.sim_gpu_preset].models[0] if ss.sim_gpu_preset in configured else fleet_mod.DEDICATED_MODEL,
    )
    other = (("servers", ss.sim_other_servers), ("storage", ss.sim_other_storage), ("network", ss.sim_other_network))
    return Fleet(
        (pool,),
        other_monthly=tuple((k, v) for k, v in other if v != 0),
        serverless_ttft_ms=ss.sim_ttft,
        serverless_tpot_ms=ss.sim_tpot,
        rate_limit_rpm=ss.sim_rpm if ss.sim_rpm != 0 else None,
        label=f"{gpus} × {f['name']}",
    ).check()


def _config():
    c = fleet_mod.with_prices(cfg, {primary: (ss.sim_in, ss.sim_out), premium: (ss.sim_pin, ss.sim_pout)})
    for v in history:
        if v.version == chosen_version:
            return versions.config_from(c, v.settings)
    return c


def _run(inputs: dict) -> dict:
    """Everything the page shows, with progress; a ValueError says what is wrong."""
    out: dict = {"inputs": inputs, "error": None}
    try:
        w = _workload()
        fl = _fleet()
        c = _config()
        policy = ss.sim_policy
        sim.check_slo(ss.sim_slo)
        sim.plan(w.take(np.arange(0)), c, fl, policy)  # every bad input is found before the long work
    except ValueError as e:
        out["error"] = str(e)
        return out
    steps = 3 + int(bool(ss.sim_be)) + int(bool(ss.sim_opt))
    done = 0
    with st.status(f"Simulating {w.n:,} requests…", expanded=True) as status:
        bar = st.progress(0.0)

        def step(label: str, fn, weight: float = 1.0):
            nonlocal done
            st.write(label)

            def sub(frac: float, msg: str) -> None:
                bar.progress(min(1.0, (done + frac * weight) / steps), text=msg)

            t0 = time.perf_counter()
            r = fn(sub)
            done += weight
            bar.progress(min(1.0, done / steps), text=f"{label} ({time.perf_counter() - t0:.1f} s)")
            return r

        try:
            out["workload"] = w
            out["des"] = step(
                "Discrete-event simulation of every request…",
                lambda p: sim.simulate(w, c, fl, policy, ss.sim_slo, ss.sim_wait),
            )
            out["fluid"] = step(
                "Fluid model on the same sample…",
                lambda p: sim.project(w, c, fl, policy, ss.sim_slo, ss.sim_wait, days=None),
            )
            out["month"] = step(
                "A 30-day projection at 1-minute resolution…",
                lambda p: sim.project(
                    w, c, fl, policy, ss.sim_slo, ss.sim_wait, days=30, growth_per_month=ss.sim_growth
                ),
            )
            if ss.sim_be:
                hybrid = policy if policy in ("router", "dedicated-first") else "dedicated-first"
                out["be"] = step(
                    "Break-even curves…",
                    lambda p: (
                        sim.break_even(
                            w,
                            c,
                            fl,
                            ss.sim_slo,
                            hybrid,
                            max_gpus=int(ss.sim_max_gpus),
                            max_wait_ms=ss.sim_wait,
                            progress=p,
                        )
                        if w.n
                        else None
                    ),
                )
            if ss.sim_opt:
                out["opt"] = step(
                    "Optimizer…",
                    lambda p: sim.optimize(
                        w, c, fl, policy, ss.sim_slo, max_gpus=int(ss.sim_max_gpus), max_wait_ms=ss.sim_wait, progress=p
                    ),
                )
        except ValueError as e:
            out["error"] = str(e)
            status.update(label="The simulation cannot run with these inputs", state="error", expanded=False)
            return out
        status.update(label=f"Simulated {w.n:,} requests", state="complete", expanded=False)
    return out


inputs = _inputs()
last = ss.get("sim_result")
if run or last is None:  # the first visit runs the defaults; afterwards the form's button does
    ss.sim_result = last = _run(inputs)

if ss.get("sim_fit_error"):
    st.warning(f"The profile could not be fitted: {ss.sim_fit_error}", icon=":material/warning:")
if last.get("error"):
    st.error(f"**The simulation cannot run with these inputs.** {last['error']}", icon=":material/error:")
    st.caption("Fix the field in the sidebar and run the simulation again.")
    st.stop()

w: traffic_mod.Workload = last["workload"]
des: sim.SimResult = last["des"]
flu: sim.FluidResult = last["fluid"]
month: sim.FluidResult = last["month"]
s = des.summary()
if last["inputs"] != inputs:
    st.info(
        "The sidebar has changed since this run: press **Run simulation** to see the new inputs' results.",
        icon=":material/update:",
    )

# --- headline figures ---------------------------------------------------------------------------

st.caption(
    f"{w.n:,} requests over {w.span_s / 3600:,.1f} h ({w.label}) · {sim.POLICY_LABELS[des.policy]} · "
    f"{des.gpus} GPU{'s' if des.gpus != 1 else ''} · simulated in {des.elapsed_s:.2f} s"
)
row = st.columns(4)
row[0].metric(
    "Monthly cost",
    appstate.usd(s["monthly_cost_usd"]),
    border=True,
    help="GPU-hours (busy or idle) + metered serverless + other fixed costs, for 30 days of this traffic.",
)
row[1].metric(
    "GPU-hours",
    appstate.usd(s["gpu_cost_usd"]),
    border=True,
    help="Every GPU's hourly price × 720 hours, busy or idle.",
)
row[2].metric(
    "Metered (per token)",
    appstate.usd(s["metered_cost_usd"]),
    border=True,
    help="Serverless requests (by policy and overflowed) at the per-token prices, scaled to 30 days.",
)
row[3].metric("Other fixed", appstate.usd(s["other_fixed_cost_usd"]), border=True)
row = st.columns(4)
row[0].metric("Dedicated share", appstate.pct(s["dedicated_share"]), border=True, help="Requests served on the GPUs.")
row[1].metric(
    "Overflow share",
    appstate.pct(s["overflow_share"]),
    border=True,
    help="Requests meant for the GPUs that went serverless because the wait would break the budget.",
)
row[2].metric(
    "GPU utilization",
    appstate.pct(s["utilization"]),
    border=True,
    delta=f"peak minute {appstate.pct(s['peak_minute_utilization'])}",
    delta_color="off",
    delta_arrow="off",
    help="Share of the batch slots in use (a full batch is the saturated throughput).",
)
row[3].metric(
    "p95 first token",
    appstate.ms(s["p95_ttft_ms"]),
    border=True,
    delta=("target met" if s["meets_target"] else "target missed") + f" ({appstate.ms(s['slo_ms'])})",
    delta_color="normal" if s["meets_target"] else "inverse",
    delta_arrow="off",
    help="95th percentile time to first token over all requests; the target applies to it.",
)
row = st.columns(4)
row[0].metric(
    "p95 latency",
    appstate.ms(s["p95_latency_ms"]),
    border=True,
    delta=f"p50 {appstate.ms(s['p50_latency_ms'])}",
    delta_color="off",
    delta_arrow="off",
    help="End-to-end latency of all requests (the target applies to the first token).",
)
row[1].metric(
    "Missed the target",
    appstate.pct(s["missed_share"]),
    border=True,
    help=f"{s['missed_target']:,} requests had a first token later than the target.",
)
row[2].metric("Cost per request", appstate.usd(s["cost_per_request_usd"]), border=True)
row[3].metric(
    "Cost per 1M tokens",
    appstate.usd(s["cost_per_mtok_usd"]),
    border=True,
    help="All costs over prompt + output tokens.",
)
for note in s["notes"]:
    st.warning(note, icon=":material/warning:")
if w.span_s > 90 * traffic_mod.DAY_S:
    st.warning(
        f"The traffic spans {w.span_s / traffic_mod.DAY_S:,.0f} days (sources from different periods?): rates "
        "are averaged over all of it. Pick sources or a time range that belong together.",
        icon=":material/date_range:",
    )

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
    fig = go.Figure()
    parts = [
        ("GPU-hours", "gpu_cost_usd", common.TIER_COLORS["dedicated"]),
        ("Metered", "metered_cost_usd", common.TIER_COLORS["serverless"]),
        ("Other fixed", "other_fixed_cost_usd", common.PALETTE[2]),
    ]
    ms = month.summary()
    for label, key, color in parts:
        fig.add_bar(
            name=label,
            x=["Simulated sample", "Month projection (fluid)"],
            y=[s[key], ms[key]],
            marker_color=color,
            hovertemplate="%{x}<br>" + label + ": $%{y:,.2f}<extra></extra>",
        )
    fig.update_layout(barmode="stack", title="Monthly cost breakdown", yaxis_title="USD per month", **CHART)
    st.plotly_chart(fig, width="stretch", key="sim_cost_chart")
    st.caption(
        f"The projection repeats the sample over 30 days at 1-minute resolution"
        f"{f' with {ss.sim_growth:.0%} growth per month' if last['inputs'].get('sim_growth') else ''}: "
        f"{appstate.usd(ms['monthly_cost_usd'])} a month, {ms['requests']:,} requests, p95 first token "
        f"{appstate.ms(ms['p95_ttft_ms'])} (computed in {month.elapsed_s:.2f} s)."
    )

with tabs[1]:
    util = pd.Series(des.minute_utilization, index=pd.DatetimeIndex(w.clock()))
    util_fluid = pd.Series(flu.minute["utilization"].to_numpy(), index=util.index)
    fig = go.Figure()
    if w.span_s <= traffic_mod.DAY_S:
        fig.add_scatter(
            x=util.index,
            y=util,
            name="Simulation (per minute)",
            mode="lines",
            line=dict(color=common.TIER_COLORS["dedicated"]),
        )
        fig.add_scatter(
            x=util.index, y=util_fluid, name="Fluid model", mode="lines", line=dict(color=common.PALETTE[2], dash="dot")
        )
        fig.update_layout(title="GPU utilization, minute by minute")
    else:  # several days: the day's profile, 10-minute bins of the per-minute figures
        bins = (util.index.hour * 60 + util.index.minute) // 10
        tod = pd.to_datetime("2000-01-01") + pd.to_timedelta(np.arange(144) * 10, unit="min")
        for y, name, style in (
            (util.groupby(bins).max(), "Simulation, peak minute", dict(width=1)),
            (util.groupby(bins).mean(), "Simulation, mean", dict(width=2)),
            (util_fluid.groupby(bins).mean(), "Fluid model, mean", dict(dash="dot")),
        ):
            color = common.PALETTE[2] if "Fluid" in name else common.TIER_COLORS["dedicated"]
            fig.add_scatter(
                x=tod[y.index],
                y=y,
                name=name,
                mode="lines",
                line=dict(color=color, **style),
                opacity=0.55 if "peak" in name else 1.0,
            )
        fig.update_layout(
            title=f"GPU utilization over the day (UTC, {w.span_s / traffic_mod.DAY_S:.0f} days overlaid)",
            xaxis_tickformat="%H:%M",
        )
    top = float(max(util.max(), util_fluid.max(), 0.0)) if len(util) else 0.0
    fig.update_layout(
        yaxis_tickformat=".1%" if top < 0.05 else ".0%", yaxis_range=[0, min(1.05, max(0.01, top * 1.15))], **CHART
    )
    st.plotly_chart(fig, width="stretch", key="sim_util_chart")
    if des.utilization_by_pool:
        st.caption(
            "Share of batch slots in use. Per pool: "
            + ", ".join(f"{k} {appstate.pct(v)}" for k, v in des.utilization_by_pool.items())
            + f" · peak minute {appstate.pct(des.peak_minute_utilization)}, mean minute "
            f"{appstate.pct(des.mean_minute_utilization)}"
        )
    step = max(1, int(np.ceil(w.minutes / 720)))
    reqs = pd.DataFrame(des.minute_requests.T, columns=list(sim.ROUTES), index=pd.DatetimeIndex(w.clock()))
    reqs = reqs.groupby(np.arange(len(reqs)) // step).sum().set_index(reqs.index[::step])
    fig = go.Figure()
    for name, color in zip(
        sim.ROUTES, [common.TIER_COLORS["serverless"], common.TIER_COLORS["dedicated"], common.PALETTE[3]], strict=True
    ):
        fig.add_bar(x=reqs.index, y=reqs[name], name=name, marker_color=color, marker_line_width=0)
    fig.update_layout(
        barmode="stack",
        bargap=0,
        title=f"Requests per {step} minute{'s' if step > 1 else ''}, by where they were served",
        **CHART,
    )
    st.plotly_chart(fig, width="stretch", key="sim_route_chart")

with tabs[2]:
    cap = 50_000
    rng = np.random.default_rng(0)
    pick = rng.choice(des.requests, size=min(cap, des.requests), replace=False) if des.requests else np.zeros(0, int)
    fig = go.Figure()
    for route, name in ((sim.DEDICATED, "dedicated"), (sim.SERVERLESS, "serverless"), (sim.OVERFLOW, "overflow")):
        sel = pick[des.route[pick] == route]
        if len(sel):
            fig.add_histogram(x=des.ttft_ms[sel], name=f"{name} ({des.count(route):,})", opacity=0.75, nbinsx=60)
    fig.add_vline(x=des.slo_ms, line_dash="dash", annotation_text=f"target {des.slo_ms:,.0f} ms")
    fig.update_layout(barmode="overlay", title="Time to first token", xaxis_title="ms", **CHART)
    st.plotly_chart(fig, width="stretch", key="sim_ttft_chart")
    fig = go.Figure()
    for route, name in ((sim.DEDICATED, "dedicated"), (sim.SERVERLESS, "serverless"), (sim.OVERFLOW, "overflow")):
        sel = pick[des.route[pick] == route]
        if len(sel):
            fig.add_histogram(x=des.latency_ms[sel], name=name, opacity=0.75, nbinsx=60)
    fig.update_layout(barmode="overlay", title="End-to-end latency", xaxis_title="ms", **CHART)
    st.plotly_chart(fig, width="stretch", key="sim_lat_chart")
    rows = []
    for tier, v in des.latency().items():
        for what in ("ttft_ms", "latency_ms"):
            if v[what]:
                rows.append({"tier": tier, "measure": "first token" if what == "ttft_ms" else "latency", **v[what]})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

with tabs[3]:
    cmp = sim.compare(des, flu)
    st.dataframe(
        cmp,
        hide_index=True,
        width="stretch",
        column_config={"relative": st.column_config.NumberColumn("relative", format="percent")},
    )
    st.caption(
        "Both models on the same sample. The fluid model sees each minute's averages (an M/M/k queue with "
        "balking per minute), so it misses bursts shorter than a minute; the simulation serves every request. "
        f"Fluid model: {flu.elapsed_s * 1000:.0f} ms; simulation: {des.elapsed_s * 1000:.0f} ms."
    )

with tabs[4]:
    be = last.get("be")
    if be is None:
        st.info("Tick **Break-even curves** in the sidebar and run the simulation.", icon=":material/show_chart:")
    else:
        df = be.curves
        fig = go.Figure()
        for col, name, color in (
            ("all_serverless_usd", "All serverless", common.TIER_COLORS["serverless"]),
            ("dedicated_only_usd", "Dedicated only (fewest GPUs meeting the target)", common.TIER_COLORS["dedicated"]),
            ("hybrid_usd", f"Hybrid ({sim.POLICY_LABELS[be.policy].lower()})", common.PALETTE[2]),
        ):
            fig.add_scatter(
                x=df["requests_per_month"], y=df[col], name=name, mode="lines+markers", line=dict(color=color)
            )
        for c in be.crossovers:
            fig.add_vline(x=c["requests_per_month"], line_dash="dot", line_color="#64748B")
            fig.add_scatter(
                x=[c["requests_per_month"]],
                y=[c["monthly_cost_usd"]],
                mode="markers",
                marker=dict(size=12, symbol="x", color="#EF4444"),
                showlegend=False,
                hovertemplate=f"{c['between'][0]} = {c['between'][1]}<br>%{{x:,.0f}} requests/month"
                "<br>$%{y:,.0f}/month<extra></extra>",
            )
        fig.add_vline(x=w.n * w.monthly_factor, line_color="#10B981", annotation_text="this traffic")
        fig.update_layout(
            title="Monthly cost against traffic volume",
            xaxis_type="log",
            yaxis_type="log",
            xaxis_title="requests per month",
            yaxis_title="USD per month",
            **CHART,
        )
        st.plotly_chart(fig, width="stretch", key="sim_be_chart")
        if be.crossovers:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "curves": f"{a} ↔ {b}",
                            "requests per month": round(c["requests_per_month"]),
                            "requests/s": round(c["requests_per_s"], 3),
                            "monthly cost": round(c["monthly_cost_usd"], 2),
                            "cheaper above": c["cheaper_above"],
                        }
                        for c in be.crossovers
                        for a, b in [c["between"]]
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
        else:
            st.caption("No crossover in this range of volumes: one option is the cheapest throughout.")
        st.caption(
            f"The sample scaled from ×{df['multiplier'].min():g} to ×{df['multiplier'].max():g}, priced with "
            "the fluid model. Dedicated-only must meet the target with no overflow; the hybrid overflows."
        )

with tabs[5]:
    opt = last.get("opt")
    if opt is None:
        st.info("Tick **Optimizer** in the sidebar and run the simulation.", icon=":material/tune:")
    else:
        cur = opt.curve
        fig = go.Figure()
        colors = np.where(cur["meets_target"], common.TIER_COLORS["dedicated"], "#CBD5E1").astype(object)
        colors[(cur["gpus"] == opt.best_gpus).to_numpy()] = common.PALETTE[2]
        fig.add_bar(
            x=cur["gpus"],
            y=cur["monthly_cost_usd"],
            name="monthly cost",
            marker_color=colors,
            hovertemplate="%{x} GPUs: $%{y:,.0f}/month<extra></extra>",
        )
        fig.add_scatter(
            x=cur["gpus"],
            y=cur["p95_ttft_ms"],
            name="p95 first token (ms)",
            yaxis="y2",
            mode="lines+markers",
            line=dict(color=common.PALETTE[3]),
        )
        fig.add_hline(y=opt.slo_ms, yref="y2", line_dash="dash", annotation_text="target", line_color="#EF4444")
        if opt.best_gpus is not None:
            best_row = cur[cur["gpus"] == opt.best_gpus].iloc[0]
            fig.add_annotation(
                x=opt.best_gpus,
                y=best_row["monthly_cost_usd"],
                text="cheapest meeting the target",
                showarrow=True,
                arrowhead=2,
            )
        fig.update_layout(
            title="Monthly cost and p95 first token by GPU count",
            xaxis_title="GPUs",
            yaxis_title="USD per month",
            yaxis2=dict(title="ms", overlaying="y", side="right", showgrid=False),
            **CHART,
        )
        st.plotly_chart(fig, width="stretch", key="sim_opt_chart")
        if opt.best_gpus is None:
            st.warning(
                f"No fleet of up to {int(cur['gpus'].max())} GPUs meets the target under this policy: raise "
                "the target, allow more GPUs, or change the policy.",
                icon=":material/block:",
            )
        else:
            st.success(
                f"**{opt.best_gpus} GPU{'s' if opt.best_gpus != 1 else ''}** is the cheapest fleet meeting "
                f"the target: {appstate.usd(opt.best.costs.monthly_usd)} a month "
                f"(found in {opt.elapsed_s:.1f} s).",
                icon=":material/check_circle:",
            )
        st.dataframe(cur, hide_index=True, width="stretch")
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
            prof = traffic_mod.Profile(
                prompt_tokens_median=ss.sim_pmed,
                prompt_tokens_sigma=ss.sim_psig,
                completion_tokens_median=ss.sim_cmed,
                completion_tokens_sigma=ss.sim_csig,
                max_tokens=int(ss.sim_maxtok),
            )
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
    a = ref["after"].summary() if ref else None
    rows = []
    for key, label in (
        ("monthly_cost_usd", "Monthly cost (USD)"),
        ("requests_per_s", "Requests per second"),
        ("latency_ms", "Latency (ms)"),
    ):
        row = {"": label, "published before": PUBLISHED["before"][key], "published after": PUBLISHED["after"][key]}
        if ref:
            for col, name in (
                ("simulated before", "before"),
                ("simulated after, same rate", "after at before rate"),
                ("simulated after", "after"),
            ):
                r = ref[name]
                v = {
                    "monthly_cost_usd": r.costs.monthly_usd,
                    "requests_per_s": r.requests / r.span_s,
                    "latency_ms": r.summary()["p50_ttft_ms"],
                }[key]
                row[col] = round(v, 2)
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if ref:
        a = ref["after"].summary()
        st.caption(
            f"Simulated before: all serverless at {PUBLISHED['before']['requests_per_s']:g} req/s. After: the "
            f"configured fleet under the router policy, at {PUBLISHED['before']['requests_per_s']:g} and at "
            f"{PUBLISHED['after']['requests_per_s']:g} req/s — at the latter "
            f"{appstate.pct(a['dedicated_share'])} on the GPUs, {appstate.pct(a['overflow_share'])} overflowed, "
            f"GPU utilization {appstate.pct(a['utilization'])}. "
            f"The latency row is the p50 time to first token (end-to-end p50 after: "
            f"{appstate.ms(a['p50_latency_ms'])}). The published table does not say its tokens per request: "
            "the simulation uses the synthetic profile's distributions from the sidebar."
        )
    else:
        st.caption("Press the button to simulate it (a minute of traffic at each rate, priced for a month).")
    st.caption(f"Published table: {pub.to_dict()}")

# --- scenarios and export -------------------------------------------------------------------------

with tabs[7]:
    name = last["inputs"].get("sim_name") or "Scenario"
    c1, c2, _ = st.columns([1, 1, 3])
    if c1.button(f"Save as “{name}”", key="sim_save", icon=":material/bookmark_add:"):
        ss.sim_scenarios[name] = {
            "traffic": w.label,
            "requests": w.n,
            "policy": des.policy,
            "GPU type": _gpu_fields(last["inputs"]["sim_gpu_preset"])["name"],
            "USD per GPU-hour": last["inputs"]["sim_hourly"],
            **s,
            "best_gpus": last["opt"].best_gpus if last.get("opt") else None,
            "month_projection_usd": ms["monthly_cost_usd"],
        }
        st.toast(f"Saved scenario “{name}”", icon=":material/bookmark_added:")
    if c2.button("Clear scenarios", key="sim_clear", icon=":material/delete_sweep:", disabled=not ss.sim_scenarios):
        ss.sim_scenarios = {}
    if ss.sim_scenarios:
        keep = [
            "traffic",
            "requests",
            "policy",
            "gpus",
            "GPU type",
            "USD per GPU-hour",
            "monthly_cost_usd",
            "gpu_cost_usd",
            "metered_cost_usd",
            "other_fixed_cost_usd",
            "cost_per_request_usd",
            "dedicated_share",
            "overflow_share",
            "utilization",
            "p50_latency_ms",
            "p95_latency_ms",
            "p95_ttft_ms",
            "meets_target",
            "missed_share",
            "best_gpus",
            "month_projection_usd",
        ]
        table = pd.DataFrame({k: {f: v.get(f) for f in keep} for k, v in ss.sim_scenarios.items()})
        st.dataframe(table.astype(str), width="stretch")
    else:
        st.caption("Save runs by name to compare them side by side.")

summary = pd.DataFrame(
    [
        {
            "scenario": last["inputs"].get("sim_name"),
            "traffic": w.label,
            **{k: v for k, v in s.items() if not isinstance(v, (dict, list))},
        }
    ]
)
export = (
    pd.DataFrame(
        [
            {"scenario": k, **{f: v for f, v in sc.items() if not isinstance(v, (dict, list))}}
            for k, sc in ss.sim_scenarios.items()
        ]
    )
    if ss.sim_scenarios
    else summary
)
per_minute = pd.DataFrame(
    {
        "minute": w.clock(),
        "utilization_simulated": des.minute_utilization,
        "utilization_fluid": flu.minute["utilization"].to_numpy(),
        **{f"requests_{r}": des.minute_requests[i] for i, r in enumerate(sim.ROUTES)},
    }
)


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()


d1, d2 = st.columns(2)
d1.download_button(
    "Download results as CSV",
    _csv(export),
    file_name="sophia-simulation.csv",
    mime="text/csv",
    icon=":material/download:",
    key="sim_csv",
    on_click="ignore",
    help="The saved scenarios side by side, or this run when none is saved.",
)
d2.download_button(
    "Download per-minute results as CSV",
    _csv(per_minute),
    file_name="sophia-simulation-minutes.csv",
    mime="text/csv",
    icon=":material/download:",
    key="sim_csv_minutes",
    on_click="ignore",
)
