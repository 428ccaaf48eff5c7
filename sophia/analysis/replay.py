"""Replay logged or imported traffic under any settings, with the live routing policy.

`load` reads a selection of the log once (columns as numpy arrays); `replay` applies
`policy.decide_table` — the code live routing uses — to all of it at once and aggregates
split, cost, latency and, for labelled records, quality. `sweep` runs the policy over a grid
of thresholds in one go and `curve` summarises it against the baselines a router is judged by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from sophia.config import Config
from sophia.ingest import importers
from sophia.log import traffic
from sophia.money import periods, pricing
from sophia.routing import policy
from sophia.routing.backends import simulated


@dataclass
class Traffic:
    """A selection of the log as columns: what the policy sees and what costs are made of."""

    n: int
    ts: np.ndarray
    prompt_chars: np.ndarray
    est_prompt_tokens: np.ndarray
    max_tokens: np.ndarray
    word_flags: dict[str, np.ndarray]
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    latency_ms: np.ndarray
    recorded_dedicated: np.ndarray
    runtime_only: np.ndarray
    policy_version: np.ndarray
    # labelled records: model -> correct (bool) and its output tokens (-1 unknown)
    labelled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_tokens: dict[str, np.ndarray] = field(default_factory=dict)
    endpoint: pd.Categorical | None = None  # recorded endpoint (for observed latencies)

    @property
    def span(self) -> tuple[datetime | None, datetime | None]:
        if not self.n:
            return None, None
        return pd.Timestamp(self.ts.min()).to_pydatetime(), pd.Timestamp(self.ts.max()).to_pydatetime()


def load(cur, sources=None, start: datetime | None = None, end: datetime | None = None) -> Traffic:
    """A selection of the log (sources, [start, end)) as columns, in the log's own order."""
    words, df, lab, endpoints = traffic.read(cur, sources, start, end)
    n = len(df["ts"])
    t = Traffic(
        n=n,
        ts=np.asarray(df["ts"]).astype("datetime64[us]"),
        prompt_chars=_ints(df["prompt_chars"]),
        est_prompt_tokens=_ints(df["est_prompt_tokens"]),
        max_tokens=_ints(df["max_tokens"]),
        word_flags={w: np.asarray(df[f"w{i}"], dtype=bool) for i, w in enumerate(words)},
        prompt_tokens=_ints(df["pt"]),
        completion_tokens=_ints(df["ct"]),
        latency_ms=np.asarray(df["latency_ms"], dtype=float),
        recorded_dedicated=np.asarray(df["ded"], dtype=bool),
        runtime_only=np.asarray(df["rt"], dtype=bool),
        policy_version=_ints(df["pv"]),
        # Codes into the endpoint names, compared like strings (`t.endpoint == name`).
        endpoint=pd.Categorical.from_codes(np.asarray(df["ep"], dtype=np.int16) - 1, categories=endpoints),
    )
    t.labelled = np.zeros(n, dtype=bool)
    if len(lab):
        index = pd.Series(np.arange(n), index=pd.Index(df["request_id"]))
        for model, g in lab.groupby("model"):
            pos = index.reindex(g["request_id"]).to_numpy()
            ok = ~np.isnan(pos)
            pos = pos[ok].astype(np.int64)
            correct = np.zeros(n, dtype=bool)
            correct[pos] = g["correct"].to_numpy(dtype=bool)[ok]
            toks = np.full(n, -1, dtype=np.int64)
            toks[pos] = g["tok"].to_numpy(dtype=np.int64)[ok]
            has = np.zeros(n, dtype=bool)
            has[pos] = True
            t.labels[str(model)], t.label_tokens[str(model)] = correct, toks
            t.labelled = has if not t.labelled.any() else (t.labelled & has)
    return t


