"""The app in a real browser: `streamlit run app.py` driven by headless Chromium (Playwright).

Screenshots land in tests/artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sophia import config
from sophia.ingest import demo
from sophia.log.db import Database

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
DEMO_N = 400

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def browser_toml() -> str:
    """sophia.toml, fault-free; the serverless endpoint streams slowly enough to watch it stream."""
    src = (ROOT / "sophia.toml").read_text()
    src = re.sub(r"error_rate = [\d.]+", "error_rate = 0.0", src)
    src = re.sub(r"ttft_ms = \d+", "ttft_ms = 20", src)
    src = re.sub(r"tpot_ms = \d+", "tpot_ms = 2", src)
    # The first (serverless) endpoint: ~120 tokens at 25 ms each, about 3 s of streaming.
    return src.replace("ttft_ms = 20\ntpot_ms = 2", "ttft_ms = 100\ntpot_ms = 25\nreply_tokens = 120", 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    cfg_path, db_path = tmp / "sophia.toml", tmp / "app.duckdb"
    cfg_path.write_text(browser_toml())
    db = Database(db_path)
    demo.write(db, demo.generate(config.load(cfg_path), DEMO_N, 2, seed=11))
    db.close()
    port = free_port()
    env = dict(os.environ, SOPHIA_CONFIG=str(cfg_path), SOPHIA_DB=str(db_path))
    log = open(tmp / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start:\n" + (tmp / "streamlit.log").read_text())
            time.sleep(0.2)
        yield {"url": url, "db": db_path, "log": tmp / "streamlit.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 2000}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        yield pg
        context.close()
        browser.close()


def settle(pg) -> None:
    """Wait until Streamlit has finished running the script."""
    pg.wait_for_timeout(300)
    pg.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=30_000)
    pg.wait_for_timeout(300)


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_exceptions(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0


def test_1_first_visit_straight_to_a_page_gets_the_whole_app(page, server):
    # The process's very first run goes to /overview: app.py must still wrap it (sidebar, navigation).
    page.goto(f"{server['url']}/overview")
    page.get_by_role("heading", name="Overview").wait_for()
    settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert str(server["db"]) in sidebar.inner_text()
    assert "Simulated backends" in sidebar.inner_text()
    for name in ("Chat playground", "Overview", "Request log", "Endpoints"):
        assert sidebar.get_by_role("link", name=name).count() == 1
    assert sidebar.get_by_role("link", name="common").count() == 0  # the shared module is not a page
    no_exceptions(page)


def test_2_chat_streams_a_reply_with_its_routing_card(page, server):
    page.goto(server["url"])
    page.get_by_role("heading", name="Chat playground").wait_for()
    settle(page)
    shot(page, "chat-empty")
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("What is the capital of Australia?")
    box.press("Enter")
    reply = page.locator('[data-testid="stChatMessage"]').nth(1)
    card = page.locator(".st-key-routing_card_1")
    lengths = []
    deadline = time.monotonic() + 30
    while card.count() == 0 and time.monotonic() < deadline:
        if reply.count():
            lengths.append(len(reply.inner_text()))
        time.sleep(0.1)
    card.wait_for()
    settle(page)
    partial = sorted({n for n in lengths if n})
    assert len(partial) >= 3, f"the reply did not arrive in pieces: {partial}"  # streamed, not all at once
    text = card.inner_text()
    for word in (
        "serverless",
        "simulated",
        "llama-4-scout-17b-16e-instruct",
        "cost-optimized",
        "Complexity",
        "Estimated cost",
        "Actual cost",
        "Tokens",
        "Latency",
        "First token",
        "Request id",
    ):
        assert word in text, (word, text)
    assert "[simulated llama-4-scout-17b-16e-instruct]" in reply.inner_text()
    no_exceptions(page)
    shot(page, "chat-reply")


def test_3_every_page_opens(page, server):
    for name, heading in (("Overview", "Overview"), ("Request log", "Request log"), ("Endpoints", "Endpoints")):
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name=name).click()
        page.get_by_role("heading", name=heading).wait_for()
        settle(page)
        no_exceptions(page)
        if name == "Overview":
            page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
            assert page.locator('[data-testid="stMetric"]').count() == 12
        if name == "Endpoints":
            assert page.locator('[class*="st-key-ep_card_"]').count() == 4
        shot(page, name.lower().replace(" ", "-"))


def test_4_request_log_downloads_the_filtered_rows(page, server, tmp_path):
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Request log").click()
    page.get_by_role("heading", name="Request log").wait_for()
    settle(page)
    button = page.get_by_role("button", name=re.compile(r"Export [\d,]+ rows as CSV"))
    label = button.inner_text()
    n = int(re.search(r"Export ([\d,]+) rows", label).group(1).replace(",", ""))
    assert n == DEMO_N + 1  # the demo traffic and the playground message
    with page.expect_download() as info:
        button.click()
    target = tmp_path / "log.csv"
    info.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"), newline="")))
    assert len(rows) == n
    assert sorted(r["source"] for r in rows).count("playground") == 1
    assert "api_key_id" not in rows[0]
    # Filter on the playground source: the table and the export follow.
    page.locator(".st-key-log_source").get_by_role("combobox").click()
    page.get_by_role("option", name="playground").click()
    page.keyboard.press("Escape")
    settle(page)
    button = page.get_by_role("button", name=re.compile(r"Export [\d,]+ rows? as CSV"))
    assert "Export 1 row as CSV" in button.inner_text()
    with page.expect_download() as info:
        button.click()
    info.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"), newline="")))
    assert [r["source"] for r in rows] == ["playground"]
    no_exceptions(page)
    shot(page, "request-log-filtered")
    # Select the row (its checkbox, left of the first data row): its whole record opens.
    grid = page.locator('[data-testid="stDataFrame"]').bounding_box()
    page.mouse.click(grid["x"] + 14, grid["y"] + 35 + 17)
    record = page.locator(".st-key-log_record")
    record.wait_for()
    settle(page)
    text = record.inner_text()
    for part in ("Decision inputs", "Decision", "Outcome", "cost-optimized", "playground", "not stored"):
        assert part in text, (part, text)
    no_exceptions(page)
    shot(page, "request-log-record")
