"""Start-up time of the `sophia` command line, as a user runs it.

Target: `sophia --help` and `sophia route "hi"` (with no log yet, and with a log) each finish
in <= 0.5 s wall time, median of 5 runs after one warm-up. Reported beside a baseline measured
in the same run (`python -c pass` with the same interpreter), with the CPU time of each run and
the heavy modules each command imports. Exit status 1 if a target is missed.

The configuration is the shipped sophia.toml; the log is a temporary file (the developer's
data/ is never read).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5
RUNS = 5
HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "httpx", "plotly", "streamlit", "fastapi", "uvicorn")


def sophia_cmd() -> list[str]:
    """The installed `sophia` script beside this interpreter, else `python -m sophia.cli`."""
    script = Path(sys.executable).with_name("sophia")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sophia.cli"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one run; the output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    timed(cmd, env)  # warm-up: file cache and .pyc files
    runs = [timed(cmd, env) for _ in range(RUNS)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    """The heavy packages a command imports (from `python -X importtime`)."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sophia.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return [h for h in HEAVY if h in names]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sophia-bench-cli-") as tmp:
        env = {**os.environ, "SOPHIA_CONFIG": str(ROOT / "sophia.toml"), "SOPHIA_DB": str(Path(tmp) / "none.duckdb")}
        logged = {**env, "SOPHIA_DB": str(Path(tmp) / "log.duckdb")}
        subprocess.run(
            [sys.executable, "-m", "sophia.cli", "demo", "--requests", "200", "--days", "1"],
            env=logged,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        sophia = sophia_cmd()
        base_wall, base_cpu = median_run([sys.executable, "-c", "pass"], env)
        print(f"`sophia` start-up, median of {RUNS} runs (target <= {TARGET_S} s wall)")
        print(f"  baseline `python -c pass`: {base_wall:.3f} s wall, {base_cpu:.3f} s CPU")
        cases = (
            ("sophia --help", ["--help"], env),
            ('sophia route "hi" (no log yet)', ["route", "hi"], env),
            ('sophia route "hi" (with a log)', ["route", "hi"], logged),
        )
        missed = 0
        for label, args, case_env in cases:
            wall, cpu = median_run([*sophia, *args], case_env)
            ok = wall <= TARGET_S
            missed += not ok
            heavy = ", ".join(heavy_imports(args, case_env)) or "none"
            print(
                f"  {label:<32} {wall:.3f} s wall, {cpu:.3f} s CPU (baseline +{wall - base_wall:.3f} s)  "
                f"{'OK' if ok else 'OVER'}; heavy imports: {heavy}"
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
