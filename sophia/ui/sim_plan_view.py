"""The Cost simulator's planning views: break-even, optimizer, reference scenario, saved scenarios, autoscaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sophia import sim
from sophia.money.periods import MONTH_DAYS
from sophia.sim import breakeven, reference, scenarios
from sophia.ui.appstate import ms, pct, usd
from sophia.ui.charts import RED, SLATE
from sophia.ui.sim_view import (
    CHART,
    DEDICATED_COLOR,
    FLUID_COLOR,
    GREEN,
    GREY,
    KINDS,
    OVERFLOW_COLOR,
    SERVERLESS_COLOR,
    count,
    millis,
    money,
    plural,
    share,
    yes_no,
)

# --- break-even ---------------------------------------------------------------------------


def break_even_chart(be: Any, this_volume: float) -> go.Figure:
    """Monthly cost of the three options against volume, crossovers marked (log–log)."""
    df = be.curves
    fig = go.Figure()
    for col, name, color in (
        ("all_serverless_usd", "All serverless", SERVERLESS_COLOR),
        ("dedicated_only_usd", "Dedicated only (fewest GPUs meeting the target)", DEDICATED_COLOR),
        ("hybrid_usd", f"Hybrid ({sim.POLICY_LABELS[be.policy].lower()})", FLUID_COLOR),
    ):
        fig.add_scatter(x=df["requests_per_month"], y=df[col], name=name, mode="lines+markers", line=dict(color=color))
    for c in be.crossovers:
        fig.add_vline(
            x=c["requests_per_month"],
            line_dash="dot",
            line_color=SLATE,
            annotation_text=f"{c['between'][0]} = {c['between'][1]}",
            annotation_position="bottom right",
            annotation_font_size=10,
        )
        fig.add_scatter(
            x=[c["requests_per_month"]],
            y=[c["monthly_cost_usd"]],
            mode="markers",
            marker=dict(size=12, symbol="x", color=RED),
            showlegend=False,
            hovertemplate=f"{c['between'][0]} = {c['between'][1]}<br>%{{x:,.0f}} requests/month"
            "<br>$%{y:,.0f}/month<extra></extra>",
        )
    fig.add_vline(x=this_volume, line_color=GREEN, annotation_text="this traffic")
    fig.update_layout(
        title="Monthly cost against traffic volume",
        xaxis_type="log",
        yaxis_type="log",
        xaxis_title="requests per month",
        yaxis_title="USD per month",
        **CHART,
    )
    return fig


def crossovers_table(be: Any) -> pd.DataFrame:
    """Every baseline against every other curve: the crossover volume, or which is cheaper throughout."""
    rows = []
    for row in breakeven.pairs(be):
        c = row["crossover"]
        a, b = row["between"]
        rows.append(
            {
                "Curves": f"{a} vs {b}",
                "Verdict": row["verdict"],
                "Crossover (requests/month)": count(c["requests_per_month"]) if c else "—",
                "Crossover (requests/s)": f"{c['requests_per_s']:,.3f}" if c else "—",
                "Monthly cost there": money(c["monthly_cost_usd"]) if c else "—",
            }
        )
    return pd.DataFrame(rows)


def break_even_caption(be: Any) -> str:
    df = be.curves
    return (
        f"The sample scaled from ×{df['multiplier'].min():g} to ×{df['multiplier'].max():g}, priced with "
        "the fluid model. Dedicated-only must meet the target with no overflow; the hybrid overflows."
    )


# --- optimizer ----------------------------------------------------------------------------


def optimizer_chart(opt: Any) -> go.Figure:
    """Monthly cost (bars: meets the target, misses it, the cheapest) and p95 first token by GPUs."""
    cur = opt.curve
    colors = np.where(cur["meets_target"], DEDICATED_COLOR, GREY).astype(object)
    colors[(cur["gpus"] == opt.best_gpus).to_numpy()] = FLUID_COLOR
    fig = go.Figure()
    fig.add_bar(
        x=cur["gpus"],
        y=cur["monthly_cost_usd"],
        name="monthly cost",
        marker_color=colors,
        hovertemplate="%{x} GPUs: $%{y:,.0f}/month<extra></extra>",
    )
    fig.add_scatter(
        x=cur["gpus"],
        y=cur["p95_ttft_ms"],
        name="p95 first token (ms)",
        yaxis="y2",
        mode="lines+markers",
        line=dict(color=OVERFLOW_COLOR),
    )
    fig.add_hline(y=opt.slo_ms, yref="y2", line_dash="dash", annotation_text="target", line_color=RED)
    if opt.best_gpus is not None:
        best_row = cur[cur["gpus"] == opt.best_gpus].iloc[0]
        fig.add_annotation(
            x=opt.best_gpus,
            y=best_row["monthly_cost_usd"],
            text="cheapest meeting the target",
            showarrow=True,
            arrowhead=2,
        )
    fig.update_layout(
        title="Monthly cost and p95 first token by GPU count",
        xaxis_title="GPUs",
        yaxis_title="USD per month",
        yaxis2=dict(title="ms", overlaying="y", side="right", showgrid=False),
        **CHART,
    )
    return fig


OPTIMIZER_COLUMNS = (
    ("gpus", "GPUs", str),
    ("monthly_cost_usd", "Monthly cost", money),
    ("p95_ttft_ms", "p95 first token", millis),
    ("overflow_share", "Overflow", share),
    ("utilization", "GPU utilization", share),
    ("meets_target", "Meets the target", yes_no),
    ("method", "From", {"simulation": "simulation", "fluid": "fluid model"}.get),
    ("fluid_monthly_cost_usd", "Fluid model: monthly cost", money),
    ("fluid_p95_ttft_ms", "Fluid model: p95 first token", millis),
    ("fluid_meets_target", "Fluid model: meets the target", yes_no),
)


def optimizer_table(opt: Any) -> pd.DataFrame:
    """The optimizer's curve with labels and units, "—" where a figure is missing."""
    cur = opt.curve
    return pd.DataFrame({label: [fmt(v) for v in cur[col]] for col, label, fmt in OPTIMIZER_COLUMNS if col in cur})


