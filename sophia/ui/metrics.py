"""The headline figures of the Overview, Cost simulator and Threshold tuning pages, and the
tables of the Endpoints and Budgets pages.

Streamlit-free: each function turns a page's numbers into rows of `Metric`s (label, formatted
value, help, delta), which `pages.common.metric_rows` lays out as `st.metric` cards, or into a
small DataFrame of display text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sophia.config import Config
from sophia.money import baselines
from sophia.money.periods import MONTH_DAYS, MONTH_HOURS
from sophia.ui.appstate import ms, pct, usd
from sophia.vocab import Tier


@dataclass(frozen=True)
class Metric:
    """One `st.metric` card; the defaults are Streamlit's own."""

    label: str
    value: str
    help: str | None = None
    delta: str | None = None
    delta_color: str = "normal"
    delta_arrow: str = "auto"


def _quiet(label: str, value: str, delta: str | None, help: str | None = None) -> Metric:
    """A card whose delta is a side note: neither colored nor arrowed."""
    return Metric(label, value, help, delta, delta_color="off", delta_arrow="off")


def overview(o: Mapping[str, Any], premium_model: str) -> list[list[Metric]]:
    """Spend, traffic and service rows of the Overview (from `analytics.overview`)."""
    hours = f"{usd(o['hourly_fixed_usd'])}/h"
    spend = [
        Metric(
            "Total spend",
            usd(o["spend_usd"]),
            "Metered per-token spend plus the GPU-hours of every dedicated endpoint while it was part of the fleet "
            "in the range, busy or idle.",
        ),
        Metric(
            "Metered (per token)",
            usd(o["metered_cost_usd"]),
            "Serverless requests: prompt and completion tokens at the model's catalog price.",
        ),
        Metric(
            "Fixed (GPU-hours)",
            usd(o["fixed_cost_usd"]),
            f"Every dedicated endpoint's hourly price ({hours} now) for the hours it was part of the fleet in the "
            "range, busy or idle.",
        ),
        Metric(
            f"Savings vs. all on {o['primary_model']}",
            usd(o["cost_savings_usd"]),
            f"{baselines.FORMULA}. All on the serverless primary model would have cost "
            f"{usd(o['all_serverless_primary_usd'])}; the actual total (metered + every GPU-hour paid while the "
            "fleet ran) is the Total spend. Negative when routing cost more.",
            delta=f"{o['cost_savings_percentage']:.1f}%" if o["all_serverless_primary_usd"] else None,
        ),
    ]
    unserved = o["all_dedicated_unserved_share"]
    compared = [
        Metric(
            "Actual total",
            usd(o["actual_total_usd"]),
            "What was paid: metered per-token spend plus the GPU-hours of the fleet while it ran in the range.",
        ),
        Metric(
            f"All on {o['primary_model']}",
            usd(o["all_serverless_primary_usd"]),
            "Every request's tokens at the serverless primary model's prices, no GPUs.",
        ),
        Metric(
            f"All on {o['premium_model']}",
            usd(o["all_premium_usd"]),
            "Every request's tokens at the premium model's prices, no GPUs.",
        ),
        _quiet(
            "All on the dedicated fleet",
            usd(o["all_dedicated_usd"]),
            f"{unserved:.0%} beyond its throughput" if unserved else None,
            "The configured fleet's GPU-hours over the whole range; the note is the share of the traffic it could "
            "not have served at its throughput in the busiest hours.",
        ),
    ]
    traffic = [
        Metric(
            "Requests",
            f"{o['total_requests']:,}",
            f"{o['serverless_requests']:,} serverless, {o['dedicated_requests']:,} dedicated.",
        ),
        Metric(
            "Serverless share",
            # From the counts: formatting the rounded percentage again would round twice.
            f"{100 * o['serverless_requests'] / o['total_requests'] if o['total_requests'] else 0:.1f}%",
            "Requests served by the serverless tier.",
        ),
        Metric("Average cost / request", usd(o["average_cost_per_request"]), "(Metered + GPU-time share) ÷ requests."),
        _quiet(
            "GPU time used",
            usd(o["amortized_cost_usd"]),
            f"{pct(o['gpu_utilization'])} of GPU-hours" if o["gpu_utilization"] is not None else None,
            "Dedicated requests' share of GPU time at each endpoint's throughput (amortized cost). "
            f"Idle GPU time in the range: {usd(o['idle_gpu_usd'])}.",
        ),
    ]
    service = [
        Metric("Latency p50", ms(o["latency_p50_ms"]), "Median latency of successful requests."),
        Metric("Latency p95", ms(o["latency_p95_ms"]), "95th percentile latency of successful requests."),
        Metric(
            "Error rate",
            pct(o["error_rate"], 2),
            f"{o['error_requests']:,} requests did not end 'ok' (errors, refusals, cancellations).",
        ),
        Metric(
            "Failover rate",
            pct(o["failover_rate"], 2),
            f"{o['failover_requests']:,} requests were served by another endpoint than the first choice.",
        ),
    ]
    return [spend, compared, traffic, service]