def _ints(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


# --- replay -------------------------------------------------------------------------


def group_counts(t: Traffic, cfg: Config) -> dict[str, np.ndarray]:
    """Keyword counts per group under `cfg`'s scorer, from the keywords each record had.
    Words a record was never searched for (new words, token-only imports) count as absent."""
    out = {}
    for g in cfg.scorer.keyword_groups:
        c = np.zeros(t.n, dtype=np.int64)
        for w in g.words:
            if w in t.word_flags:
                c += t.word_flags[w]
        out[g.name] = c
    return out


def label_tiers(t: Traffic, setting: dict | None = None) -> dict[str, str]:
    if not t.labels:
        return {}
    acc = {m: float(v[t.labelled].mean()) if t.labelled.any() else 0.0 for m, v in t.labels.items()}
    return importers.tier_models(list(t.labels), acc, setting)


@dataclass
class Prepared:
    """What does not depend on thresholds: scores, estimates and per-target outcomes."""

    score: np.ndarray
    est_nano: np.ndarray
    targets: tuple
    metered: list[np.ndarray]  # per target
    amortized: list[np.ndarray]
    latency: list[np.ndarray]
    correct: list[np.ndarray | None]


def prepare(t: Traffic, cfg: Config, tiers: dict[str, str] | None = None) -> Prepared:
    score, _ = policy.score(t.prompt_chars, t.max_tokens, group_counts(t, cfg), cfg.scorer)
    nano, _ = policy.estimated_cost_nano(t.est_prompt_tokens, t.max_tokens, cfg)
    targets = policy.targets(cfg)
    tiers = tiers if tiers is not None else label_tiers(t)
    scale = _latency_scale(t, cfg)
    metered, amortized, latency, correct = [], [], [], []
    for tier, endpoint, model in targets:
        ct = t.completion_tokens
        label_model = tiers.get(tier)
        if label_model:  # labelled records: the output length of the model standing for this tier
            toks = t.label_tokens[label_model]
            ct = np.where(toks >= 0, toks, ct)
        m, a = pricing.cost_of(cfg, endpoint, model, t.prompt_tokens, ct)
        metered.append(m)
        amortized.append(a)
        ep = cfg.endpoint(endpoint)
        latency.append(simulated.latency_ms(ep.simulation, ct) * scale.get(endpoint, 1.0))
        correct.append(t.labels[label_model] if label_model else None)
    return Prepared(score, nano, targets, metered, amortized, latency, correct)


def _latency_scale(t: Traffic, cfg: Config) -> dict[str, float]:
    """Per endpoint, observed latency over the simulated model's (where enough was observed)."""
    out = {}
    if t.endpoint is None:
        return out
    for ep in cfg.endpoints:
        m = (t.endpoint == ep.name) & ~np.isnan(t.latency_ms)
        if m.sum() >= 20:
            model = simulated.latency_ms(ep.simulation, t.completion_tokens[m])
            med = float(np.median(model))
            if med > 0:
                out[ep.name] = float(np.median(t.latency_ms[m])) / med
    return out


@dataclass
class ReplayResult:
    requests: int
    by_tier: dict[str, int]
    by_endpoint: dict[str, int]
    by_model: dict[str, int]
    metered_cost_usd: float
    amortized_cost_usd: float
    fixed_cost_usd: float
    latency_ms: dict[str, dict[str, float]]
    quality: float | None
    labelled: int
    changed_decisions: int
    runtime_only: int
    code: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=np.int8))
    # The same tokens at the serverless primary / premium model's prices (money.baselines).
    primary_usd: float = 0.0
    premium_usd: float = 0.0

    @property
    def actual_total_usd(self) -> float:
        """What the replayed routing would pay: metered plus the fleet's GPU-hours over the span."""
        return self.metered_cost_usd + self.fixed_cost_usd

    @property
    def dedicated_share(self) -> float:
        return self.by_tier.get("dedicated", 0) / self.requests if self.requests else 0.0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "serverless": self.by_tier.get("serverless", 0),
            "dedicated": self.by_tier.get("dedicated", 0),
            "by_endpoint": self.by_endpoint,
            "by_model": self.by_model,
            "metered_cost_usd": round(self.metered_cost_usd, 6),
            "amortized_cost_usd": round(self.amortized_cost_usd, 6),
            "fixed_cost_usd": round(self.fixed_cost_usd, 6),
            "actual_total_usd": round(self.actual_total_usd, 6),
            "all_serverless_primary_usd": round(self.primary_usd, 6),
            "all_premium_usd": round(self.premium_usd, 6),
            # money.baselines.FORMULA: all on the primary model minus the actual total.
            "cost_savings_usd": round(self.primary_usd - self.actual_total_usd, 6),
            "latency_ms": self.latency_ms,
            "quality": self.quality,
            "labelled_requests": self.labelled,
            "changed_decisions": self.changed_decisions,
            "runtime_only_decisions": self.runtime_only,
        }