def optimizer_range(opt: Any) -> str:
    return f"{int(opt.curve['gpus'].min())}–{int(opt.curve['gpus'].max())} GPUs"


def optimizer_verdict(opt: Any) -> tuple[bool, str]:
    """(found, message): the cheapest fleet meeting the target, or why there is none."""
    if opt.best_gpus is None:
        return False, (
            f"No fleet of {optimizer_range(opt)} meets the target under this policy: raise "
            "the target, allow more GPUs, or change the policy."
        )
    return True, (
        f"**{plural(opt.best_gpus, 'GPU')}** is the cheapest fleet meeting "
        f"the target: {usd(opt.best.costs.monthly_usd)} a month "
        f"(searched {optimizer_range(opt)} in {opt.elapsed_s:.1f} s). The figures above are the fleet you set."
    )


# --- reference scenario -------------------------------------------------------------------


def reference_caption(published: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What the reference scenario simulated; `after` is the 'after' run's summary."""
    before_rps, after_rps = published["before"]["requests_per_s"], published["after"]["requests_per_s"]
    return (
        f"Simulated before: all serverless at {before_rps:g} req/s. After: the "
        f"configured fleet under the router policy, at {before_rps:g} and at "
        f"{after_rps:g} req/s — at the latter "
        f"{pct(after['dedicated_share'])} on the GPUs, {pct(after['overflow_share'])} overflowed, "
        f"GPU utilization {pct(after['utilization'])}. "
        f"The latency row is the p50 time to first token (end-to-end p50 after: "
        f"{ms(after['p50_latency_ms'])}). The published table does not say its tokens per request: "
        "the simulation uses the synthetic profile's token distributions (Traffic inputs)."
    )


REFERENCE_ROWS = {"monthly_cost_usd": money, "requests_per_s": lambda v: f"{v:,.1f}", "latency_ms": millis}


def reference_table(rows: list[dict]) -> pd.DataFrame:
    """`reference.comparison_rows` for people: the published and simulated figures, each in its unit."""
    out = []
    for key, row in zip(REFERENCE_ROWS, rows, strict=True):
        fmt = REFERENCE_ROWS[key]
        out.append({"Figure": row[""]} | {k[:1].upper() + k[1:]: fmt(v) for k, v in row.items() if k})
    return pd.DataFrame(out)


def reference_scenario_table(cfg: Any, published: Mapping[str, Any]) -> pd.DataFrame:
    """The reference scenario's runs: policy, fleet and request rate of each."""
    return pd.DataFrame(
        [
            r | {"GPUs, USD per hour": money(r["GPUs, USD per hour"]), "Requests/s": f"{r['Requests/s']:g}"}
            for r in reference.scenario_rows(cfg, published)
        ]
    )


def scenarios_table(saved: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Saved scenarios side by side: one column each, the figures as labelled rows."""
    table = scenarios.side_by_side(dict(saved))
    fmt = {f: KINDS[kind] for f, (_, kind) in scenarios.COMPARED.items()}
    out = pd.DataFrame(
        {name: [fmt[f](table.at[f, name]) for f in table.index] for name in table.columns},
        index=pd.Index([scenarios.COMPARED[f][0] for f in table.index], name="Figure"),
    )
    return out


# --- autoscaling ----------------------------------------------------------------------------


def instances_chart(res: sim.SimResult) -> go.Figure:
    """Instances over time (requested = paid, serving) against the load in servers at a full batch."""
    s = res.scaling
    frame = s.frame(res.start)
    fig = go.Figure()
    fig.add_scatter(
        x=frame["minute"],
        y=frame["load_servers"],
        name="Load (servers at a full batch)",
        mode="lines",
        line=dict(color=SLATE),
        fill="tozeroy",
    )
    fig.add_scatter(
        x=frame["minute"],
        y=frame["requested"],
        name="Instances paid (requested, provisioning included)",
        mode="lines",
        line=dict(color=DEDICATED_COLOR, shape="hv"),
    )
    fig.add_scatter(
        x=frame["minute"],
        y=frame["serving"],
        name="Instances serving (mean over the minute)",
        mode="lines",
        line=dict(color=FLUID_COLOR, dash="dot"),
    )
    a = s.autoscale
    fig.update_layout(
        title=f"Instances against the load ({a.min_instances}–{a.max_instances}, target {a.target_utilization:.0%})",
        yaxis_title="instances",
        yaxis_rangemode="tozero",
        **CHART,
    )
    return fig


def autoscale_table(rows: list[dict]) -> pd.DataFrame:
    """Fixed fleet, autoscaled and all-serverless, each figure in its unit."""
    return pd.DataFrame(
        [
            {
                "Option": r["option"],
                "Instances": r["instances"],
                "Month": usd(r["monthly_cost_usd"]),
                "GPU-hours": usd(r["gpu_cost_usd"]),
                "Metered": usd(r["metered_cost_usd"]),
                "p95 first token": ms(r["p95_ttft_ms"]),
                "Overflow to serverless": pct(r["overflow_share"]),
                "Meets the target": "yes" if r["meets_target"] else "no",
            }
            for r in rows
        ]
    )


def autoscale_caption(report: sim.SimReport) -> str:
    s = report.scaled.scaling
    a = s.autoscale
    month = (
        f" The fluid model's {MONTH_DAYS}-day month: {usd(report.scaled_month.costs.monthly_usd)}."
        if (report.scaled_month is not None)
        else ""
    )
    return (
        f"The controller reads each minute's load at its end and asks for ceil(load / {a.target_utilization:.0%}) "
        f"instances within {a.min_instances}–{a.max_instances}; new ones serve {a.scale_up_delay_s:g} s after they "
        f"are requested (and are paid from then), and instances are released after {a.cool_down_s:g} s of lower "
        f"load. Mean {s.mean_instances:.2f} instances, peak {int(s.requested.max())}, "
        f"{s.instance_hours:,.2f} instance-hours over the sample.{month}"
    )


# --- what the published figures assume ------------------------------------------------------


def assumptions_table(d: Mapping[str, Any]) -> pd.DataFrame:
    """`reference.explain`'s assumptions, each in its unit."""
    fmt = {"usd": lambda v: usd(v) if abs(v) >= 0.01 else f"${v:.3g}", "count": lambda v: f"{v:,.0f}"}
    return pd.DataFrame(
        [
            {"Assumption": a["assumption"], "Value": fmt.get(a["unit"], lambda v: f"{v:,.1f}")(a["value"])}
            for a in d["assumptions"]
        ]
    )


def contradictions_table(d: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"Claim": c["claim"], "Implies": f"{c['implies']:,.6g}", "Against": c["against"]} for c in d["contradictions"]]
    )


def curl_caption(d: Mapping[str, Any]) -> str:
    c = d["curl"]
    parts = ", ".join(f"{k} {v:g}" for k, v in c["complex_breakdown"].items())
    return (
        f"The seed's 'complex' example (“{c['complex_prompt']}…”, max_tokens {c['complex_max_tokens']:,}) scores "
        f"{c['complex_score']:g} ({parts}): not over {c['complexity_threshold']:g}, so it stays {c['complex_tier']}. "
        f"The ${c['cost_threshold_usd']:g} cost rule needs over {c['output_tokens_for_cost_rule'] - 1:,} output tokens "
        f"at the primary model's ${c['primary_output_per_mtok']:g} per 1M"
        + (
            f", more than its {c['primary_context_window']:,}-token context window"
            if c["primary_context_window"]
            else ""
        )
        + (": it never fires through the API." if not c["cost_rule_reachable"] else ".")
    )
