"""Saved scenarios side by side, and the page's CSV exports (through the one CSV writer)."""

from __future__ import annotations

import pandas as pd

from sophia.log.export import frame_csv
from sophia.sim.des import ROUTES
from sophia.sim.pipeline import SimReport

# The figures compared side by side: field -> (label, kind); the page formats each kind
# ("usd", "share", "ms", "count", "yes/no", "policy", "text").
COMPARED = {
    "traffic": ("Traffic", "text"),
    "requests": ("Requests simulated", "count"),
    "policy": ("Policy", "policy"),
    "gpus": ("GPUs", "count"),
    "GPU type": ("GPU type", "text"),
    "USD per GPU-hour": ("USD per GPU-hour", "usd"),
    "monthly_cost_usd": ("Monthly cost", "usd"),
    "gpu_cost_usd": ("GPU-hours, monthly", "usd"),
    "metered_cost_usd": ("Metered, monthly", "usd"),
    "other_fixed_cost_usd": ("Other fixed, monthly", "usd"),
    "cost_per_request_usd": ("Cost per request", "usd"),
    "dedicated_share": ("Dedicated share", "share"),
    "overflow_share": ("Overflow share", "share"),
    "utilization": ("GPU utilization", "share"),
    "p50_latency_ms": ("p50 latency", "ms"),
    "p95_latency_ms": ("p95 latency", "ms"),
    "p95_ttft_ms": ("p95 first token", "ms"),
    "meets_target": ("Meets the target", "yes/no"),
    "missed_share": ("Share missing the target", "share"),
    "best_gpus": ("Optimizer: cheapest GPUs", "count"),
    "month_projection_usd": ("Month projection (fluid)", "usd"),
}


def scenario(rep: SimReport, gpu_type: str, hourly_usd: float) -> dict:
    """One run's figures to save under a name."""
    assert rep.des is not None and rep.month is not None
    return {
        "traffic": rep.workload.label,
        "requests": rep.workload.n,
        "policy": rep.des.policy,
        "GPU type": gpu_type,
        "USD per GPU-hour": hourly_usd,
        **rep.des.summary(),
        "best_gpus": rep.optimum.best_gpus if rep.optimum else None,
        "month_projection_usd": rep.month.summary()["monthly_cost_usd"],
    }


def side_by_side(scenarios: dict[str, dict]) -> pd.DataFrame:
    """Saved scenarios as columns, the compared figures as rows."""
    return pd.DataFrame({k: {f: v.get(f) for f in COMPARED} for k, v in scenarios.items()})


def _flat(d: dict) -> dict:
    return {k: v for k, v in d.items() if not isinstance(v, (dict, list))}


def export_frame(scenarios: dict[str, dict], rep: SimReport, name: str | None) -> pd.DataFrame:
    """The saved scenarios one per row, or this run (named `name`) when none is saved."""
    if scenarios:
        return pd.DataFrame([{"scenario": k, **_flat(sc)} for k, sc in scenarios.items()])
    assert rep.des is not None
    return pd.DataFrame([{"scenario": name, "traffic": rep.workload.label, **_flat(rep.des.summary())}])


def per_minute_frame(rep: SimReport) -> pd.DataFrame:
    """Per minute: both models' utilization and the simulated requests by where they were served."""
    assert rep.des is not None and rep.fluid is not None
    return pd.DataFrame(
        {
            "minute": rep.workload.clock(),
            "utilization_simulated": rep.des.minute_utilization,
            "utilization_fluid": rep.fluid.minute["utilization"].to_numpy(),
            **{f"requests_{r}": rep.des.minute_requests[i] for i, r in enumerate(ROUTES)},
        }
    )


def csv_bytes(df: pd.DataFrame) -> bytes:
    """A download: the one CSV writer, so that no text cell is read as a spreadsheet formula."""
    return frame_csv(df).encode()
