"""The cost simulator: what a fleet of dedicated GPUs plus a serverless tier costs, and how fast it serves.

Two models answer on the same inputs (a `workload.Workload`, a `fleet.Fleet`, a policy):

* `simulate` (des.py) — a discrete-event simulation of every dedicated server with continuous
  batching, a FCFS queue and overflow to serverless when the wait would exceed the budget;
* `project` (analytic.py) — a fluid/analytic model at 1-minute resolution, so a month of minutes
  takes milliseconds; `compare` shows how far the two differ on the same sample.

Policies (policies.py): `router` (the routing policy itself, with the fleet as its dedicated tier;
dedicated requests that would wait too long fail over to the premium serverless model),
`dedicated-first`, `serverless` and `dedicated`. On top: `optimize` (sizing.py), `break_even`
(breakeven.py), and the run pipeline both faces call (pipeline.py). Costs come from
`sophia.money.pricing`; a month is `sophia.money.periods.MONTH_DAYS` days.
"""

from sophia.money.periods import MONTH_DAYS, MONTH_HOURS
from sophia.sim.analytic import FluidResult, compare, fluid, project
from sophia.sim.autoscale import Autoscale
from sophia.sim.breakeven import CURVES, BreakEven, break_even, crossovers
from sophia.sim.costs import Costs
from sophia.sim.des import DEDICATED, OVERFLOW, ROUTES, SERVERLESS, SimResult, simulate
from sophia.sim.minutes import Minutes, minutes_of, minutes_of_profile, sized_minutes
from sophia.sim.pipeline import SimReport, SimRequest, compute, prepare, run, simulate_command
from sophia.sim.policies import (
    DEFAULT_SLO_MS,
    POLICIES,
    POLICY_LABELS,
    TARGET_QUANTILE,
    Plan,
    Policy,
    Progress,
    check_policy,
    check_slo,
    plan,
    unloaded_ttft_s,
)
from sophia.sim.reference import reference_scenario
from sophia.sim.sizing import Optimum, optimize

__all__ = [
    "CURVES",
    "Autoscale",
    "DEDICATED",
    "DEFAULT_SLO_MS",
    "MONTH_DAYS",
    "MONTH_HOURS",
    "OVERFLOW",
    "POLICIES",
    "POLICY_LABELS",
    "ROUTES",
    "SERVERLESS",
    "TARGET_QUANTILE",
    "BreakEven",
    "Costs",
    "FluidResult",
    "Minutes",
    "Optimum",
    "Plan",
    "Policy",
    "Progress",
    "SimReport",
    "SimRequest",
    "SimResult",
    "break_even",
    "check_policy",
    "check_slo",
    "compare",
    "compute",
    "crossovers",
    "fluid",
    "minutes_of",
    "minutes_of_profile",
    "optimize",
    "plan",
    "prepare",
    "project",
    "reference_scenario",
    "run",
    "simulate",
    "simulate_command",
    "sized_minutes",
    "unloaded_ttft_s",
]
