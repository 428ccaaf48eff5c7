"""The Overview's routing-effectiveness panels against computations over the same rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from sophia.log import append, schema
from sophia.log import effectiveness as eff
from sophia.log.db import Database
from sophia.log.filters import Filters
from sophia.money import pricing
from tests.test_analytics import cfg, con, df, handmade  # noqa: F401  (fixtures)

T0 = datetime(2026, 3, 1, 12, 0)


def test_histogram_and_threshold_shifts_equal_pandas(con, df):  # noqa: F811
    bins = eff.complexity_histogram(con, Filters(), 0.7)
    c = df["complexity"].dropna()
    idx = np.minimum(np.floor(c / eff.BIN), 19).astype(int)
    assert bins["requests"].tolist() == [int((idx == i).sum()) for i in range(20)]
    # Moving the threshold to 0.5 shifts every request with a score from 0.5 to 0.7 to dedicated.
    at = bins.set_index(bins["lo"].round(2))
    assert at.loc[0.5, "shift"] == int(((idx >= 10) & (idx < 14)).sum())
    assert at.loc[0.7, "shift"] == 0


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
    rows = [
        # serverless fails twice (requests fail over to the GPU), recovers 70 s after the first failure.
        handmade(
            1, ts=T0, reason="failover", failover_path=["serverless", "sophia-ai-core"], endpoint="sophia-ai-core"
        ),
        handmade(
            2,
            ts=T0 + timedelta(seconds=10),
            reason="failover",
            failover_path=["serverless", "sophia-ai-core"],
            endpoint="sophia-ai-core",
        ),
        handmade(3, ts=T0 + timedelta(seconds=70)),
        # Later a failure with no recovery yet.
        handmade(4, ts=T0 + timedelta(hours=1), status="error", error="503", reason="cost-optimized"),
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
    causes = eff.failovers_by_cause(c, Filters())
    assert causes.to_dict("records") == [
        {"failed_endpoint": "serverless", "served_by": "sophia-ai-core", "requests": 2}
    ]
    rate, peak, when = eff.throughput(c, Filters(), "hour")
    assert peak == pytest.approx(2 / 60) and rate["requests"].sum() == 4
    c.close()
