"""Import speed and memory.

Targets (issue 4): the Azure conversation trace (19,366 rows) <= 1 s; a 1,000,000-row CSV
<= 5 s with memory under 1 GB. Each import runs in a fresh child process so that its peak
memory (ru_maxrss) is its own; the baseline is the same child reading the file with
DuckDB's read_csv and counting rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AZURE = ROOT.parent / "shared" / "data" / "traces" / "azure_llm_2023_conv.csv"

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from sophia import config
from sophia.ingest import importers
from sophia.log.db import Database
import duckdb
cfg = config.load({cfg!r})
t = time.perf_counter()
if {baseline}:
    n = duckdb.sql("SELECT count(*) FROM read_csv({path!r})").fetchall()[0][0]
else:
    db = Database({db!r})
    n = importers.import_file(db, cfg, {path!r}, {fmt!r}, mapping=importers.Mapping("t", "ms", "p", "c")).imported
    db.close()
print(json.dumps({{"rows": n, "s": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run(path: Path, fmt: str, tmp: Path, baseline: bool = False) -> dict:
    code = CHILD.format(
        root=str(ROOT),
        cfg=str(ROOT / "sophia.toml"),
        path=str(path),
        fmt=fmt,
        db=str(tmp / f"{path.stem}-{np.random.randint(1 << 30)}.duckdb"),
        baseline=baseline,
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if AZURE.exists():
            runs = [run(AZURE, "azure", tmp) for _ in range(3)]
            s = sorted(r["s"] for r in runs)[1]
            base = run(AZURE, "azure", tmp, baseline=True)
            print(
                f"azure conversation trace: {runs[0]['rows']:,} rows in median {s:.2f} s (target <= 1 s)  "
                f"{'OK' if s <= 1 else 'OVER'}; baseline DuckDB read_csv count {base['s']:.3f} s"
            )
        else:
            print(f"azure trace skipped: {AZURE} is absent")
        big = tmp / "big.csv"
        rng = np.random.default_rng(0)
        n = 1_000_000
        t = np.cumsum(rng.integers(0, 50, n))
        p, c = rng.integers(1, 4000, n), rng.integers(1, 800, n)
        with open(big, "w") as f:
            f.write("t,p,c\n")
            f.writelines(f"{a},{b},{e}\n" for a, b, e in zip(t, p, c, strict=False))
        r = run(big, "csv", tmp)
        base = run(big, "csv", tmp, baseline=True)
        print(
            f"1,000,000-row CSV: {r['rows']:,} rows in {r['s']:.2f} s (target <= 5 s)  "
            f"{'OK' if r['s'] <= 5 else 'OVER'}; "
            f"peak memory {r['rss_mb']:.0f} MB (target < 1024 MB)  {'OK' if r['rss_mb'] < 1024 else 'OVER'}; "
            f"baseline DuckDB read_csv count {base['s']:.2f} s, {base['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
