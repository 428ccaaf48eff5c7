"""The Cost simulator's sidebar as data: defaults, presets, and the fields as a `sim.SimRequest`.

Streamlit-free: `state` is any mapping of the page's widget keys (`st.session_state` on the
page), so the defaults and the request the sidebar makes are testable without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sophia import sim
from sophia.config import Config
from sophia.sim import choices
from sophia.sim import workload as traffic_mod

LOGGED, SYNTHETIC = "Logged or imported traffic", "Synthetic profile"

POLICY_HELP = {
    sim.Policy.ROUTER: (
        "The routing policy itself (thresholds of the version chosen below); dedicated requests that would "
        "wait too long fail over to the premium serverless model."
    ),
    sim.Policy.DEDICATED_FIRST: (
        "Every request goes to the GPUs you already pay for; one that would wait longer than the "
        "wait budget overflows to the primary serverless model."
    ),
    sim.Policy.SERVERLESS: "Everything metered per token on the primary serverless model (GPUs, if any, sit idle).",
    sim.Policy.DEDICATED: "Everything on the GPUs, queueing as long as it takes: no overflow.",
}

# The widget keys whose values make a run: a run remembers them to tell when the sidebar changed.
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


def inputs(state: Mapping[str, Any]) -> dict:
    """The run's inputs as they stand in `state`."""
    return {k: state[k] for k in INPUTS if k in state}


def gpu_fields(preset: Mapping[str, Any]) -> dict:
    """The GPU fields a GPU preset fills."""
    return {
        "sim_hourly": float(preset["hourly_usd"]),
        "sim_tps": float(preset["throughput_tps"]),
        "sim_prefill": float(preset["prefill_tps"]),
        "sim_conc": int(preset["max_concurrency"]),
        "sim_itl": float(preset["itl_ms"]),
    }


def serverless_fields(preset: Mapping[str, Any]) -> dict:
    """The serverless price fields a provider preset fills."""
    return {
        "sim_in": float(preset["primary"][0]),
        "sim_out": float(preset["primary"][1]),
        "sim_pin": float(preset["premium"][0]),
        "sim_pout": float(preset["premium"][1]),
    }


def defaults(cfg: Config, gpu_preset: str, sl_preset: str) -> dict:
    """Every field's first value (the presets' fields come from the presets themselves)."""
    sl_sim = cfg.serverless.simulation
    return {
        "sim_gpu_preset": gpu_preset,
        "sim_sl_preset": sl_preset,
        "sim_gpus": 2,
        "sim_ttft": float(sl_sim.ttft_ms),
        "sim_tpot": float(sl_sim.tpot_ms),
        "sim_rpm": 0.0,
        "sim_policy": sim.Policy.ROUTER.value,
        "sim_slo": float(sim.DEFAULT_SLO_MS),
        "sim_scale": 1.0,
        "sim_other_servers": 0.0,
        "sim_other_storage": 0.0,
        "sim_other_network": 0.0,
        "sim_opt": True,
        "sim_max_gpus": 16,
        "sim_be": False,
        "sim_growth": 0.0,
        "sim_name": "Scenario 1",
        "sim_rpd": 100_000.0,
        "sim_days": 1.0,
        "sim_burst": 0.3,
        "sim_pmed": 150.0,
        "sim_psig": 1.1,
        "sim_cmed": 180.0,
        "sim_csig": 0.9,
        "sim_maxtok": 1024,
    }


def fitted_fields(prof: traffic_mod.Profile) -> dict:
    """The synthetic profile's fields set from a profile fitted to the log (at most a week of it)."""
    return {
        "sim_mode": SYNTHETIC,
        "sim_rpd": round(prof.requests_per_day, 1),
        "sim_days": round(min(prof.days, 7.0), 3),
        "sim_burst": round(prof.burstiness, 3),
        "sim_pmed": round(prof.prompt_tokens_median, 1),
        "sim_psig": round(prof.prompt_tokens_sigma, 3),
        "sim_cmed": round(prof.completion_tokens_median, 1),
        "sim_csig": round(prof.completion_tokens_sigma, 3),
        "sim_maxtok": int(prof.max_tokens),
    }


def token_profile(state: Mapping[str, Any]) -> traffic_mod.Profile:
    """The synthetic profile's token distributions only (the reference scenario sets the rates)."""
    return traffic_mod.Profile(
        prompt_tokens_median=state["sim_pmed"],
        prompt_tokens_sigma=state["sim_psig"],
        completion_tokens_median=state["sim_cmed"],
        completion_tokens_sigma=state["sim_csig"],
        max_tokens=int(state["sim_maxtok"]),
    )


def _profile(state: Mapping[str, Any]) -> traffic_mod.Profile:
    return traffic_mod.Profile(
        requests_per_day=state["sim_rpd"],
        days=state["sim_days"],
        burstiness=state["sim_burst"],
        prompt_tokens_median=state["sim_pmed"],
        prompt_tokens_sigma=state["sim_psig"],
        completion_tokens_median=state["sim_cmed"],
        completion_tokens_sigma=state["sim_csig"],
        max_tokens=int(state["sim_maxtok"]),
    )


def _fleet(state: Mapping[str, Any], gpu_preset: Mapping[str, Any]) -> Any:
    other = {k: state[f"sim_other_{k}"] for k in ("servers", "storage", "network")}
    return choices.page_fleet(
        gpu_preset,
        state["sim_gpus"],
        state["sim_hourly"],
        state["sim_tps"],
        state["sim_prefill"],
        state["sim_conc"],
        state["sim_itl"],
        other,
        state["sim_ttft"],
        state["sim_tpot"],
        state["sim_rpm"],
    )


def request(
    state: Mapping[str, Any],
    cfg: Config,
    gpu_preset: Mapping[str, Any],
    traffic: tuple[list[str], datetime | None, datetime | None],
    settings: dict | None,
    synthetic: bool,
) -> sim.SimRequest:
    """The sidebar's fields as a simulation request (a ValueError says which field is wrong).

    `traffic` is the logged selection (sources, start, end), unused for a synthetic profile;
    `settings` the chosen policy version's settings (None: the current ones).
    """
    sources, start, end = traffic
    return sim.SimRequest(
        source=None if synthetic else list(sources),
        profile=_profile(state) if synthetic else None,
        start=None if synthetic else start,
        end=None if synthetic else end,
        scale=state["sim_scale"],
        fleet=_fleet(state, gpu_preset),
        prices=choices.serverless_prices(
            cfg, (state["sim_in"], state["sim_out"]), (state["sim_pin"], state["sim_pout"])
        ),
        settings=settings,
        policy=state["sim_policy"],
        slo_ms=state["sim_slo"],
        max_wait_ms=state["sim_wait"],
        project=True,
        growth_per_month=state["sim_growth"],
        optimize=bool(state["sim_opt"]),
        max_gpus=int(state["sim_max_gpus"]),
        break_even=bool(state["sim_be"]),
    )
