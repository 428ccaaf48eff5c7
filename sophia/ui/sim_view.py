"""The Cost simulator's results as figures, tables and captions.

Streamlit-free: each function takes parts of a `sim.SimReport` and returns a `go.Figure`, a
DataFrame or a string; `pages/simulator.py` only places them in its tabs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sophia import sim
from sophia.money.periods import MONTH_DAYS
from sophia.sim import breakeven, reference, scenarios
from sophia.sim import workload as traffic_mod
from sophia.ui.appstate import ms, pct, usd
from sophia.ui.charts import PALETTE, RED, SLATE, TIER_COLORS, stacked_bars
from sophia.vocab import Tier

SERVERLESS_COLOR, DEDICATED_COLOR = TIER_COLORS[Tier.SERVERLESS], TIER_COLORS[Tier.DEDICATED]
FLUID_COLOR, OVERFLOW_COLOR, GREEN, GREY = PALETTE[2], PALETTE[3], "#10B981", "#CBD5E1"
CHART = dict(height=330, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
HISTOGRAM_SAMPLE = 50_000  # requests drawn for the latency histograms: enough for their shape
SERVED = (sim.DEDICATED, sim.SERVERLESS, sim.OVERFLOW)  # route codes, in the histograms' order


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def money(x: float | None) -> str:
    """Dollars, or "—" for a missing figure (None or NaN)."""
    return "—" if _missing(x) else usd(float(x))


def share(x: float | None) -> str:
    return "—" if _missing(x) else pct(float(x))


def millis(x: float | None) -> str:
    return "—" if _missing(x) else ms(float(x))


def count(x: float | None) -> str:
    return "—" if _missing(x) else f"{float(x):,.0f}"


def yes_no(x: Any) -> str:
    return "—" if _missing(x) else ("yes" if x else "no")


KINDS = {
    "usd": money,
    "share": share,
    "ms": millis,
    "count": count,
    "yes/no": yes_no,
    "policy": lambda p: "—" if _missing(p) else sim.POLICY_LABELS.get(p, str(p)),
    "text": lambda x: "—" if _missing(x) else str(x),
}


EMPTY_STATE = (
    "Set the traffic, the fleet, the prices and the policy above, then press **Run simulation**: "
    "the results appear here and stay until the next run."
)


def headline(report: sim.SimReport) -> str:
    """One line above the figures: what was simulated, how, and how fast."""
    w, des = report.workload, report.des
    return (
        f"{w.n:,} requests over {w.span_s / 3600:,.1f} h ({w.label}) · {sim.POLICY_LABELS[des.policy]} · "
        f"{_plural(des.gpus, 'GPU')} · simulated in {des.elapsed_s:.2f} s"
    )


def span_warning(w: Any) -> str | None:
    """A warning when the traffic spans so long that its rates mean little (mixed periods?)."""
    if w.span_s <= 90 * traffic_mod.DAY_S:
        return None
    return (
        f"The traffic spans {w.span_s / traffic_mod.DAY_S:,.0f} days (sources from different periods?): rates "
        "are averaged over all of it. Pick sources or a time range that belong together."
    )


# --- costs --------------------------------------------------------------------------------


def cost_chart(s: Mapping[str, Any], month: Mapping[str, Any]) -> go.Figure:
    """The sample's monthly cost beside the month projection's, split into its parts."""
    x = ["Simulated sample", "Month projection (fluid)"]
    parts = [
        ("GPU-hours", "gpu_cost_usd", DEDICATED_COLOR),
        ("Metered", "metered_cost_usd", SERVERLESS_COLOR),
        ("Other fixed", "other_fixed_cost_usd", FLUID_COLOR),
    ]
    fig = stacked_bars(
        ((label, x, [s[key], month[key]], color) for label, key, color in parts),
        hover="%{x}<br>{name}: $%{y:,.2f}<extra></extra>",
    )
    fig.update_layout(title="Monthly cost breakdown", yaxis_title="USD per month", **CHART)
    return fig


def month_caption(month: sim.FluidResult, growth: float | None) -> str:
    """The month projection in a sentence; `growth` None leaves growth unmentioned."""
    ms_ = month.summary()
    grows = f" with {growth:.0%} growth per month" if growth is not None else ""
    return (
        f"The projection repeats the sample over {MONTH_DAYS} days at 1-minute resolution{grows}: "
        f"{usd(ms_['monthly_cost_usd'])} a month, {ms_['requests']:,} requests, p95 first token "
        f"{ms(ms_['p95_ttft_ms'])} (computed in {month.elapsed_s:.2f} s)."
    )


# --- utilization and routes ---------------------------------------------------------------


def _day_profile(fig: go.Figure, util: pd.Series, fluid: pd.Series) -> None:
    """Several days: the day's profile, 10-minute bins of the per-minute figures."""
    bins = (util.index.hour * 60 + util.index.minute) // 10
    tod = pd.to_datetime("2000-01-01") + pd.to_timedelta(np.arange(144) * 10, unit="min")
    for y, name, style, color, opacity in (
        (util.groupby(bins).max(), "Simulation, peak minute", dict(width=1), DEDICATED_COLOR, 0.55),
        (util.groupby(bins).mean(), "Simulation, mean", dict(width=2), DEDICATED_COLOR, 1.0),
        (fluid.groupby(bins).mean(), "Fluid model, mean", dict(dash="dot"), FLUID_COLOR, 1.0),
    ):
        fig.add_scatter(x=tod[y.index], y=y, name=name, mode="lines", line=dict(color=color, **style), opacity=opacity)


