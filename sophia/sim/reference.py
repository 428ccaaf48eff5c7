"""The reference deployment simulated beside its published before/after table."""

from __future__ import annotations

import math

from sophia.config import Config
from sophia.money import presets, pricing
from sophia.money.periods import MONTH_DAYS, MONTH_HOURS
from sophia.routing import features as features_mod
from sophia.routing import policy as policy_mod
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


# --- what the published figures assume --------------------------------------------------------------

# The seed's own claims that are not in its table (its prose and its curl examples), as it states them.
SEED_COST_PER_REQUEST_USD = 0.03  # "$0.03 a request"
SEED_AUTOSCALE = (5, 50)  # "auto-scaling 5–50 instances"
COMPLEX_PROMPT = "Analyze this complex data and generate a comprehensive report"  # its curl, first sentence
COMPLEX_MAX_TOKENS = 2000


def _month_requests(rate: float) -> float:
    return rate * MONTH_DAYS * 86_400


def curl_examples(cfg: Config) -> dict:
    """The seed's 'complex' curl example through the configured scorer and policy, and what the cost rule needs."""
    f = features_mod.extract(
        [{"role": "user", "content": COMPLEX_PROMPT}], COMPLEX_MAX_TOKENS, cfg.scorer, cfg.routing.default_max_tokens
    )
    d = policy_mod.decide(f, cfg)
    primary = cfg.routing.serverless_model
    price = pricing.price_of(cfg, primary)
    per_token = price.output_per_mtok / 1e6
    needed = math.floor(cfg.routing.cost_threshold_usd / per_token) + 1 if per_token > 0 else None
    window = cfg.context_window(cfg.endpoint_for_model(primary), primary)
    return {
        "complex_prompt": COMPLEX_PROMPT,
        "complex_max_tokens": COMPLEX_MAX_TOKENS,
        "complex_score": round(d.complexity, 4),
        "complex_breakdown": {k: round(v, 4) for k, v in d.breakdown.items() if v},
        "complexity_threshold": cfg.routing.complexity_threshold,
        "complex_tier": d.tier,
        "complex_reason": d.reason,
        "complex_estimated_cost_usd": round(d.estimated_cost_usd, 8),
        "cost_threshold_usd": cfg.routing.cost_threshold_usd,
        "primary_model": primary,
        "primary_output_per_mtok": price.output_per_mtok,
        "output_tokens_for_cost_rule": needed,
        "primary_context_window": window or None,
        "cost_rule_reachable": bool(needed is not None and (not window or needed <= window)),
    }