def codes(p: Prepared, cfg: Config) -> np.ndarray:
    return np.asarray(policy.route(p.score, p.est_nano, cfg), dtype=np.int8)


def replay(
    t: Traffic, cfg: Config, tiers: dict[str, str] | None = None, prepared: Prepared | None = None
) -> ReplayResult:
    p = prepared or prepare(t, cfg, tiers)
    code = codes(p, cfg)
    counts = np.bincount(code, minlength=len(p.targets))
    by_tier: dict[str, int] = {}
    by_endpoint: dict[str, int] = {}
    by_model: dict[str, int] = {}
    metered = amortized = 0.0
    lat: dict[str, list[np.ndarray]] = {}
    good = 0
    for k, (tier, endpoint, model) in enumerate(p.targets):
        c = int(counts[k])
        if not c:
            continue
        sel = code == k
        by_tier[tier] = by_tier.get(tier, 0) + c
        by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + c
        by_model[model] = by_model.get(model, 0) + c
        metered += float(p.metered[k][sel].sum())
        amortized += float(p.amortized[k][sel].sum())
        lat.setdefault(tier, []).append(p.latency[k][sel])
        if p.correct[k] is not None:
            good += int((p.correct[k] & sel & t.labelled).sum())
    dedicated_new = np.isin(code, [k for k, tg in enumerate(p.targets) if tg[0] == policy.DEDICATED])
    changed = int(((dedicated_new != t.recorded_dedicated) & ~t.runtime_only).sum())
    labelled = int(t.labelled.sum())
    start, end = t.span
    fixed = pricing.fixed_cost(cfg.endpoints, start, end) if start else 0.0
    ptok, ctok = float(np.sum(t.prompt_tokens)), float(np.sum(t.completion_tokens))

    def at(model: str) -> float:
        return pricing.at_price(ptok, ctok, pricing.price_of(cfg, model))

    latency = {}
    for tier, parts in lat.items():
        v = np.concatenate(parts)
        latency[tier] = {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1)}
    return ReplayResult(
        requests=t.n,
        by_tier=by_tier,
        by_endpoint=by_endpoint,
        by_model=by_model,
        metered_cost_usd=metered,
        amortized_cost_usd=amortized,
        fixed_cost_usd=fixed,
        latency_ms=latency,
        quality=good / labelled if labelled else None,
        labelled=labelled,
        changed_decisions=changed,
        runtime_only=int(t.runtime_only.sum()),
        code=code,
        primary_usd=at(cfg.routing.serverless_model),
        premium_usd=at(cfg.routing.premium_model),
    )


# --- sweeps and curves ----------------------------------------------------------------