def utilization_chart(report: sim.SimReport) -> go.Figure:
    """GPU utilization per minute (one day or less), else over the day with the days overlaid."""
    w, des, flu = report.workload, report.des, report.fluid
    util = pd.Series(des.minute_utilization, index=pd.DatetimeIndex(w.clock()))
    fluid = pd.Series(flu.minute["utilization"].to_numpy(), index=util.index)
    fig = go.Figure()
    if w.span_s <= traffic_mod.DAY_S:
        fig.add_scatter(
            x=util.index, y=util, name="Simulation (per minute)", mode="lines", line=dict(color=DEDICATED_COLOR)
        )
        fig.add_scatter(
            x=util.index, y=fluid, name="Fluid model", mode="lines", line=dict(color=FLUID_COLOR, dash="dot")
        )
        fig.update_layout(title="GPU utilization, minute by minute")
    else:
        _day_profile(fig, util, fluid)
        fig.update_layout(
            title=f"GPU utilization over the day (UTC, {w.span_s / traffic_mod.DAY_S:.0f} days overlaid)",
            xaxis_tickformat="%H:%M",
        )
    top = float(max(util.max(), fluid.max(), 0.0)) if len(util) else 0.0
    fig.update_layout(
        yaxis_tickformat=".1%" if top < 0.05 else ".0%", yaxis_range=[0, min(1.05, max(0.01, top * 1.15))], **CHART
    )
    return fig


def utilization_caption(des: sim.SimResult) -> str | None:
    if not des.utilization_by_pool:
        return None
    return (
        "Share of batch slots in use. Per pool: "
        + ", ".join(f"{k} {pct(v)}" for k, v in des.utilization_by_pool.items())
        + f" · peak minute {pct(des.peak_minute_utilization)}, mean minute {pct(des.mean_minute_utilization)}"
    )


