"""The app at scale: 1,000,000 logged requests, pages rendered server-side with AppTest.

Targets (issue 3): the overview and the request log each render in <= 1.5 s, a filter change
in <= 0.5 s, the app's memory stays under 1 GB, and a chat reply's routing overhead (submit
to the backend's first byte, minus the backend's own time) is <= 20 ms.

    .venv/bin/python bench/bench_app.py [--rows 1000000] [--runs 5]

"Cold" runs clear st.cache_data first (every query goes to DuckDB); "warm" runs reuse it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"render": 1.5, "filter": 0.5, "rss_mb": 1024, "overhead_ms": 20}


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    now = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return now, peak


def fast_config(path: Path) -> None:
    src = (ROOT / "sophia.toml").read_text()
    src = re.sub(r"error_rate = [\d.]+", "error_rate = 0.0", src)
    path.write_text(src)


BUILD = """
import sys
from sophia import config
from sophia.ingest import demo
from sophia.log.db import Database
cfg_path, db_path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = config.load(cfg_path)
db = Database(db_path)
step = 250_000
for i in range(0, rows, step):  # the bulk path, a quarter million rows per append
    demo.write(db, demo.generate(cfg, min(step, rows - i), 30, seed=i))
db.close()
"""


def build(db_path: Path, cfg_path: Path, rows: int) -> float:
    """Write the log in a child process, so that this process's memory is the app's alone."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", BUILD, str(cfg_path), str(db_path), str(rows)], check=True, cwd=ROOT)
    return time.perf_counter() - t