def sweep(
    t: Traffic, cfg: Config, thresholds=None, tiers: dict[str, str] | None = None, prepared: Prepared | None = None
) -> pd.DataFrame:
    """The policy at every complexity threshold of the grid (default 0.00 … 1.00, 101 points).

    Rows are grouped once by what the policy reads (score, and whether the estimate passes the
    cost threshold); the policy then decides each group at each threshold, so a 101-point
    sweep costs little more than one replay.
    """
    thresholds = np.round(np.linspace(0, 1, 101), 4) if thresholds is None else np.asarray(thresholds, dtype=float)
    p = prepared or prepare(t, cfg, tiers)
    limit = int(round(cfg.routing.cost_threshold_usd * policy.NANO))
    key = p.score.astype(np.int64) * 2 + (p.est_nano > limit)
    groups, inv = np.unique(key, return_inverse=True)
    g_score, g_est = groups // 2, np.where(groups % 2 == 1, limit + 1, 0)
    size = len(groups)
    sums = {
        "n": np.bincount(inv, minlength=size),
        "n_labelled": np.bincount(inv, weights=t.labelled, minlength=size),
        "metered": [np.bincount(inv, weights=m, minlength=size) for m in p.metered],
        "amortized": [np.bincount(inv, weights=a, minlength=size) for a in p.amortized],
        "good": [
            np.bincount(inv, weights=(c & t.labelled), minlength=size) if c is not None else None for c in p.correct
        ],
    }
    labelled = int(t.labelled.sum())
    rows = []
    for th in thresholds:
        g_code = np.asarray(policy.route(g_score, g_est, cfg.with_routing(complexity_threshold=float(th))))
        row = {"threshold": float(th), "dedicated": 0, "metered_cost_usd": 0.0, "amortized_cost_usd": 0.0}
        good = ded_labelled = 0.0
        for k, target in enumerate(p.targets):
            sel = g_code == k
            if target[0] == policy.DEDICATED:
                row["dedicated"] += int(sums["n"][sel].sum())
                ded_labelled += float(sums["n_labelled"][sel].sum())
            row["metered_cost_usd"] += float(sums["metered"][k][sel].sum())
            row["amortized_cost_usd"] += float(sums["amortized"][k][sel].sum())
            if sums["good"][k] is not None:
                good += float(sums["good"][k][sel].sum())
        row["dedicated_share"] = row["dedicated"] / t.n if t.n else 0.0
        # quality and the share it is plotted against are over the labelled records alone
        row["labelled_share"] = round(ded_labelled) / labelled if labelled else np.nan
        row["quality"] = round(good) / labelled if labelled else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Curve:
    weak: float
    strong: float
    points: pd.DataFrame  # share, quality for the policy
    random: pd.DataFrame
    oracle: pd.DataFrame
    apgr: float
    random_apgr: float
    oracle_apgr: float
    # Call-performance thresholds: the share of strong-tier calls needed for 50% / 80% of the gap.
    cpt: dict[str, dict[int, float | None]] = field(default_factory=dict)  # policy|random|oracle -> X -> share
    # The most of the gap the policy's own thresholds recover (1.0: all of it); None: no gap.
    policy_gap_reached: float | None = None


CPT_LEVELS = (50, 80)


def _sorted(share, quality) -> tuple[np.ndarray, np.ndarray]:
    s, q = np.asarray(share, dtype=float), np.asarray(quality, dtype=float)
    keep = ~(np.isnan(s) | np.isnan(q))
    s, q = s[keep], q[keep]
    order = np.lexsort((q, s))
    return s[order], q[order]


def _anchored(share, quality, weak: float, strong: float) -> tuple[np.ndarray, np.ndarray]:
    """The curve's points by share, with all-weak at 0 and all-strong at 1 (as APGR reads it)."""
    return _sorted(
        np.r_[0.0, np.asarray(share, dtype=float), 1.0], np.r_[weak, np.asarray(quality, dtype=float), strong]
    )


def gap_reached(share, quality, weak: float, strong: float) -> float | None:
    """The largest share of the quality gap any of the curve's own points recovers (None: no gap)."""
    _, q = _sorted(share, quality)
    gap = strong - weak
    if not gap > 0 or not len(q):
        return None
    return float((q.max() - weak) / gap)


def cpt(share, quality, weak: float, strong: float, level: float) -> float | None:
    """RouteLLM's call-performance threshold CPT(level%): the smallest share of calls to the strong
    tier at which the curve reaches weak + level% of the gap, by linear interpolation between
    neighbouring points (the first crossing from the lowest share up).

    Read off the curve's own points only: a policy whose thresholds never send more than 1% of
    calls to the strong tier has no CPT(50%), however the all-strong end would look if it were
    joined on. None when the gap is not positive or no point gets there."""
    gap = strong - weak
    if not gap > 0:
        return None
    target = weak + gap * level / 100 - 1e-12  # a point exactly at the level reaches it
    s, q = _sorted(share, quality)
    if not len(s):
        return None
    if q[0] >= target:
        return float(s[0])
    for i in range(1, len(s)):
        if q[i] >= target:
            if q[i] == q[i - 1]:
                return float(s[i])
            return float(s[i - 1] + (target - q[i - 1]) / (q[i] - q[i - 1]) * (s[i] - s[i - 1]))
    return None


def apgr(share: np.ndarray, quality: np.ndarray, weak: float, strong: float) -> float:
    """Area under the performance-gap-recovered curve over [0, 1] share on the strong tier:
    0.5 is what a random split gets, 1.0 a router that recovers the whole gap at once."""
    gap = strong - weak
    if gap == 0:
        return float("nan")
    s, q = _anchored(share, quality, weak, strong)
    return float(np.trapezoid((q - weak) / gap, s))


