"""The threshold tuning page with 1,000,000 logged records, server-side (AppTest).

Target (issue 4): a slider move to updated figures <= 1 s. Reported: the first render (loads
and prepares the traffic once), then the median of several slider moves; the baseline is a
rerun of the page with nothing changed, measured in the same run.

    .venv/bin/python bench/bench_tuning.py [--rows 1000000] [--moves 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_app import build, fast_config, rss_mb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--moves", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cfg, db = Path(d) / "sophia.toml", Path(d) / "bench.duckdb"
        fast_config(cfg)
        print(f"setup: {args.rows:,} records through the bulk path in {build(db, cfg, args.rows):.1f} s")
        os.environ["SOPHIA_CONFIG"], os.environ["SOPHIA_DB"] = str(cfg), str(db)
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        t = time.perf_counter()
        at.switch_page("pages/tuning.py").run()
        first = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
        base, moves = [], []
        for i in range(args.moves):
            t = time.perf_counter()
            at.run()
            base.append(time.perf_counter() - t)
            value = [0.3, 0.5, 0.2, 0.6, 0.4, 0.1][i % 6]
            t = time.perf_counter()
            at.slider(key="tn_cx").set_value(value).run()
            moves.append(time.perf_counter() - t)
            assert not at.exception, [e.value for e in at.exception]
        share = next(m.value for m in at.metric if m.label == "To dedicated GPUs")
        med = statistics.median(moves)
        print(f"tuning page, first render (load + prepare {args.rows:,} records): {first:.2f} s")
        print(
            f"slider move to updated figures: median {med:.3f} s over {args.moves} moves "
            f"(target <= 1 s)  {'OK' if med <= 1 else 'OVER'}; baseline rerun with no change "
            f"{statistics.median(base):.3f} s; last share {share}"
        )
        now, peak = rss_mb()
        print(f"memory: {now:.0f} MB now, {peak:.0f} MB peak")


if __name__ == "__main__":
    main()
