"""The Cost simulator's inputs as data: defaults, presets, ranges, and the fields as a `sim.SimRequest`.

Streamlit-free: `state` is any mapping of the page's widget keys (`st.session_state` on the
page), so the defaults, the checks and the request the form makes are testable without a browser.
Every numeric field has a range (`FIELDS`, from `sophia.sim.limits.RANGES`), checked before any
work with a one-line error that names the field and states the range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sophia import sim
from sophia.config import Config
from sophia.sim import choices, limits
from sophia.sim import workload as traffic_mod
from sophia.ui import appstate

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

# The widget keys whose values make a run: a run remembers them to tell when the form changed.
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
    "sim_auto",
    "sim_as_min",
    "sim_as_max",
    "sim_as_target",
    "sim_as_delay",
    "sim_as_cool",
)


@dataclass(frozen=True)
class Field:
    """A numeric field of the form: its widget, its range in `limits.RANGES`, its label and help."""

    key: str
    range: str
    label: str
    step: float
    format: str | None = None
    help: str = ""  # may name {primary} and {premium}, the serverless models


FIELDS: dict[str, Field] = {
    f.key: f
    for f in (
        Field(
            "sim_scale",
            "scale",
            "Scale (× arrival rate)",
            0.5,
            "%.3f",
            "2 doubles the arrival rate over the same span (copies laid over the traffic), 0.5 keeps a random half.",
        ),
        Field(
            "sim_growth",
            "growth",
            "Growth per month",
            0.05,
            "%.2f",
            "For the month projection: 0.1 = 10% more traffic each month.",
        ),
        Field("sim_rpd", "requests_per_day", "Requests per day", 10_000.0, "%.0f", "An average day of the week."),
        Field("sim_days", "days", "Days to simulate", 1.0, "%.3f"),
        Field(
            "sim_burst",
            "burstiness",
            "Burstiness",
            0.1,
            "%.2f",
            "Coefficient of variation of the per-minute rate (0: Poisson arrivals).",
        ),
        Field("sim_pmed", "median_tokens", "Prompt tokens, median", 10.0, "%.0f"),
        Field("sim_psig", "sigma", "Prompt sigma (log)", 0.1, "%.2f"),
        Field("sim_maxtok", "max_tokens", "max_tokens", 64, None, "Outputs are capped here."),
        Field("sim_cmed", "median_tokens", "Output tokens, median", 10.0, "%.0f"),
        Field("sim_csig", "sigma", "Output sigma (log)", 0.1, "%.2f"),
        Field("sim_gpus", "gpus", "GPUs", 1, None, "Servers of the GPU type (0: none)."),
        Field("sim_hourly", "gpu_hourly", "USD per GPU-hour", 0.1, "%.3f", "Busy or idle."),
        Field(
            "sim_tps",
            "throughput",
            "Output tokens/s",
            100.0,
            "%.0f",
            "One server's output tokens per second with a full batch.",
        ),
        Field("sim_prefill", "prefill", "Prefill tokens/s", 1000.0, "%.0f", "0 ignores prefill."),
        Field("sim_conc", "max_concurrency", "Max concurrency", 1, None, "Requests in one batch."),
        Field("sim_itl", "itl_ms", "Unloaded ms per output token", 1.0, "%.1f", "At a batch of one request."),
        Field("sim_in", "price", "Primary in $/1M", 0.01, "%.3f", "{primary}: USD per 1M input tokens."),
        Field("sim_out", "price", "Primary out $/1M", 0.01, "%.3f", "{primary}: USD per 1M output tokens."),
        Field("sim_pin", "price", "Premium in $/1M", 0.01, "%.3f", "{premium}: USD per 1M input tokens."),
        Field("sim_pout", "price", "Premium out $/1M", 0.01, "%.3f", "{premium}: USD per 1M output tokens."),
        Field("sim_ttft", "serverless_ttft_ms", "Serverless first token (ms)", 10.0, "%.0f"),
        Field("sim_tpot", "serverless_tpot_ms", "Serverless ms per token", 1.0, "%.1f"),
        Field("sim_rpm", "rate_limit_rpm", "Rate limit (requests/min, 0 = none)", 100.0, "%.0f"),
        Field("sim_other_servers", "other_usd", "Other servers (USD/month)", 10.0, "%.0f"),
        Field("sim_other_storage", "other_usd", "Storage (USD/month)", 10.0, "%.0f"),
        Field("sim_other_network", "other_usd", "Network (USD/month)", 10.0, "%.0f"),
        Field("sim_slo", "slo_ms", "Target p95 first token (ms)", 50.0, "%.0f"),
        Field(
            "sim_wait",
            "max_wait_ms",
            "Wait before overflow (ms)",
            50.0,
            "%.0f",
            "A dedicated request that would "
            "queue longer goes serverless. Empty: the target less the p95 first token on an idle GPU.",
        ),
        Field("sim_as_min", "autoscale_min", "Autoscale: min instances", 1, None, "Instances always running."),
        Field("sim_as_max", "autoscale_max", "Autoscale: max instances", 1, None, "The most instances it may run."),
        Field("sim_as_target", "target_utilization", "Target utilization", 0.05, "%.2f", "Share of a full batch."),
        Field("sim_as_delay", "scale_up_delay_s", "Scale-up delay (s)", 1.0, "%.0f", "Requested to serving."),
        Field("sim_as_cool", "cool_down_s", "Cool-down (s)", 30.0, "%.0f", "Lower load this long releases instances."),
        Field(
            "sim_max_gpus",
            "max_gpus",
            "Optimizer: up to GPUs",
            1,
            None,
            "The largest fleet the optimizer and break-even try.",
        ),
    )
}
# The form's rows of numeric fields, by section (each row one line of columns on a wide screen).
LAYOUT: dict[str, tuple[tuple[str, ...], ...]] = {
    "traffic": (("sim_scale", "sim_growth"),),
    "profile": (("sim_rpd", "sim_days", "sim_burst"), ("sim_pmed", "sim_psig", "sim_maxtok"), ("sim_cmed", "sim_csig")),
    "fleet": (("sim_gpus", "sim_hourly", "sim_tps"), ("sim_prefill", "sim_conc", "sim_itl")),
    "autoscale": (("sim_as_min", "sim_as_max", "sim_as_target"), ("sim_as_delay", "sim_as_cool")),
    "serverless": (("sim_in", "sim_out", "sim_pin", "sim_pout"), ("sim_ttft", "sim_tpot", "sim_rpm")),
    "fixed": (("sim_other_servers", "sim_other_storage", "sim_other_network"),),
    "target": (("sim_slo", "sim_wait"),),
}
SYNTHETIC_ONLY = ("sim_rpd", "sim_days", "sim_burst")  # the profile's volume: unused for logged traffic


def range_help(key: str, **names: str) -> str:
    """A field's help: what it is, then its allowed range."""
    f = FIELDS[key]
    allowed = limits.RANGES[f.range].allowed()
    return f"{f.help.format(**names)} Allowed: {allowed[0].lower()}{allowed[1:]}.".strip()