def curve(t: Traffic, sweep_df: pd.DataFrame, tiers: dict[str, str], seed: int = 0, points: int = 101) -> Curve:
    """The cost-quality curve of the policy with the weak, strong, random and oracle baselines."""
    lab = t.labelled
    w = t.labels[tiers["serverless"]][lab]
    s = t.labels[tiers["dedicated"]][lab]
    weak, strong = float(w.mean()), float(s.mean())
    n = len(w)
    shares = np.linspace(0, 1, points)
    # random: send a random share to the strong tier (the mean of 20 draws)
    rng = np.random.default_rng(seed)
    k = np.round(shares * n).astype(int)
    diff = s.astype(int) - w.astype(int)
    gains = [np.concatenate([[0], np.cumsum(diff[rng.permutation(n)])])[k] for _ in range(20)]
    rnd = pd.DataFrame({"share": shares, "quality": weak + np.mean(gains, axis=0) / n})
    # oracle: strong only where only the strong model is right
    fix = int(np.count_nonzero(~w & s))
    oq = weak + np.minimum(k, fix) / n
    orc = pd.DataFrame({"share": shares, "quality": oq})
    pts = sweep_df.assign(share=sweep_df["labelled_share"])[["threshold", "share", "quality"]]
    gap = strong - weak
    cpts = {
        "policy": {x: cpt(pts["share"], pts["quality"], weak, strong, x) for x in CPT_LEVELS},
        # A random split recovers, in expectation, the gap in proportion to the calls it moves.
        "random": {x: (x / 100 if gap > 0 else None) for x in CPT_LEVELS},
        "oracle": {x: cpt(orc["share"], orc["quality"], weak, strong, x) for x in CPT_LEVELS},
    }
    return Curve(
        weak,
        strong,
        pts,
        rnd,
        orc,
        apgr(pts["share"].to_numpy(), pts["quality"].to_numpy(), weak, strong),
        apgr(rnd["share"].to_numpy(), rnd["quality"].to_numpy(), weak, strong),
        apgr(orc["share"].to_numpy(), orc["quality"].to_numpy(), weak, strong),
        cpts,
        gap_reached(pts["share"], pts["quality"], weak, strong),
    )


def labelled_curve(t: Traffic, sweep_df: pd.DataFrame, tiers: dict[str, str] | None) -> Curve | None:
    """The curve when there is one to draw: labelled traffic whose two tiers stand for different models."""
    if not tiers or not t.labelled.any() or tiers[policy.SERVERLESS] == tiers[policy.DEDICATED]:
        return None
    return curve(t, sweep_df, tiers)


# --- inverse knobs --------------------------------------------------------------------


def monthly(cost: float, t: Traffic) -> float:
    """A selection's cost scaled to a month (`periods.MONTH_DAYS`) of the same traffic."""
    start, end = t.span
    days = max(((end - start).total_seconds() / periods.DAY_S) if start else 0.0, 1 / 24)
    return periods.per_month(cost, days)


def threshold_for_share(sweep_df: pd.DataFrame, share: float) -> float:
    i = (sweep_df["dedicated_share"] - share).abs().idxmin()
    return float(sweep_df.loc[i, "threshold"])


def threshold_for_budget(sweep_df: pd.DataFrame, t: Traffic, cfg: Config, budget_usd: float) -> float | None:
    """The threshold with the best quality (else the most serverless) whose monthly cost —
    metered spend plus every GPU-hour — fits the budget; None when none does."""
    fixed = pricing.hourly_fixed(cfg.endpoints) * periods.MONTH_HOURS
    cost = sweep_df["metered_cost_usd"].map(lambda c: monthly(c, t)) + fixed
    ok = sweep_df[cost <= budget_usd]
    if ok.empty:
        return None
    key = "quality" if ok["quality"].notna().any() else "threshold"
    return float(ok.sort_values([key, "threshold"], ascending=[False, False]).iloc[0]["threshold"])


def threshold_for_quality(sweep_df: pd.DataFrame, floor: float) -> float | None:
    """The cheapest threshold whose quality is at least `floor`."""
    ok = sweep_df[sweep_df["quality"] >= floor]
    if ok.empty:
        return None
    return float(ok.sort_values(["metered_cost_usd", "threshold"], ascending=[True, False]).iloc[0]["threshold"])
