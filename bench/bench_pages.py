"""Page speed in a real browser: every page of the app over 1,000,000 logged requests.

Target: each page is interactive <= 1.5 s after a user navigates to it in the app (a click on its
sidebar link; median). Loads in a fresh browser ("first visit") are reported beside it. A page is
interactive when its title heading is visible, Streamlit is idle (the script run has ended and
no "running" status widget shows) and the page is drawn (no skeleton placeholder left, every
visible chart and table drawn). Every load is timed from `page.goto(url)` in a fresh
browser context (no client cache carries over); the server's st.cache_data may be warm. The
first load of each page is reported apart ("cold": the process's first queries, compiles and
caches); the warm figure is the median of --runs loads after it.

The baseline is a second Streamlit server, in the same run, serving a bare one-page app (a
title and a button), loaded the same way: the ratio says how much slower than Streamlit's own
floor each page is. A page that does not load within 30 s (or shows an exception) is reported
FAILED with the reason and the benchmark goes on. One screenshot per page at 1400x900 and at
390x844, and both servers' logs, are kept in a folder whose path is printed. Also printed: the
app server's peak resident memory (VmHWM). The exit status is 1 when a target is missed
(a FAILED page misses it too).

    .venv/bin/python bench/bench_pages.py [--rows 1000000] [--runs 5] [--quick]

--rows: 1,000 to 5,000,000 logged requests; --runs: 1 to 25 loads per page; --quick: 100,000
rows and one run (an explicit --rows/--runs still wins).
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_app import build, fast_config

TARGET_S = 1.5
LOAD_TIMEOUT_S = 30.0
SERVER_START_S = 60.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORTS = ((1400, 900), (390, 844))
BARE_APP = """import streamlit as st


def one():
    st.title("bare one")
    st.button("ok")


def two():
    st.title("bare two")
    st.button("ok")


st.navigation([st.Page(one, title="bare one", default=True), st.Page(two, title="bare two", url_path="two")]).run()
"""
BARE_TITLE = "bare one"

# Resolves to "ok" once the page is interactive, "exception" as soon as an exception shows. Interactive:
# the title heading is visible, the script run has ended with no status widget showing, no skeleton
# shows (Streamlit's placeholder while an element's code loads) and every visible chart and table is
# drawn. Records when the heading showed and when the script run ended (ms since the navigation began).
READY_JS = """
(title) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  if (document.querySelector('[data-testid="stException"]')) return "exception";
  const visible = sel => [...document.querySelectorAll(sel)].filter(e => e.checkVisibility());
  const heading = visible('h1').find(h => h.textContent.trim().startsWith(title));
  if (!heading) return false;
  window.__headingAt = window.__headingAt || performance.now();
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (visible('[data-testid="stStatusWidget"]').length) return false;
  window.__idleAt = window.__idleAt || performance.now();
  if (visible('[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]').length) return false;
  const undrawn = (sel, drawn) => visible(sel).some(e => !e.querySelector(drawn));
  if (undrawn('[data-testid="stPlotlyChart"]', 'svg.main-svg')) return false;
  if (undrawn('[data-testid="stVegaLiteChart"]', 'canvas, svg')) return false;
  if (undrawn('[data-testid="stDataFrame"]', 'canvas')) return false;
  return "ok";
}
"""
# Which of READY_JS's conditions a page that is not ready misses, and the text of any error it shows.
DIAGNOSE_JS = """
(title) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return ['no Streamlit app element', []];
  const visible = sel => [...document.querySelectorAll(sel)].filter(e => e.checkVisibility());
  const missing = [];
  if (!visible('h1').some(h => h.textContent.trim().startsWith(title))) missing.push(`no "${title}" heading`);
  missing.push(`script state ${app.getAttribute('data-test-script-state')}`);
  const skeletons = visible('[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]').length;
  if (skeletons) missing.push(`${skeletons} skeletons left`);
  const texts = visible('[data-testid="stException"], [data-testid="stAlertContentError"]')
    .map(e => e.innerText.trim().replace(/\\s+/g, ' ').slice(0, 120));
  return [missing.join(', '), [...new Set(texts)]];
}
"""


def last_error(log: Path) -> str:
    """The last exception line of a Streamlit server log (the page shows it redacted), or ""."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        head = line.split(":", 1)[0].strip()
        if head and " " not in head and (head.endswith(("Error", "Exception")) or head.endswith("Exit")):
            return line.strip()[:300]
    return ""