def simulation(s: Mapping[str, Any]) -> list[list[Metric]]:
    """Cost, share and latency rows of the Cost simulator (from `SimResult.summary()`)."""
    met = s["meets_target"]
    costs = [
        Metric(
            "Monthly cost",
            usd(s["monthly_cost_usd"]),
            f"GPU-hours (busy or idle) + metered serverless + other fixed costs, for {MONTH_DAYS} days of this "
            "traffic.",
        ),
        Metric("GPU-hours", usd(s["gpu_cost_usd"]), f"Every GPU's hourly price × {MONTH_HOURS} hours, busy or idle."),
        Metric(
            "Metered (per token)",
            usd(s["metered_cost_usd"]),
            f"Serverless requests (by policy and overflowed) at the per-token prices, scaled to {MONTH_DAYS} days.",
        ),
        Metric("Other fixed", usd(s["other_fixed_cost_usd"])),
    ]
    shares = [
        Metric("Dedicated share", pct(s["dedicated_share"]), "Requests served on the GPUs."),
        Metric(
            "Overflow share",
            pct(s["overflow_share"]),
            "Requests meant for the GPUs that went serverless because the wait would break the budget.",
        ),
        _quiet(
            "GPU utilization",
            pct(s["utilization"]),
            f"peak minute {pct(s['peak_minute_utilization'])}",
            "Share of the batch slots in use (a full batch is the saturated throughput).",
        ),
        Metric(
            "p95 first token",
            ms(s["p95_ttft_ms"]),
            "95th percentile time to first token over all requests; the target applies to it.",
            delta=("target met" if met else "target missed") + f" ({ms(s['slo_ms'])})",
            delta_color="normal" if met else "inverse",
            delta_arrow="off",
        ),
    ]
    latency = [
        _quiet(
            "p95 latency",
            ms(s["p95_latency_ms"]),
            f"p50 {ms(s['p50_latency_ms'])}",
            "End-to-end latency of all requests (the target applies to the first token).",
        ),
        Metric(
            "Missed the target",
            pct(s["missed_share"]),
            f"{s['missed_target']:,} requests had a first token later than the target.",
        ),
        Metric("Cost per request", usd(s["cost_per_request_usd"])),
        Metric("Cost per 1M tokens", usd(s["cost_per_mtok_usd"]), "All costs over prompt + output tokens."),
    ]
    return [costs, shares, latency]


def _change(x: float, fmt: Callable[[float], str]) -> str | None:
    """A delta, or none when nothing moved."""
    return fmt(x) if abs(x) > 1e-12 else None


def _points(x: float) -> str:
    return f"{x:+.1f} pts"


