"""Budget enforcement on the request path, and the spend export.

Targets (issue 6): the check and reservation with 10 budgets, median <= 20 us (the decision
itself is computed once outside the timing; a baseline admit with no budget is measured in
the same run); the spend export over 1,000,000 records <= 1 s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sophia import config
from sophia.budgets import model as bmod
from sophia.budgets import spend
from sophia.budgets.guard import BudgetGuard
from sophia.ingest import demo
from sophia.log.db import Database
from sophia.routing import features, policy

CFG = config.load(Path(__file__).resolve().parents[1] / "sophia.toml")


def per_call_us(fn, n=20_000, rounds=7) -> float:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(out)


def main() -> None:
    scopes = [
        "global",
        "tier:serverless",
        "tier:dedicated",
        "endpoint:serverless",
        "endpoint:sophia-ai-core",
        "model:llama-4-scout-17b-16e-instruct",
        "model:llama3.1-8b-instruct",
        "global",
        "tier:serverless",
        "model:llama-4-scout-17b-16e-instruct",
    ]
    budgets = [
        bmod.parse_budget(
            {"name": f"b{i}", "scope": s, "period": ("day", "week", "month")[i % 3], "amount_usd": 1e9}, CFG
        )
        for i, s in enumerate(scopes)
    ]
    f = features.extract([{"role": "user", "content": "hello " * 100}], 256, CFG.scorer, 512)
    d = policy.decide(f, CFG)
    state = policy.RuntimeState()
    tz = bmod.zone("UTC")
    for label, bs in (("no budget (baseline)", []), ("10 budgets", budgets)):
        g = BudgetGuard(CFG, bs, tz)
        held = []

        def admit(g=g, held=held):
            held.append(g.admit(lambda st: d, state, "api", CFG)[1])

        us = per_call_us(admit)
        settle_us = per_call_us(
            lambda g=g, held=held: g.settle(held.pop(), d.tier, d.endpoint, d.model, 1e-6, "api"),
            n=len(held) // 7,
            rounds=7,
        )
        target = "" if not bs else f" (target <= 20 us)  {'OK' if us <= 20 else 'OVER'}"
        print(f"{label}: check + reservation median {us:.1f} us{target}; settle after the call {settle_us:.1f} us")

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "spend.duckdb")
        demo.write(db, demo.generate(CFG, 1_000_000, 60, seed=2))
        with db.cursor() as cur:
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                df = spend.spend(cur, CFG, "day", ["tier", "endpoint", "model"])
                text = spend.to_csv(df)
                runs.append(time.perf_counter() - t)
            base = []
            for _ in range(5):
                t = time.perf_counter()
                cur.execute("SELECT sum(metered_cost_usd) FROM requests").fetchall()
                base.append(time.perf_counter() - t)
        db.close()
    med = statistics.median(runs)
    print(
        f"spend export (by day x tier x endpoint x model) over 1,000,000 records: median {med:.3f} s "
        f"(target <= 1 s)  {'OK' if med <= 1 else 'OVER'}; {len(df):,} rows, {len(text):,} bytes; "
        f"baseline one SUM {statistics.median(base) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