def route_chart(report: sim.SimReport) -> go.Figure:
    """Requests per bin of minutes (at most 720 bars), stacked by where they were served."""
    w, des = report.workload, report.des
    step = max(1, int(np.ceil(w.minutes / 720)))
    reqs = pd.DataFrame(des.minute_requests.T, columns=list(sim.ROUTES), index=pd.DatetimeIndex(w.clock()))
    reqs = reqs.groupby(np.arange(len(reqs)) // step).sum().set_index(reqs.index[::step])
    colors = [SERVERLESS_COLOR, DEDICATED_COLOR, OVERFLOW_COLOR]
    fig = stacked_bars(
        ((name, reqs.index, reqs[name], color) for name, color in zip(sim.ROUTES, colors, strict=True)),
        marker_line_width=0,
    )
    fig.update_layout(
        bargap=0, title=f"Requests per {step} minute{'s' if step > 1 else ''}, by where they were served", **CHART
    )
    return fig


# --- latency ------------------------------------------------------------------------------


def sample(des: sim.SimResult, cap: int = HISTOGRAM_SAMPLE) -> np.ndarray:
    """A fixed random sample of request indexes (the same on every rerun)."""
    if not des.requests:
        return np.zeros(0, int)
    return np.random.default_rng(0).choice(des.requests, size=min(cap, des.requests), replace=False)


def latency_histogram(des: sim.SimResult, pick: np.ndarray, first_token: bool) -> go.Figure:
    """Time to first token (with the target) or end-to-end latency, one histogram per route."""
    values = des.ttft_ms if first_token else des.latency_ms
    fig = go.Figure()
    for route in SERVED:
        sel = pick[des.route[pick] == route]
        if len(sel):
            name = sim.ROUTES[route]
            fig.add_histogram(
                x=values[sel],
                name=f"{name} ({des.count(route):,})" if first_token else name,
                opacity=0.75,
                nbinsx=60,
            )
    if first_token:
        fig.add_vline(x=des.slo_ms, line_dash="dash", annotation_text=f"target {des.slo_ms:,.0f} ms")
    title = "Time to first token" if first_token else "End-to-end latency"
    fig.update_layout(barmode="overlay", title=title, xaxis_title="ms", **CHART)
    return fig


TIERS = {"all": "All requests", "dedicated": "Dedicated", "serverless": "Serverless (incl. overflow)"}


def latency_table(des: sim.SimResult) -> pd.DataFrame:
    """Percentiles of first token and end-to-end latency per tier (tiers that served nothing are left out)."""
    rows = [
        {
            "Tier": TIERS.get(tier, tier),
            "Measure": "Time to first token" if what == "ttft_ms" else "End-to-end latency",
            **{f"{q} (ms)": count(v[what][q]) for q in ("p50", "p95", "p99")},
        }
        for tier, v in des.latency().items()
        for what in ("ttft_ms", "latency_ms")
        if v[what]
    ]
    return pd.DataFrame(rows, columns=["Tier", "Measure", "p50 (ms)", "p95 (ms)", "p99 (ms)"])


_COMPARE_FORMAT = {"USD": money, "share": share, "ms": millis}


def compare_table(des: sim.SimResult, flu: sim.FluidResult) -> pd.DataFrame:
    """`sim.compare` for people: each figure in its unit, the difference in the same unit, the relative one in %."""
    df = sim.compare(des, flu)
    rows = []
    for r in df.itertuples(index=False):
        unit = "USD" if "(USD)" in r.metric else ("ms" if "(ms)" in r.metric else "share")
        fmt = _COMPARE_FORMAT[unit]
        diff = r.difference
        if unit == "share":
            diff_text = "—" if _missing(diff) else f"{100 * diff:+.1f} pts"
        elif unit == "USD":
            diff_text = "—" if _missing(diff) else ("+" if diff > 0 else "") + usd(float(diff))
        else:
            diff_text = "—" if _missing(diff) else f"{diff:+,.0f} ms"
        rel = "—" if _missing(r.relative) else f"{100 * r.relative:+.1f}%"
        rows.append(
            {
                "Figure": r.metric,
                "Simulation": fmt(r.simulation),
                "Fluid model": fmt(r.fluid),
                "Fluid − simulation": diff_text,
                "Relative": rel,
            }
        )
    return pd.DataFrame(rows)


def fluid_caption(des: sim.SimResult, flu: sim.FluidResult) -> str:
    return (
        "Both models on the same sample. The fluid model sees each minute's averages (an M/M/k queue with "
        "balking per minute), so it misses bursts shorter than a minute; the simulation serves every request. "
        f"Fluid model: {flu.elapsed_s * 1000:.0f} ms; simulation: {des.elapsed_s * 1000:.0f} ms."
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
        f"**{_plural(opt.best_gpus, 'GPU')}** is the cheapest fleet meeting "
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