def tuning(c: Any, cv: Any = None) -> list[list[Metric]]:
    """The proposed policy against the current one (a `analysis.tuning.Comparison`), and with
    labels how its threshold sweep recovers the quality gap (a `replay.Curve`)."""
    a, b = c.current, c.proposed
    money = [
        Metric(
            "To dedicated GPUs",
            pct(b.dedicated_share),
            "Share of the requests the proposed policy sends to dedicated GPUs.",
            _change(100 * (b.dedicated_share - a.dedicated_share), _points),
            delta_color="off",
        ),
        Metric(
            "Metered spend",
            usd(b.metered_cost_usd),
            "Serverless tokens at catalog prices, over the selection.",
            _change(b.metered_cost_usd - a.metered_cost_usd, usd),
            delta_color="inverse",
        ),
        Metric(
            "Per month",
            usd(c.monthly_proposed),
            "Metered spend plus every GPU-hour of the fleet, scaled to 30 days.",
            _change(c.monthly_proposed - c.monthly_current, usd),
            delta_color="inverse",
        ),
    ]
    if b.quality is not None:
        quality = Metric(
            "Quality",
            pct(b.quality),
            f"Share of the {b.labelled:,} labelled requests answered correctly by the model "
            "standing for the tier each goes to.",
            _change(100 * (b.quality - a.quality), _points),
        )
    else:
        quality = Metric(
            "Quality", "no labels", "Import a labelled set (`sophia import FILE --format labels`) to see quality."
        )
    moves = [
        quality,
        Metric(
            "Decisions changed",
            f"{c.changed:,}",
            "Requests whose tier differs from the current policy's decision.",
            f"{c.to_dedicated:,} to GPUs · {c.to_serverless:,} to serverless" if c.changed else None,
            delta_color="off",
        ),
        Metric(
            "GPU time used",
            usd(b.amortized_cost_usd),
            f"Dedicated requests' share of GPU time at the endpoints' throughput; the GPU-hours over "
            f"the selection's span are {usd(b.fixed_cost_usd)}, busy or idle.",
        ),
    ]
    return [money, moves] + ([_gap(cv)] if cv is not None else [])


def _gap(cv: Any) -> list[Metric]:
    """RouteLLM's APGR and CPT(50%) / CPT(80%) of the proposed scorer's sweep, beside random's."""
    reached = cv.policy_gap_reached

    def calls(x: int) -> Metric:
        v, oracle = cv.cpt["policy"][x], cv.cpt["oracle"][x]
        best = "" if oracle is None else f" The oracle needs {pct(oracle)}."
        if v is None:
            most = "" if reached is None else f" No threshold gets there: the best recovers {pct(reached)}."
            return Metric(
                f"CPT({x}%)",
                "never",
                f"The share of labelled calls sent to dedicated GPUs needed to recover {x}% of the quality gap "
                f"between the tiers.{most}{best}",
            )
        return Metric(
            f"CPT({x}%)",
            pct(v),
            f"The share of labelled calls the sweep sends to dedicated GPUs to recover "
            f"{x}% of the quality gap between the tiers; a random split needs {x}%.{best}",
            _change(round(100 * v - x, 1), lambda d: f"{d:+.1f} pts vs random"),
            delta_color="inverse",
        )

    return [
        Metric(
            "Gap recovered (APGR)",
            f"{cv.apgr:.2f}",
            "Area under the share-of-the-quality-gap-recovered curve over the dedicated share, the "
            "curve joined to all-serverless and all-dedicated (RouteLLM's APGR): a random split scores "
            f"{cv.random_apgr:.2f}, the oracle {cv.oracle_apgr:.2f}.",
            _change(round(cv.apgr - cv.random_apgr, 2), lambda d: f"{d:+.2f} vs random"),
        ),
        calls(50),
        calls(80),
    ]


# --- the Endpoints page -------------------------------------------------------------------


def latency_ms(x: float | None, unit: bool = True) -> str:
    """A latency in milliseconds whatever its size ("13,200 ms", not "13.20 s"), so that the
    figures of a page compare at a glance; without the unit where a label carries it."""
    if x is None or x != x:  # None or NaN
        return "—"
    text = f"{x:,.1f}" if 0 < abs(x) < 10 else f"{x:,.0f}"
    return f"{text} ms" if unit else text


def _num(x: float, unit: str = "") -> str:
    return f"{x:,.0f}{unit}" if float(x).is_integer() else f"{x:,g}{unit}"


def _simulation(s: Mapping[str, Any]) -> str:
    parts = [f"first token {latency_ms(s['ttft_ms'])}", f"{latency_ms(s['tpot_ms'])} a token"]
    parts.append(f"errors {pct(s['error_rate'])}")
    if s["slow_rate"]:
        parts.append(f"slow {pct(s['slow_rate'])} (×{s['slow_factor']:g})")
    if s["cut_rate"]:
        parts.append(f"cut off {pct(s['cut_rate'])}")
    parts.append(f"replies of {s['reply_tokens']:,} tokens")
    return " · ".join(parts)