def explain(cfg: Config, seconds: float = 60.0) -> dict:
    """The published table explained: the assumptions under which it would hold, what the simulator
    computes under them, the seed's claims that contradict each other, and its curl examples."""
    table = published()
    before, after = table["before"], table["after"]
    primary = pricing.price_of(cfg, cfg.routing.serverless_model)
    fleet = fleet_mod.from_config(cfg)
    hourly = pricing.hourly_fixed(fleet.endpoints())
    gpu_month = hourly * MONTH_HOURS
    # Before: all serverless at the before rate; equal prompt and output tokens per request.
    per_request_before = before["monthly_cost_usd"] / _month_requests(before["requests_per_s"])
    tokens = per_request_before * 1e6 / (primary.input_per_mtok + primary.output_per_mtok)
    tput = sum(p.throughput_tps * p.count for p in fleet.pools)
    most_out = tput / after["requests_per_s"] if after["requests_per_s"] else 0.0
    metered_after = after["monthly_cost_usd"] - gpu_month
    cheapest = min((p.hourly_usd for p in fleet.pools), default=0.0)
    first = fleet.pools[0].hourly_usd if fleet.pools else 0.0
    assumptions = [
        ("Before: requests a month", _month_requests(before["requests_per_s"]), "requests"),
        ("Before: cost per request (all serverless)", per_request_before, "usd"),
        ("Before: tokens per request, prompt = output, at the primary prices", tokens, "tokens"),
        ("After: GPUs (the configured fleet)", float(fleet.gpus), "count"),
        ("After: the GPUs' month, busy or idle", gpu_month, "usd"),
        ("After: left for metered serverless spend", metered_after, "usd"),
        ("After: most output tokens per request the GPUs produce at the after rate", most_out, "tokens"),
    ]
    size = max(1.0, round(tokens))  # the before figure's size: the after run then shows whether the table holds
    prof = traffic_mod.Profile(
        prompt_tokens_median=size,
        prompt_tokens_sigma=0.1,
        completion_tokens_median=size,
        completion_tokens_sigma=0.1,
        max_tokens=int(size) * 2,
    )
    ref = reference_scenario(cfg, before["requests_per_s"], after["requests_per_s"], seconds=seconds, profile=prof)
    simulated = comparison_rows(table, ref)
    claims = [
        {
            "claim": f"${SEED_COST_PER_REQUEST_USD:g} a request at {after['requests_per_s']:g} req/s",
            "implies": SEED_COST_PER_REQUEST_USD * _month_requests(after["requests_per_s"]),
            "against": f"${after['monthly_cost_usd']:,.0f} a month",
        },
        {
            "claim": f"${before['monthly_cost_usd']:,.0f} a month at {before['requests_per_s']:g} req/s",
            "implies": per_request_before,
            "against": f"${SEED_COST_PER_REQUEST_USD:g} a request (USD per request implied)",
        },
        {
            "claim": f"auto-scaling {SEED_AUTOSCALE[0]}–{SEED_AUTOSCALE[1]} instances",
            "implies": SEED_AUTOSCALE[0] * first * MONTH_HOURS,
            "against": f"${after['monthly_cost_usd']:,.0f} a month (USD a month for the minimum of "
            f"{SEED_AUTOSCALE[0]} instances of the primary GPU type; {SEED_AUTOSCALE[0]} of the cheapest: "
            f"${SEED_AUTOSCALE[0] * cheapest * MONTH_HOURS:,.0f})",
        },
        {
            "claim": f"{after['requests_per_s']:g} req/s on the {fleet.gpus} configured GPUs",
            "implies": most_out,
            "against": f"max_tokens {COMPLEX_MAX_TOKENS:,} in its own 'complex' example (output tokens per request "
            "the GPUs can produce at that rate)",
        },
    ]
    return {
        "published": table,
        "assumptions": [{"assumption": a, "value": v, "unit": u} for a, v, u in assumptions],
        "simulated": simulated,
        "simulated_tokens_per_request": prof.completion_tokens_median,
        "contradictions": claims,
        "curl": curl_examples(cfg),
    }


def _fmt(v: float, unit: str) -> str:
    if unit == "usd":
        return f"${v:,.2f}" if abs(v) >= 0.01 else f"${v:.3g}"
    if unit == "count":
        return f"{v:,.0f}"
    return f"{v:,.1f}" if unit == "tokens" else f"{v:,.0f}"


def explain_text(d: dict) -> str:
    """`sophia simulate --reference` in words."""
    lines = ["What the published table ($3,867 -> $2,100 a month) assumes:"]
    for a in d["assumptions"]:
        lines.append(f"  {a['assumption']:<75} {_fmt(a['value'], a['unit'])}")
    lines.append(
        f"What the simulator computes for them ({d['simulated_tokens_per_request']:g} prompt and output tokens "
        "a request, Poisson arrivals, priced for a month):"
    )
    for r in d["simulated"]:
        vals = "  ".join(f"{k}: {v:,.2f}" for k, v in r.items() if k != "")
        lines.append(f"  {r['']:<22} {vals}")
    lines.append("Claims that contradict each other:")
    for c in d["contradictions"]:
        lines.append(f"  {c['claim']} implies {c['implies']:,.6g}, against {c['against']}")
    c = d["curl"]
    lines.append(
        f"The 'complex' curl example ({c['complex_prompt']!r}, max_tokens {c['complex_max_tokens']:,}) scores "
        f"{c['complex_score']:g} ({', '.join(f'{k} {v:g}' for k, v in c['complex_breakdown'].items())}), not over the "
        f"threshold {c['complexity_threshold']:g}: it goes {c['complex_tier']} ({c['complex_reason']})."
    )
    window = f", more than the context window of {c['primary_context_window']:,}" if c["primary_context_window"] else ""
    lines.append(
        f"The ${c['cost_threshold_usd']:g} cost rule needs more than {c['output_tokens_for_cost_rule'] - 1:,} output "
        f"tokens at {c['primary_model']}'s ${c['primary_output_per_mtok']:g} per 1M{window}: "
        f"{'it can fire' if c['cost_rule_reachable'] else 'it never fires through the API'}."
    )
    return "\n".join(lines)
