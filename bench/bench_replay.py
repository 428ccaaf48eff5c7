"""Replay and sweep over logged records, at one or more sizes, beside bare scans of the same log.

Targets: at 1M rows (issue 4) replay under new settings <= 0.3 s once the traffic is loaded, a
101-point sweep <= 3 s. At every size (issue 17) the whole `sophia replay` path — read the log,
score, route, sum — against two baselines measured in the same run on the same file: a bare
DuckDB aggregate over the columns replay reads, and fetching the numeric columns into numpy.
Issue 17's floor is replay (load + replay) <= 2x the bare aggregate at 10M rows, and peak memory
<= 1.5 GB; both are reported as measured, with the growth from each size to the next.

    python bench/bench_replay.py                       # 1,000,000 rows
    python bench/bench_replay.py --rows 1000000 5000000 10000000

Each size is built with `sophia demo` (in parts, bounded memory) in a child process, and each
measurement runs in a fresh child process, so peak memory is that measurement's own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CFG = ROOT / "sophia.example.toml"

MEASURE = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from sophia import config
from sophia.analysis import replay
from sophia.log.db import Database

what, cfg_path, db_path = sys.argv[2], sys.argv[3], sys.argv[4]
cfg = config.load(cfg_path)
out = {}
if what == "bare":
    import duckdb
    con = duckdb.connect(db_path, read_only=True)
    q = ("SELECT sum(prompt_chars), sum(est_prompt_tokens), sum(max_tokens), sum(prompt_tokens), "
         "sum(completion_tokens), sum(latency_ms), count(*) FILTER (WHERE tier = 'dedicated'), "
         "sum(len(keywords)), count(DISTINCT endpoint), min(ts), max(ts) FROM requests")
    runs = []
    for _ in range(3):
        t = time.perf_counter(); con.execute(q).fetchall(); runs.append(time.perf_counter() - t)
    out["bare_s"] = sorted(runs)[1]
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        con.execute("SELECT prompt_chars, est_prompt_tokens, max_tokens, prompt_tokens, completion_tokens, "
                    "latency_ms FROM requests").fetchnumpy()
        runs.append(time.perf_counter() - t)
    out["fetch_s"] = sorted(runs)[1]
else:
    db = Database(db_path)
    new = cfg.with_routing(complexity_threshold=0.4, cost_threshold_usd=0.05)
    t0 = time.perf_counter()
    with db.cursor() as cur:
        traffic = replay.load(cur)
    out["load_s"] = time.perf_counter() - t0
    t = time.perf_counter(); r = replay.replay(traffic, new); out["replay_s"] = time.perf_counter() - t
    out["end_to_end_s"] = time.perf_counter() - t0
    prepared = replay.prepare(traffic, new)
    runs = []
    for _ in range(3):
        t = time.perf_counter(); replay.replay(traffic, new, prepared=prepared); runs.append(time.perf_counter() - t)
    out["move_s"] = sorted(runs)[1]
    t = time.perf_counter(); replay.sweep(traffic, new, prepared=prepared); out["sweep_s"] = time.perf_counter() - t
    assert np.isfinite(r.metered_cost_usd) and r.requests == traffic.n
    db.close()
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(what: str, db: Path) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", MEASURE, str(ROOT), what, str(CFG), str(db)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def build(db: Path, rows: int) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sophia.cli", "demo", "--requests", str(rows), "--days", "30", "--seed", "1"]
        + ["--db", str(db), "--config", str(CFG)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size (medians are reported)")
    args = ap.parse_args()
    ok = True
    seen: list[tuple[int, dict]] = []
    with tempfile.TemporaryDirectory() as d:
        for rows in args.rows:
            db = Path(d) / f"r{rows}.duckdb"
            built = build(db, rows)
            rounds = [(child("bare", db), child("replay", db)) for _ in range(args.rounds)]
            fig = {k: statistics.median(b[k] for b, _ in rounds) for k in ("bare_s", "fetch_s")}
            fig |= {k: statistics.median(r[k] for _, r in rounds) for k in rounds[0][1]}
            ratio = fig["end_to_end_s"] / fig["bare_s"]
            print(f"{rows:,} rows (built with `sophia demo` in {built:.0f} s), medians of {args.rounds} rounds")
            print(f"  bare DuckDB aggregate over the same columns   {fig['bare_s']:.3f} s   (baseline)")
            print(f"  fetch the numeric columns into numpy          {fig['fetch_s']:.3f} s")
            print(
                f"  sophia replay: read + replay                  {fig['end_to_end_s']:.2f} s = {ratio:.1f}x the bare "
                f"aggregate (read {fig['load_s']:.2f} s, replay {fig['replay_s']:.2f} s)"
            )
            print(f"  threshold move, scores prepared               {fig['move_s'] * 1000:.0f} ms")
            print(f"  101-point sweep, scores prepared              {fig['sweep_s']:.2f} s")
            print(f"  peak memory of the replay process             {fig['peak_mb']:,.0f} MB")
            if rows == 1_000_000:
                good = fig["move_s"] <= 0.3 and fig["sweep_s"] <= 3
                ok &= good
                print(f"  1M targets (move <= 0.3 s, sweep <= 3 s): {'OK' if good else 'OVER'}")
            if rows >= 10_000_000:
                print(
                    f"  10M floors (issue 17): read + replay <= 2x bare: {'OK' if ratio <= 2 else 'OVER'} "
                    f"({ratio:.1f}x); peak <= 1,500 MB: {'OK' if fig['peak_mb'] <= 1500 else 'OVER'}"
                )
            if seen:
                prev_rows, prev = seen[-1]
                print(
                    f"  growth from {prev_rows:,}: replay x{fig['end_to_end_s'] / prev['end_to_end_s']:.2f}, "
                    f"bare x{fig['bare_s'] / prev['bare_s']:.2f}, rows x{rows / prev_rows:.1f}"
                )
            seen.append((rows, fig))
            db.unlink(missing_ok=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