def endpoint_table(masked: Mapping[str, Any]) -> pd.DataFrame:
    """The configured endpoints side by side, one column each (from `appstate.masked_config`)."""
    rows: dict[str, dict[str, str]] = {}
    for e in masked["endpoints"]:
        dedicated = e["tier"] == Tier.DEDICATED
        key = f"{e['api_key_env']}: {e['api_key']}" if e["api_key_env"] else "none"
        rows[e["name"]] = {
            "tier": e["tier"],
            "kind": e["kind"],
            "models": ", ".join(e["models"]),
            "URL": "built-in simulation" if e["kind"] == "simulated" else (e["base_url"] or "—"),
            "API key": key,
            "price": f"{usd(e['hourly_usd'])} an hour, busy or idle" if dedicated else "per token (models and prices)",
            "throughput": _num(e["throughput_tps"], " tok/s") if e["throughput_tps"] else "—",
            "prefill": _num(e["prefill_tps"], " tok/s") if e["prefill_tps"] else "—",
            "concurrency": f"{e['max_concurrency']:,} at once" if e["max_concurrency"] else "no limit",
            "context window": f"{e['context_window']:,} tokens" if e["context_window"] else "not set",
            "capabilities": ", ".join(e["capabilities"]),
            "fields dropped": ", ".join(e["drop_params"]) or "none",
            "simulation": _simulation(e["simulation"]) if e["kind"] == "simulated" else "—",
        }
    out = pd.DataFrame(rows)
    out.index.name = "endpoint"
    return out


def key_status(masked: Mapping[str, Any]) -> str | None:
    """Which variable holds each endpoint's key and whether it is set (never its value)."""
    keys = [f"`{e['api_key_env']}` ({e['name']}): {e['api_key']}" for e in masked["endpoints"] if e["api_key_env"]]
    return "API keys: " + " · ".join(keys) if keys else None


def model_table(cfg: Config) -> pd.DataFrame:
    """Each priced model: its per-token prices, where it is served, what it can do."""
    rows = []
    for m in cfg.models:
        served = [e for e in cfg.endpoints if m.name in e.models]
        caps = m.capabilities if m.capabilities is not None else (served[0].capabilities if served else ())
        window = cfg.context_window(served[0], m.name) if served else m.context_window
        rows.append(
            {
                "model": m.name,
                "input (USD / 1M tokens)": usd(m.input_per_mtok),
                "output (USD / 1M tokens)": usd(m.output_per_mtok),
                "served by": ", ".join(e.name for e in served) or "no endpoint",
                "capabilities": ", ".join(caps) + ("" if m.capabilities is not None else " (the endpoint's)"),
                "context window": f"{window:,} tokens" if window else "not set",
                "tokens an image": f"{m.image_tokens:,}",
            }
        )
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) or "none"
    return "—" if v is None else str(v)


def settings_table(masked: Mapping[str, Any]) -> pd.DataFrame:
    """Routing, scorer, failover, cache, privacy and log settings, one row each, named as in the file."""
    rows: list[tuple[str, str]] = []
    for section in ("routing", "scorer", "failover", "cache", "privacy", "log"):
        for key, v in masked[section].items():
            name = f"{section}.{key}"
            if key == "length_bands":
                text = " · ".join(f"{chars:,} characters or more: +{w:g}" for chars, w in v)
                rows.append((name, text or "none"))
            elif key == "keyword_groups":
                for g in v:
                    rows.append((f"{name}.{g['name']}", f"+{g['weight']:g} for " + ", ".join(g["words"])))
            else:
                rows.append((name, _value(v)))
    return pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")


# --- the Budgets page ---------------------------------------------------------------------


def alert_table(recent: list[dict]) -> pd.DataFrame:
    """Recent alerts with their amounts as the cards show them ($0.000100, not $0.00)."""
    df = pd.DataFrame(recent)
    if df.empty:
        return df
    df["spent_usd"] = [usd(x) for x in df["spent_usd"]]
    df["amount_usd"] = [usd(x) for x in df["amount_usd"]]
    return df