@dataclass
class Page:
    title: str
    script: str  # relative to the app's folder
    url_path: str  # "" for the default page


@dataclass
class Result:
    name: str
    cold: float | None = None
    warm: list[dict[str, float]] = field(default_factory=list)  # one `load` figure set per warm load
    nav: list[float] = field(default_factory=list)  # in-app navigations to the page, s from the click
    error: str = ""

    @property
    def nav_median(self) -> float | None:
        return statistics.median(self.nav) if self.nav else None

    @property
    def median(self) -> float | None:
        return self.phase("interactive")

    def phase(self, name: str) -> float | None:
        return statistics.median(w[name] for w in self.warm) if self.warm else None


class LoadError(Exception):
    pass


def app_pages(app: Path) -> list[Page]:
    """The pages app.py hands to st.navigation, with the URL path Streamlit gives each."""
    from streamlit.source_util import page_icon_and_name

    found = []
    for node in ast.walk(ast.parse(app.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Page"):
            continue
        if not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
        script = node.args[0].value
        url = "" if kw.get("default") else str(kw.get("url_path") or page_icon_and_name(Path(script))[1]).strip("/")
        found.append(Page(title=kw.get("title") or Path(script).stem.replace("_", " "), script=script, url_path=url))
    if not found:
        raise SystemExit(f"no st.Page(...) calls found in {app}: the benchmark reads its page list from there")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run SCRIPT` as a child process on a free loopback port."""

    def __init__(self, script: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        cmd = [
            sys.executable, "-m", "streamlit", "run", str(script),
            "--server.headless", "true",
            "--server.port", str(self.port),
            "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        with open(log, "wb") as out:  # the same folder as the app, so the same .streamlit/config.toml
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"streamlit exited with {self.proc.returncode}; its log:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return
            except OSError:
                time.sleep(0.1)  # polling the health endpoint until it answers
        raise SystemExit(f"streamlit on port {self.port} was not healthy within {SERVER_START_S:.0f} s; see {self.log}")

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


PHASES = ("first message", "last message", "heading", "script ended", "interactive")


def load(
    browser: Browser, url: str, title: str, viewport: tuple[int, int] = VIEWPORTS[0], shot: Path | None = None
) -> dict[str, float]:
    """One load in a fresh browser context: seconds from `goto` to each of PHASES.

    The server's first and last websocket messages (timed here as they arrive, so a little late)
    bound the server's work; the heading and the script run's end are as the browser shows them.
    """
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = ctx.new_page()
    frames: list[float] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda _: frames.append(time.perf_counter())))
    try:
        t0 = time.perf_counter()
        try:
            page.goto(url, wait_until="commit", timeout=LOAD_TIMEOUT_S * 1000)
            left = max(LOAD_TIMEOUT_S - (time.perf_counter() - t0), 0.1)
            state = page.wait_for_function(READY_JS, arg=title, timeout=left * 1000).json_value()
        except PlaywrightTimeout:
            state = f"not interactive within {LOAD_TIMEOUT_S:g} s"
        except Exception as e:  # the server went away, the page crashed
            state = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        total = time.perf_counter() - t0
        if shot is not None:
            page.screenshot(path=str(shot))
        if state != "ok":
            try:
                missing, texts = page.evaluate(DIAGNOSE_JS, title)
            except Exception:  # the page itself is gone
                missing, texts = "page state unknown", []
            reason = "an exception shows" if state == "exception" else state
            detail = f" | {' | '.join(texts)}" if texts else ""
            raise LoadError(f"{reason} ({missing}){detail}")
        # performance.now() counts from the navigation's start, which goto's t0 just precedes.
        heading, idle = page.evaluate("[window.__headingAt || 0, window.__idleAt || 0]")
        first, last = (frames[0] - t0, [f for f in frames if f <= t0 + total][-1] - t0) if frames else (0.0, 0.0)
        return dict(zip(PHASES, (first, last, heading / 1000, idle / 1000, total), strict=True))
    finally:
        ctx.close()


def measure(browser: Browser, name: str, url: str, title: str, runs: int, log: Path | None = None) -> Result:
    res = Result(name)
    try:
        res.cold = load(browser, url, title)["interactive"]
        res.warm = [load(browser, url, title) for _ in range(runs)]
    except LoadError as e:
        res.warm = []
        cause = last_error(log) if log is not None and str(e).startswith("an exception") else ""
        res.error = f"{e}{f' | server log: {cause}' if cause else ''}"
    return res


def navigate(browser: Browser, base: str, pages: list[Page], runs: int) -> dict[str, list[float]]:
    """In-app navigation, as a user moves through the app: one browser context opens the first page,
    then each page is reached by clicking its sidebar link; seconds from the click until the page
    is interactive (READY_JS), `runs` rounds over every page. A page that fails is left out."""
    out: dict[str, list[float]] = {p.title: [] for p in pages}
    ctx = browser.new_context(viewport={"width": VIEWPORTS[0][0], "height": VIEWPORTS[0][1]})
    page = ctx.new_page()
    try:
        page.goto(f"{base}/{pages[0].url_path}", timeout=LOAD_TIMEOUT_S * 1000)
        page.wait_for_function(READY_JS, arg=pages[0].title, timeout=LOAD_TIMEOUT_S * 1000)
        order = pages[1:] + pages[:1]  # each click goes somewhere else
        for _ in range(runs):
            for p in order:
                link = page.locator(f'[data-testid="stSidebarNav"] a[href$="/{p.url_path}"]').first
                t0 = time.perf_counter()
                try:
                    link.click(timeout=LOAD_TIMEOUT_S * 1000)
                    state = page.wait_for_function(READY_JS, arg=p.title, timeout=LOAD_TIMEOUT_S * 1000).json_value()
                except PlaywrightTimeout:
                    continue
                if state == "ok":
                    out[p.title].append(time.perf_counter() - t0)
    finally:
        ctx.close()
    return out


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, help="logged requests, 1,000 to 5,000,000 (default 1,000,000)")
    ap.add_argument("--runs", type=int, help="warm loads per page, 1 to 25 (default 5)")
    ap.add_argument("--quick", action="store_true", help="100,000 rows and one run")
    args = ap.parse_args()
    args.rows = args.rows if args.rows is not None else (100_000 if args.quick else 1_000_000)
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if not 1_000 <= args.rows <= 5_000_000:
        ap.error(f"--rows must be 1,000 to 5,000,000, not {args.rows:,}")
    if not 1 <= args.runs <= 25:
        ap.error(f"--runs must be 1 to 25, not {args.runs}")
    if not Path(CHROMIUM).exists():
        ap.error(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    return args


def main() -> int:
    args = parse()
    pages = app_pages(ROOT / "app.py")
    tmp = Path(tempfile.mkdtemp(prefix="sophia-bench-pages-"))
    out = Path(tempfile.mkdtemp(prefix="sophia-bench-pages-shots-"))  # kept: screenshots and server logs
    servers: list[Server] = []
    try:
        return run(args, pages, tmp, out, servers)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, pages: list[Page], tmp: Path, out: Path, servers: list[Server]) -> int:
    cfg_path, db_path, bare = tmp / "sophia.toml", tmp / "bench.duckdb", tmp / "bare.py"
    fast_config(cfg_path)
    bare.write_text(BARE_APP)
    print(f"building {args.rows:,} records through the bulk path in {tmp} …", flush=True)
    print(f"  built in {build(db_path, cfg_path, args.rows):.1f} s ({db_path.stat().st_size / 1e6:.0f} MB on disk)")
    env = {**os.environ, "SOPHIA_CONFIG": str(cfg_path), "SOPHIA_DB": str(db_path)}
    app, base = Server(ROOT / "app.py", env, out / "app-server.log"), Server(bare, env, out / "bare-server.log")
    servers += [app, base]
    app.wait_ready()
    base.wait_ready()

    results: list[Result] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            baseline = measure(browser, "bare (baseline)", base.url, BARE_TITLE, args.runs, base.log)
            bare_pages = [Page(BARE_TITLE, "", ""), Page("bare two", "", "two")]
            baseline.nav = navigate(browser, base.url, bare_pages, args.runs)[BARE_TITLE]
            for p in pages:
                t = time.perf_counter()
                res = measure(browser, p.title, f"{app.url}/{p.url_path}", p.title, args.runs, app.log)
                print(f"  {p.title}: measured in {time.perf_counter() - t:.1f} s{' (FAILED)' if res.error else ''}")
                results.append(res)
            nav = navigate(browser, app.url, pages, args.runs)
            for r in results:
                r.nav = nav.get(r.name, [])
            for p in pages:  # one screenshot per page and viewport, to look at
                for w, h in VIEWPORTS:
                    shot = out / f"{Path(p.script).stem}-{w}x{h}.png"
                    try:
                        load(browser, f"{app.url}/{p.url_path}", p.title, (w, h), shot)
                    except LoadError:
                        pass  # reported above; the screenshot shows what the page showed at the timeout
        finally:
            browser.close()
    app_rss, bare_rss = app.peak_rss_mb(), base.peak_rss_mb()
    return report(args, results, baseline, app_rss, bare_rss, out)


def report(args, results: list[Result], baseline: Result, app_rss: float, bare_rss: float, out: Path) -> int:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def row(name: str, cold: str, warm: str, nav: str, bare: str, ratio: str, verdict: str) -> None:
        print(f"  {name:20s} | {cold:>17s} | {warm:>19s} | {nav:>15s} | {bare:>18s} | {ratio:>6s} | {verdict}")

    bare = baseline.nav_median
    print(
        f"\n{args.rows:,} records; first visit = median of {args.runs} load(s), each in a fresh browser context "
        f"(every script and chart library downloaded and compiled again); navigation = median of {args.runs} "
        "clicks on the page's sidebar link in one browser, as a user moves through the app (the target)"
    )
    if baseline.error:
        print(f"  baseline FAILED: {baseline.error}")
    row(
        "page", "cold first load s", "first visit median s", "navigation s", "bare navigation s", "ratio",
        f"target {TARGET_S:g} s (navigation)",
    )  # fmt: skip
    ok = True
    for r in results:
        if r.error or r.nav_median is None:
            ok = False
            row(r.name, fmt(r.cold), fmt(r.median), "-", fmt(bare), "-", f"FAILED: {r.error or 'no navigation'}")
            continue
        verdict = "ok" if r.nav_median <= TARGET_S else "OVER"
        ok &= verdict == "ok"
        ratio = f"{r.nav_median / bare:.1f}x" if bare else "-"
        row(r.name, fmt(r.cold), fmt(r.median), fmt(r.nav_median), fmt(bare), ratio, verdict)
    row("bare (baseline)", fmt(baseline.cold), fmt(baseline.median), fmt(bare), "", "", "")
    # Where a warm load's time goes: before the first message, the browser loads the page and its code and
    # opens the session; between the first and the last message the server runs the script; after the
    # last, the browser draws (and loads the code of the elements the page uses).
    print("\n  where the time goes (warm medians, s from goto): " + " / ".join(f"{p}" for p in PHASES))
    for r in [*results, baseline]:
        if r.warm:
            print(f"    {r.name:20s} " + " ".join(f"{r.phase(p):6.3f}" for p in PHASES))
    print(f"  app server peak RSS (VmHWM): {app_rss:.0f} MB (bare server {bare_rss:.0f} MB)")
    print(f"  screenshots and server logs: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
