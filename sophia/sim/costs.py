"""Money of a simulated span and of a month of the same traffic, from `sophia.money.pricing`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from sophia.money import pricing
from sophia.money.periods import MONTH_HOURS
from sophia.sim.fleet import Fleet
from sophia.sim.workload import Workload


@dataclass
class Costs:
    """Money for the simulated span and for a month (`MONTH_DAYS` days) of the same traffic."""

    metered_usd: float  # per-token spend over the span
    gpu_usd: float  # GPU-hours over the span
    other_usd: float  # other fixed costs over the span
    monthly_metered_usd: float
    monthly_gpu_usd: float
    monthly_other_usd: float
    amortized_usd: float = 0.0  # dedicated requests' share of GPU time (busy GPU-hours), over the span

    @property
    def span_usd(self) -> float:
        return self.metered_usd + self.gpu_usd + self.other_usd

    @property
    def monthly_fixed_usd(self) -> float:
        return self.monthly_gpu_usd + self.monthly_other_usd

    @property
    def monthly_usd(self) -> float:
        return self.monthly_metered_usd + self.monthly_gpu_usd + self.monthly_other_usd

    def summary(self) -> dict:
        """The money keys of a result's JSON, the same for the simulation and the fluid model."""
        return {
            "monthly_cost_usd": round(self.monthly_usd, 2),
            "fixed_cost_usd": round(self.monthly_fixed_usd, 2),
            "gpu_cost_usd": round(self.monthly_gpu_usd, 2),
            "other_fixed_cost_usd": round(self.monthly_other_usd, 2),
            "metered_cost_usd": round(self.monthly_metered_usd, 2),
            "span_cost_usd": round(self.span_usd, 6),
        }


def span_costs(w: Workload, fleet: Fleet, metered: float, amortized: float = 0.0, schedule=None) -> Costs:
    """The fleet's GPU-hours and other fixed costs over `w`'s span, beside the metered spend.

    With an autoscaling `schedule` (`autoscale.Schedule`) the GPUs are the instances it paid for."""
    start = pd.Timestamp(w.start).to_pydatetime()
    end = start + timedelta(seconds=w.span_s)
    eps = fleet.endpoints()
    factor = w.monthly_factor
    other = fleet.other_monthly_usd
    if schedule is not None:
        from sophia.sim.autoscale import gpu_costs  # autoscale imports the fleet and limits, not the costs

        gpu_span, gpu_month = gpu_costs(fleet, schedule, start, w.span_s)
    else:
        gpu_span, gpu_month = pricing.fixed_cost(eps, start, end), pricing.hourly_fixed(eps) * MONTH_HOURS
    return Costs(
        metered_usd=metered,
        gpu_usd=gpu_span,
        other_usd=other / factor,
        monthly_metered_usd=metered * factor,
        monthly_gpu_usd=gpu_month,
        monthly_other_usd=other,
        amortized_usd=amortized,
    )


def gpu_month_usd(fleet: Fleet) -> float:
    """What one GPU of the fleet's first server type costs a month, busy or idle."""
    return pricing.hourly_fixed(fleet.resized(1).endpoints()) * MONTH_HOURS
