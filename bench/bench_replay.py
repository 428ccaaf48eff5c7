"""Replay and sweep speed over 1,000,000 logged records.

Targets (issue 4): replay under new settings <= 0.3 s; a 101-point sweep <= 3 s.
Baseline in the same run: one numpy pass summing a column of the same length.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sophia import config
from sophia.analysis import replay
from sophia.ingest import demo
from sophia.log.db import Database

CFG = config.load(Path(__file__).resolve().parents[1] / "sophia.toml")
N = 1_000_000


def timed(fn, runs=5):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "bench.duckdb")
        t0 = time.perf_counter()
        demo.write(db, demo.generate(CFG, N, 30, seed=1))
        print(f"setup: {N:,} demo records written through the bulk path in {time.perf_counter() - t0:.1f} s")
        with db.cursor() as cur:
            t0 = time.perf_counter()
            traffic = replay.load(cur)
            load_s = time.perf_counter() - t0
        db.close()
    new = CFG.with_routing(complexity_threshold=0.4, cost_threshold_usd=0.05)
    base = timed(lambda: traffic.completion_tokens.sum())
    rep = timed(lambda: replay.replay(traffic, new))
    prepared = replay.prepare(traffic, new)
    rep_prepared = timed(lambda: replay.replay(traffic, new, prepared=prepared))
    sw = timed(lambda: replay.sweep(traffic, new), runs=3)
    r = replay.replay(traffic, new)
    print(f"load {N:,} records from DuckDB: {load_s:.2f} s (once per selection; cached by the tuning page)")
    print(
        f"replay under new settings: median {rep:.3f} s (target <= 0.3 s)  {'OK' if rep <= 0.3 else 'OVER'}; "
        f"threshold move with scores prepared: {rep_prepared * 1000:.0f} ms; baseline column sum {base * 1000:.2f} ms"
    )
    print(f"101-point sweep: median {sw:.2f} s (target <= 3 s)  {'OK' if sw <= 3 else 'OVER'}")
    print(f"  replay split: {r.by_tier}, changed decisions {r.changed_decisions:,}")
    assert np.isfinite(r.metered_cost_usd)


if __name__ == "__main__":
    main()
