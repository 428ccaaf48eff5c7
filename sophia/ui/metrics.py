"""The headline figures of the Overview, Cost simulator and Threshold tuning pages.

Streamlit-free: each function turns a page's numbers into rows of `Metric`s (label, formatted
value, help, delta); `pages.common.metric_rows` lays them out as `st.metric` cards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sophia.money.periods import MONTH_DAYS, MONTH_HOURS
from sophia.ui.appstate import ms, pct, usd


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
            "Metered per-token spend plus the fixed price of every dedicated GPU over the range.",
        ),
        Metric(
            "Metered (per token)",
            usd(o["metered_cost_usd"]),
            "Serverless requests: prompt and completion tokens at the model's catalog price.",
        ),
        Metric(
            "Fixed (GPU-hours)",
            usd(o["fixed_cost_usd"]),
            f"Every dedicated endpoint's hourly price ({hours} in total) over the range, busy or idle.",
        ),
        Metric(
            "Savings vs. all-premium",
            usd(o["cost_savings_usd"]),
            f"Against sending every request to {premium_model} "
            f"({usd(o['premium_baseline_usd'])}), with dedicated requests at their GPU-time share. "
            f"Counting every paid GPU-hour instead: {usd(o['savings_with_fixed_usd'])}.",
            delta=f"{o['cost_savings_percentage']:.1f}%" if o["premium_baseline_usd"] else None,
        ),
    ]
    traffic = [
        Metric(
            "Requests",
            f"{o['total_requests']:,}",
            f"{o['serverless_requests']:,} serverless, {o['dedicated_requests']:,} dedicated.",
        ),
        Metric("Serverless share", f"{o['serverless_percentage']:.1f}%", "Requests served by the serverless tier."),
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
    return [spend, traffic, service]


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


def tuning(c: Any) -> list[list[Metric]]:
    """The proposed policy against the current one (a `analysis.tuning.Comparison`)."""
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
    return [money, moves]
