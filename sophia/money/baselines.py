"""What the traffic cost against what it would have cost elsewhere: the named baselines.

The actual total is what was paid: metered (per-token) spend plus the GPU-hours of the fleet
in the period, busy or idle. Beside it:

- all on the serverless primary model: every request's tokens at the primary model's prices;
- all on the premium model: the same at the premium model's prices;
- all on the dedicated fleet: the configured fleet's GPU-hours over the span, with the share
  of the traffic it could not have served at its throughput in the busiest hours.

    cost_savings_usd = all_serverless_primary_usd - actual_total_usd

It is negative when routing (usually the GPU-hours) cost more than sending everything to the
primary model would have. Pure functions: aggregates in, figures out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sophia.money.format import usd
from sophia.money.periods import HOUR_S
from sophia.money.pricing import DIGITS

FORMULA = "cost_savings_usd = all_serverless_primary_usd - actual_total_usd (metered + GPU-hours paid)"


@dataclass(frozen=True)
class Totals:
    """Aggregates of a selection of traffic (computed in SQL by the caller)."""

    requests: int
    metered_usd: float  # per-token spend as logged
    fixed_usd: float  # GPU-hours paid in the span (the fleet's history)
    amortized_usd: float  # the part of those hours requests used, at the servers' throughput
    primary_usd: float  # every request's tokens at the primary serverless model's prices
    premium_usd: float  # the same at the premium model's prices
    dedicated_requests: int
    dedicated_primary_usd: float  # the dedicated requests' tokens at the primary model's prices
    fleet_usd: float  # the configured fleet's GPU-hours over the whole span (all-dedicated baseline)
    fleet_unserved_share: float  # share of the traffic beyond the fleet's throughput, 0..1


@dataclass(frozen=True)
class Baselines:
    actual_total_usd: float
    all_serverless_primary_usd: float
    all_premium_usd: float
    all_dedicated_usd: float
    all_dedicated_unserved_share: float
    cost_savings_usd: float
    cost_savings_percentage: float
    savings_vs_premium_usd: float
    # What the GPUs did: the dedicated traffic's primary-model cost against their hours.
    gpu_net_savings_usd: float
    # Break-even of the GPUs: the dedicated volume (× today's) at which their hours pay for
    # themselves, and the most they could serve (× today's, at full use); None when unknown.
    break_even_multiple: float | None
    capacity_multiple: float | None
    break_even_requests: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def _r(x: float) -> float:
    return round(x, DIGITS)


def compute(t: Totals) -> Baselines:
    actual = t.metered_usd + t.fixed_usd
    savings = t.primary_usd - actual
    gpu_net = t.dedicated_primary_usd - t.fixed_usd
    multiple = capacity = need = None
    if t.fixed_usd > 0:
        # Today's per-request value of a GPU-served request, else of an average request.
        if t.dedicated_requests and t.dedicated_primary_usd > 0:
            multiple = t.fixed_usd / t.dedicated_primary_usd
            need = round(multiple * t.dedicated_requests)
        elif t.requests and t.primary_usd > 0:
            need = round(t.fixed_usd / (t.primary_usd / t.requests))
        if t.amortized_usd > 0:
            capacity = t.fixed_usd / t.amortized_usd  # amortized / fixed is the GPUs' utilization
    return Baselines(
        actual_total_usd=_r(actual),
        all_serverless_primary_usd=_r(t.primary_usd),
        all_premium_usd=_r(t.premium_usd),
        all_dedicated_usd=_r(t.fleet_usd),
        all_dedicated_unserved_share=round(t.fleet_unserved_share, 6),
        cost_savings_usd=_r(savings),
        cost_savings_percentage=round(100 * savings / t.primary_usd, 2) if t.primary_usd else 0.0,
        savings_vs_premium_usd=_r(t.premium_usd - actual),
        gpu_net_savings_usd=_r(gpu_net),
        break_even_multiple=round(multiple, 4) if multiple is not None else None,
        capacity_multiple=round(capacity, 4) if capacity is not None else None,
        break_even_requests=need,
    )


def unserved_share(hourly_gpu_seconds: Sequence[float], capacity_s_per_hour: float = HOUR_S) -> float:
    """The share of GPU work beyond what a pooled fleet can do in each hour (0 when it all fits)."""
    total = float(sum(hourly_gpu_seconds))
    if total <= 0:
        return 0.0
    over = sum(max(s - capacity_s_per_hour, 0.0) for s in hourly_gpu_seconds)
    return over / total


def verdict(b: Baselines, primary_model: str) -> str | None:
    """A sentence for when the GPUs cost more than they save; None otherwise."""
    if b.gpu_net_savings_usd >= 0 or b.break_even_requests is None:
        return None
    head = (
        f"The GPUs cost {usd(-b.gpu_net_savings_usd)} more than they saved: "
        f"the traffic they served would have cost less on {primary_model}."
    )
    if b.break_even_multiple is None:
        return head + f" They would break even at about {b.break_even_requests:,} requests served in this range."
    tail = (
        f" They break even at about {b.break_even_multiple:,.1f}× today's GPU traffic "
        f"({b.break_even_requests:,} requests in this range)"
    )
    if b.capacity_multiple is not None and b.break_even_multiple > b.capacity_multiple:
        most = f"at most {b.capacity_multiple:,.1f}× at full use"
        return f"{head}{tail}, more than they can serve ({most}): fewer GPUs would cost less."
    return head + tail + "."
