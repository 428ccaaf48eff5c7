"""The Overview's routing-effectiveness panels against computations over the same rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from sophia.analysis import effectiveness as eff
from sophia.log import append, schema
from sophia.log.db import Database
from sophia.log.filters import Filters
from sophia.money import pricing
from tests.test_analytics import cfg, con, df, handmade  # noqa: F401  (fixtures)

T0 = datetime(2026, 3, 1, 12, 0)


def test_histogram_and_threshold_shifts_equal_pandas(con, df, cfg):  # noqa: F811
    bins = eff.complexity_histogram(con, Filters(), cfg)
    c = df.dropna(subset=["complexity"])
    score = (c["complexity"] * 10_000).round().astype(int)
    idx = np.minimum(score // 500, 19)
    assert bins["requests"].tolist() == [int((idx == i).sum()) for i in range(20)]
    # Only requests the cost rule does not send to dedicated anyway move with the threshold.
    movable = score[~((c["estimated_cost_usd"] * 1e9).round() > round(cfg.routing.cost_threshold_usd * 1e9))]
    at = round(cfg.routing.complexity_threshold * 10_000)
    for lo, shift in zip(bins["lo"], bins["shift"], strict=True):
        edge = round(lo * 10_000)
        by_hand = int(((movable > edge) & (movable <= at)).sum()) - int(((movable > at) & (movable <= edge)).sum())
        assert shift == by_hand, lo
    assert bins.set_index(bins["lo"].round(2)).loc[0.7, "shift"] == 0
    assert bins["shift"].iloc[0] > 0  # to 0 the threshold moves every scored request above 0


def test_a_score_exactly_at_an_edge_stays_on_serverless_as_the_policy_says(tmp_path, cfg):  # noqa: F811
    # Scores 0.5 and 0.6 exactly: with the threshold at 0.5 only 0.6 is above it.
    rows = [handmade(1, complexity=0.5), handmade(2, complexity=0.6), handmade(3, complexity=0.65)]
    db = Database(tmp_path / "h.duckdb")
    with db.cursor() as cur:
        append.append(cur, schema.to_arrow(rows))
    db.close()
    c = duckdb.connect(str(tmp_path / "h.duckdb"))
    bins = eff.complexity_histogram(c, Filters(), cfg).set_index(
        eff.complexity_histogram(c, Filters(), cfg)["lo"].round(2)
    )
    assert bins.loc[0.5, "requests"] == 1 and bins.loc[0.6, "requests"] == 1 and bins.loc[0.65, "requests"] == 1
    # From 0.7 down to 0.5: 0.6 and 0.65 go to dedicated, 0.5 (not above 0.5) does not.
    assert bins.loc[0.5, "shift"] == 2 and bins.loc[0.45, "shift"] == 3 and bins.loc[0.65, "shift"] == 0
    c.close()


def test_tiers_side_by_side_equals_pandas(con, df):  # noqa: F811
    t = eff.tiers_side_by_side(con, Filters()).set_index("tier")
    for tier in ("serverless", "dedicated"):
        sel = df[df.tier == tier]
        ok = sel[sel.status == "ok"]
        assert t.loc[tier, "requests"] == len(sel)
        assert t.loc[tier, "p50_ms"] == pytest.approx(ok.latency_ms.quantile(0.5))
        assert t.loc[tier, "cost_per_request_usd"] == pytest.approx(
            (sel.metered_cost_usd + sel.amortized_cost_usd).mean()
        )


def test_savings_over_time_equal_pandas(con, df, cfg):  # noqa: F811
    s = eff.savings_over_time(con, cfg, Filters(), "day").set_index("bucket")
    p = pricing.price_of(cfg, cfg.routing.serverless_model)
    day = df.ts.dt.floor("D")
    prim = ((df.prompt_tokens * p.input_per_mtok + df.completion_tokens * p.output_per_mtok) / 1e6).groupby(day).sum()
    assert np.allclose(s["primary_usd"].to_numpy(), prim.to_numpy(), atol=1e-9)
    fixed = pd.DataFrame({"bucket": s.index, "fixed_usd": 1.5})
    both = eff.with_gpu_hours(s.reset_index(), fixed)
    assert np.allclose(both["savings_usd"], both["primary_usd"] - both["metered_usd"] - 1.5)


def test_recovery_time_of_a_crafted_outage(tmp_path):
    fo = {"reason": "failover", "endpoint": "sophia-ai-core", "failover_cause": "timeout"}
    rows = [
        # serverless fails twice (requests fail over to the GPU), recovers 70 s after the first failure.
        handmade(1, ts=T0, failover_path=["serverless", "sophia-ai-core"], **fo),
        handmade(2, ts=T0 + timedelta(seconds=10), failover_path=["serverless", "sophia-ai-core"], **fo),
        # A success on serverless at the very instant of a failure there does not close it in 0 s.
        handmade(5, ts=T0),
        handmade(3, ts=T0 + timedelta(seconds=70)),
        # Later a failure with no recovery yet.
        handmade(4, ts=T0 + timedelta(hours=1), status="error", error="503", reason="cost-optimized"),
        # A chain of three: the middle endpoint failed too, and its cause was a 5xx.
        handmade(
            6,
            ts=T0 + timedelta(minutes=30),
            failover_path=["sophia-ai-core", "sophia-data-pipeline", "serverless"],
            reason="failover",
            failover_cause="http_status",
        ),
    ]
    db = Database(tmp_path / "r.duckdb")
    with db.cursor() as cur:
        append.append(cur, schema.to_arrow(rows))
    db.close()
    c = duckdb.connect(str(tmp_path / "r.duckdb"))
    r = eff.recovery(c, Filters()).set_index("endpoint")
    assert r.loc["serverless", "outages"] == 2 and r.loc["serverless", "open_outages"] == 1
    assert r.loc["serverless", "failures"] == 3
    assert r.loc["serverless", "median_recovery_s"] == pytest.approx(70.0)
    assert r.loc["sophia-data-pipeline", "failures"] == 1 and r.loc["sophia-data-pipeline", "open_outages"] == 1
    causes = eff.failovers_by_cause(c, Filters())
    assert causes.to_dict("records") == [
        {"cause": "timeout", "failed_endpoint": "serverless", "served_by": "sophia-ai-core", "requests": 2},
        {"cause": "http_status", "failed_endpoint": "sophia-ai-core", "served_by": "serverless", "requests": 1},
    ]
    rate, peak, when = eff.throughput(c, Filters(), "hour")
    assert peak == pytest.approx(3 / 60) and rate["requests"].sum() == 6
    c.close()