def appstate_max() -> int:
    from sophia.ui import appstate

    return appstate.EXPORT_MAX_ROWS


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median(xs) -> float:
    return statistics.median(xs)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="sophia-bench-app-"))
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    cfg_path, db_path = tmp / "sophia.toml", tmp / "bench.duckdb"
    fast_config(cfg_path)
    print(f"building {args.rows:,} records through the bulk path in {tmp} …", flush=True)
    build_s = build(db_path, cfg_path, args.rows)
    print(f"  built in {build_s:.1f} s ({db_path.stat().st_size / 1e6:.0f} MB on disk)")
    os.environ["SOPHIA_CONFIG"], os.environ["SOPHIA_DB"] = str(cfg_path), str(db_path)

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    results: dict[str, float] = {}

    def fresh(page: str) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        if page != "pages/chat.py":
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    # Warm up the process once (imports, runtime, DuckDB file): the app's steady state.
    fresh("pages/overview.py")

    for page, name in (("pages/overview.py", "overview"), ("pages/request_log.py", "request log")):
        at = fresh(page)
        cold, warm = [], []
        for _ in range(args.runs):
            st.cache_data.clear()
            cold.append(timed(at.run))
            warm.append(timed(at.run))
            assert not at.exception, [e.value for e in at.exception]
        results[f"{name} render, cold"] = median(cold)
        results[f"{name} render, warm"] = median(warm)

    # Filter changes: each selection is new to the cache, so each run queries DuckDB.
    at = fresh("pages/request_log.py")
    changes = [
        ("log_tier", ["dedicated"]),
        ("log_status", ["error"]),
        ("log_reason", ["failover"]),
        ("log_model", ["llama-3.3-70b-instruct"]),
        ("log_source", ["demo"]),
        ("log_endpoint", ["serverless"]),
    ]
    filt = []
    for key, value in changes[: max(args.runs, 3)]:
        at.multiselect(key=key).set_value(value)
        filt.append(timed(at.run))
        assert not at.exception, [e.value for e in at.exception]
        at.multiselect(key=key).set_value([])
        at.run()
    results["request log filter change"] = median(filt)
    at = fresh("pages/overview.py")
    ov = []
    for i, preset in enumerate(
        ["Last 24 hours", "Last 30 days", "All time", "Last 90 days", "Last 7 days"][: max(args.runs, 3)]
    ):
        at.selectbox(key="ov_range").set_value(preset)
        at.toggle(key="ov_demo").set_value(i % 2 == 0)
        ov.append(timed(at.run))
        assert not at.exception, [e.value for e in at.exception]
    results["overview filter change"] = median(ov)
    frag = []
    for measure in ["Requests", "Latency", "Spend", "Requests", "Latency"][: max(args.runs, 3)]:
        at.segmented_control(key="ov_measure").set_value(measure)
        frag.append(timed(at.run))
    results["overview chart switch (fragment)"] = median(frag)

    # Routing overhead of a chat reply: submit -> the backend is called (its first byte), with a
    # backend that answers at once, so what remains is the app's and the router's own time. The
    # headline figure includes AppTest's own harness (script thread start, polling); the second
    # counts from the first line of app.py.
    from sophia.routing.backends import simulated

    calls: list[float] = []
    original = simulated.SimulatedBackend.stream

    def stream(self, *args, **kwargs):  # whatever the backend call carries (model, messages, body, ...)
        calls.append(time.perf_counter())
        yield from original(self, *args, **kwargs)

    simulated.SimulatedBackend.stream = stream
    starts: list[float] = []  # when app.py begins (its first Streamlit call): the app's own share
    set_page_config = st.set_page_config

    def mark(*a, **kw):
        starts.append(time.perf_counter())
        return set_page_config(*a, **kw)

    st.set_page_config = mark
    src = cfg_path.read_text()
    src = re.sub(r"ttft_ms = \d+", "ttft_ms = 0", src)
    src = re.sub(r"tpot_ms = \d+", "tpot_ms = 0", src)
    cfg_path.write_text(src)
    st.cache_resource.clear()  # a runtime with the instant backends
    at = fresh("pages/chat.py")
    overhead, own, whole = [], [], []
    for i in range(max(3 * args.runs, 15) + 1):
        at.session_state["turns"] = []  # the same page each time: a one-message conversation
        at.chat_input[0].set_value(f"What is the capital of Australia? ({i})")
        t0 = time.perf_counter()
        at.run()
        t1 = time.perf_counter()
        assert not at.exception, [e.value for e in at.exception]
        if i:  # the first message warms the router's code paths
            overhead.append((calls[-1] - t0) * 1000)
            own.append((calls[-1] - starts[-1]) * 1000)
            whole.append((t1 - t0) * 1000)
    simulated.SimulatedBackend.stream = original
    st.set_page_config = set_page_config
    results["chat routing overhead (ms)"] = median(overhead)
    results["  of which app.py + page + router (ms)"] = median(own)
    results["chat whole rerun incl. reply (ms)"] = median(whole)
    # The largest CSV download the request log offers, built the way its button builds it.
    import io

    from pages import common
    from sophia.log import export
    from sophia.log.filters import Filters
    from sophia.ui import appstate

    rt = common._runtime(*common.paths())
    t = time.perf_counter()
    buf = io.BytesIO()
    with rt.reader() as cur:
        start = cur.execute(
            "SELECT min(ts) FROM (SELECT ts FROM requests ORDER BY ts DESC LIMIT ?)", [appstate.EXPORT_MAX_ROWS]
        ).fetchone()[0]
        export.write_csv(cur, Filters(start=start), buf, bom=True)
    data = buf.getvalue()
    results[f"CSV export of {appstate.EXPORT_MAX_ROWS:,} rows (s)"] = time.perf_counter() - t
    results["CSV size (MB)"] = len(data) / 1e6
    del data, buf
    now, peak = rss_mb()
    results["RSS now (MB)"] = now
    results["RSS peak (MB)"] = peak
    st.cache_resource.clear()

    print(f"\n{args.rows:,} records; medians of {args.runs} runs")
    rows = [
        ("overview render, cold", "s", TARGETS["render"]),
        ("overview render, warm", "s", TARGETS["render"]),
        ("request log render, cold", "s", TARGETS["render"]),
        ("request log render, warm", "s", TARGETS["render"]),
        ("request log filter change", "s", TARGETS["filter"]),
        ("overview filter change", "s", TARGETS["filter"]),
        ("overview chart switch (fragment)", "s", TARGETS["filter"]),
        ("chat routing overhead (ms)", "ms", TARGETS["overhead_ms"]),
        ("  of which app.py + page + router (ms)", "ms", None),
        ("chat whole rerun incl. reply (ms)", "ms", None),
        (f"CSV export of {appstate_max():,} rows (s)", "s", None),
        ("CSV size (MB)", "MB", None),
        ("RSS now (MB)", "MB", TARGETS["rss_mb"]),
        ("RSS peak (MB)", "MB", TARGETS["rss_mb"]),
    ]
    ok = True
    for name, unit, target in rows:
        v = results[name]
        verdict = "" if target is None else ("ok" if v <= target else "OVER")
        ok &= verdict != "OVER"
        shown = f"{v:8.3f} s" if unit == "s" else f"{v:8.1f} {unit}"
        tgt = "" if target is None else f"(target <= {target:g} {unit})"
        print(f"  {name:38s} {shown}  {tgt:22s} {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
