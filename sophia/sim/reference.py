"""The reference deployment simulated beside its published before/after table."""

from __future__ import annotations

from sophia.config import Config
from sophia.money import presets
from sophia.sim import fleet as fleet_mod
from sophia.sim import limits
from sophia.sim import workload as traffic_mod
from sophia.sim.des import SimResult, simulate
from sophia.sim.policies import DEFAULT_SLO_MS, POLICY_LABELS, Policy, Progress, quiet

# The published table's rows, and the simulated runs beside it (column, run).
ROWS = (
    ("monthly_cost_usd", "Monthly cost (USD)"),
    ("requests_per_s", "Requests per second"),
    ("latency_ms", "Latency (ms)"),
)
RUNS = (
    ("simulated before", "before"),
    ("simulated after, same rate", "after at before rate"),
    ("simulated after", "after"),
)


def published() -> dict[str, dict[str, float]]:
    """before/after -> monthly_cost_usd, requests_per_s, latency_ms, as published."""
    return presets.reference_table()


def reference_scenario(
    cfg: Config,
    before_req_s: float,
    after_req_s: float,
    seconds: float = 300.0,
    profile: traffic_mod.Profile | None = None,
    slo_ms: float = DEFAULT_SLO_MS,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, SimResult]:
    """The reference deployment simulated: all-serverless at the 'before' rate; the configured fleet
    under the router policy at the 'before' and 'after' rates (flat Poisson arrivals for `seconds`,
    tokens from `profile`), each priced for a month."""
    say = progress or quiet
    seconds = limits.check("reference_seconds", seconds, name="the reference scenario's seconds")
    slo_ms = limits.check("slo_ms", slo_ms, name="the latency target (ms)")
    fleet = fleet_mod.from_config(cfg)
    out = {}
    runs = (
        ("before", before_req_s, Policy.SERVERLESS, fleet_mod.Fleet()),
        ("after at before rate", before_req_s, Policy.ROUTER, fleet),
        ("after", after_req_s, Policy.ROUTER, fleet),
    )
    for i, (name, rate, pol, fl) in enumerate(runs):
        say(i / len(runs), f"Simulating {name}: {rate:g} req/s, {POLICY_LABELS[pol].lower()}…")
        w = traffic_mod.poisson(rate, seconds, profile, seed=seed)
        out[name] = simulate(w, cfg, fl, pol, slo_ms)
    say(1.0, "Reference scenario simulated")
    return out


def comparison_rows(table: dict[str, dict[str, float]], ref: dict[str, SimResult] | None) -> list[dict]:
    """The published table's rows, with the simulated runs' figures beside them when there are some."""
    rows = []
    for key, label in ROWS:
        row: dict = {"": label, "published before": table["before"][key], "published after": table["after"][key]}
        for col, name in RUNS if ref else ():
            r = ref[name]
            v = {
                "monthly_cost_usd": r.costs.monthly_usd,
                "requests_per_s": r.requests / r.span_s,
                "latency_ms": r.summary()["p50_ttft_ms"],
            }[key]
            row[col] = round(v, 2)
        rows.append(row)
    return rows


def scenario_rows(cfg: Config, table: dict[str, dict[str, float]]) -> list[dict]:
    """The reference scenario itself, one row per run: what serves it and at which rate."""
    fleet = fleet_mod.from_config(cfg)
    names = ", ".join(p.name for p in fleet.pools)
    after_fleet = f"{fleet.gpus} GPU{'s' if fleet.gpus != 1 else ''}: {names}" if fleet.pools else "no GPU"
    hourly = sum(p.hourly_usd * p.count for p in fleet.pools)
    before, after = table["before"]["requests_per_s"], table["after"]["requests_per_s"]
    row = {"Policy": POLICY_LABELS[Policy.ROUTER], "Fleet": after_fleet, "GPUs, USD per hour": hourly}
    return [
        {
            "Run": "Before",
            "Policy": POLICY_LABELS[Policy.SERVERLESS],
            "Fleet": "no GPU",
            "GPUs, USD per hour": 0.0,
            "Requests/s": before,
        },
        {"Run": "After, at the before rate", **row, "Requests/s": before},
        {"Run": "After", **row, "Requests/s": after},
    ]