def check(state: Mapping[str, Any], synthetic: bool) -> None:
    """Every numeric field within its range, in the page's order (a ValueError names the first that is not).

    The wait before overflow may be empty (None: the default budget)."""
    for key, f in FIELDS.items():
        if key not in state or (key == "sim_wait" and state[key] is None):
            continue
        if not synthetic and key in SYNTHETIC_ONLY:
            continue
        limits.check(f.range, state[key], name=f.label)


def inputs(state: Mapping[str, Any]) -> dict:
    """The run's inputs as they stand in `state`."""
    return {k: state[k] for k in INPUTS if k in state}


def run_key(state: Mapping[str, Any], data_version: Sequence) -> str:
    """What identifies a run: its inputs and the log's data version (the same key, the same result)."""
    return hashlib.sha1(repr((sorted(inputs(state).items()), tuple(data_version))).encode()).hexdigest()


def selection(
    state: Mapping[str, Any], now: datetime, default_range: str = appstate.DEFAULT_RANGE
) -> tuple[list[str], datetime | None, datetime | None, str]:
    """The log selection: (sources, start, end, its description); a ValueError for an unusable range."""
    sources = list(state.get("sim_sources") or [])
    preset = state.get("sim_range", default_range)
    dates = state.get("sim_dates")
    if dates is not None and not isinstance(dates, (tuple, list)):
        dates = (dates,)
    start, end = appstate.resolve_range(preset, now, dates)
    who = ", ".join(sources) if sources else "all sources"
    if preset == "All time":
        when = "the whole log"
    elif preset == "Custom":
        first, last = start.date(), (end - timedelta(days=1)).date()
        when = f"{first}" if first == last else f"{first} to {last} (UTC)"
    else:
        when = preset.lower()
    return sources, start, end, f"{who}, {when}"


def default_dates(today: date) -> tuple[date, date]:
    """The custom range's first value: the last seven days."""
    return today - timedelta(days=6), today


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
        "sim_auto": False,
        "sim_as_min": 5,
        "sim_as_max": 50,
        "sim_as_target": 0.7,
        "sim_as_delay": 5.0,
        "sim_as_cool": 300.0,
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


TOKEN_FIELDS = ("sim_pmed", "sim_psig", "sim_cmed", "sim_csig", "sim_maxtok")


def token_profile(state: Mapping[str, Any]) -> traffic_mod.Profile:
    """The synthetic profile's token distributions only (the reference scenario sets the rates), checked."""
    for key in TOKEN_FIELDS:
        limits.check(FIELDS[key].range, state[key], name=FIELDS[key].label)
    return traffic_mod.Profile(
        prompt_tokens_median=state["sim_pmed"],
        prompt_tokens_sigma=state["sim_psig"],
        completion_tokens_median=state["sim_cmed"],
        completion_tokens_sigma=state["sim_csig"],
        max_tokens=int(state["sim_maxtok"]),
    ).check()


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
    traffic: tuple[list[str], datetime | None, datetime | None, str],
    settings: dict | None,
    synthetic: bool,
) -> sim.SimRequest:
    """The form's fields as a simulation request (a ValueError says which field is wrong).

    `traffic` is the logged selection (sources, start, end, its description), unused for a
    synthetic profile; `settings` the chosen policy version's settings (None: the current ones).
    Every field is checked against its range first (`check`).
    """
    check(state, synthetic)
    sources, start, end, label = traffic
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
        selection=None if synthetic else label,
        face="page",
        autoscale=_autoscale(state),
    )


def _autoscale(state: Mapping[str, Any]) -> sim.Autoscale | None:
    """The Fleet group's autoscaling, when ticked (checked with the request)."""
    if not state.get("sim_auto"):
        return None
    return sim.Autoscale(
        min_instances=state["sim_as_min"],
        max_instances=state["sim_as_max"],
        target_utilization=state["sim_as_target"],
        scale_up_delay_s=state["sim_as_delay"],
        cool_down_s=state["sim_as_cool"],
    )
