"""Money: metered cost exact to 1e-9 USD, dedicated never free, totals equal their rows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest

from sophia.ingest import demo
from sophia.log import stats
from sophia.log.db import Database
from sophia.money import pricing
from tests.helpers import reference_config

CFG = reference_config()


def exact(p, c, pin, pout) -> Decimal:
    return (Decimal(p) * Decimal(str(pin)) + Decimal(c) * Decimal(str(pout))) / Decimal(1_000_000)


@pytest.mark.parametrize("p,c", [(1, 1), (7, 13), (123_456, 7_891), (10**9, 3), (0, 0)])
def test_metered_cost_exact_to_a_nanodollar(p, c):
    for m in CFG.models:
        got = pricing.metered_cost(p, c, m.input_per_mtok, m.output_per_mtok)
        assert abs(Decimal(repr(got)) - exact(p, c, m.input_per_mtok, m.output_per_mtok)) <= Decimal("5e-10")


def test_vectorized_costs_equal_scalar_costs():
    rng = np.random.default_rng(1)
    p, c = rng.integers(0, 100_000, 1000), rng.integers(0, 8000, 1000)
    m = CFG.models[0]
    arr = pricing.metered_cost(p, c, m.input_per_mtok, m.output_per_mtok)
    assert [
        pricing.metered_cost(int(a), int(b), m.input_per_mtok, m.output_per_mtok) for a, b in zip(p, c, strict=False)
    ] == list(arr)


def test_amortized_cost_is_share_of_gpu_time():
    ep = CFG.endpoint("sophia-ai-core")
    # 1,500 output tokens at 1,500 tok/s = 1 s; 12,000 prompt tokens at 12,000 tok/s = 1 s
    assert pricing.amortized_cost(12_000, 1_500, ep) == pytest.approx(2 * 1.20 / 3600, abs=1e-9)
    assert pricing.amortized_cost(0, 1, ep) > 0


def test_fixed_cost_accrues_busy_or_idle():
    start, end = datetime(2026, 1, 1), datetime(2026, 1, 2)
    assert pricing.fixed_cost(CFG.endpoints, start, end) == pytest.approx(24 * (1.20 + 0.90 + 0.78))
    assert pricing.fixed_cost(CFG.endpoints, start, start) == 0


def test_totals_by_any_grouping_equal_the_sum_of_rows(tmp_path):
    db = Database(tmp_path / "c.duckdb")
    demo.write(db, demo.generate(CFG, 20_000, 7, seed=5))
    with db.cursor() as cur:
        rows = cur.execute(
            "SELECT tier, status, model, source, metered_cost_usd, amortized_cost_usd FROM requests"
        ).fetchall()
        row_sum = sum(Decimal(repr(r[4])) + Decimal(repr(r[5])) for r in rows)
        for group in ("tier", "endpoint", "model", "source", "date_trunc('day', ts)"):
            total = sum(
                Decimal(repr(x[0]))
                for x in cur.execute(
                    f"SELECT sum(metered_cost_usd + amortized_cost_usd) FROM requests GROUP BY {group}"
                ).fetchall()
            )
            assert abs(total - row_sum) < Decimal("0.005"), group
        s = stats.stats(cur, CFG)
    assert abs(Decimal(repr(s["total_cost_usd"])) - row_sum) < Decimal("0.005")
    # every dedicated row carries a GPU-time share, every serverless ok row a metered cost
    dedicated_ok = [r for r in rows if r[0] == "dedicated" and r[1] == "ok"]
    assert dedicated_ok and all(r[5] > 0 and r[4] == 0 for r in dedicated_ok)
    serverless_ok = [r for r in rows if r[0] == "serverless" and r[1] == "ok"]
    assert all(r[4] > 0 and r[5] == 0 for r in serverless_ok)
    db.close()
