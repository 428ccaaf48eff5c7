"""The app in a real browser: `streamlit run app.py` driven by headless Chromium (Playwright).

Screenshots land in tests/artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from sophia import config
from sophia.ingest import demo
from sophia.log.db import Database
from tests.helpers import ROOT, Streamlit, reference, simulate, write_toml

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
DEMO_N = 400
WAIT_MS = 60_000  # the longest any condition may take (a loaded machine, the first run of a page)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def browser_config() -> dict:
    """Fault-free; the serverless endpoint streams slowly enough to watch it stream."""
    data = simulate(reference(), ttft_ms=20, tpot_ms=2, error_rate=0.0)
    # The first (serverless) endpoint: ~120 tokens at 25 ms each, about 3 s of streaming.
    data["endpoints"][0]["simulation"].update(ttft_ms=100, tpot_ms=25, reply_tokens=120)
    return data


@pytest.fixture
def server(tmp_path):
    """A Streamlit server of this test's own (free port, own configuration and demo database)."""
    cfg_path = write_toml(tmp_path / "sophia.toml", browser_config())
    db_path = tmp_path / "app.duckdb"
    db = Database(db_path)
    demo.write(db, demo.generate(config.load(cfg_path), DEMO_N, 2, seed=11))
    db.close()
    app = Streamlit(cfg_path, db_path)
    try:
        yield {"url": app.url, "db": db_path}
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
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
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 2000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()


IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'


def settle(pg) -> None:
    """Wait until Streamlit is connected and has finished running the script.

    Call it after waiting for what the action shows (a heading, a card, a label): the run that
    shows it has started by then, so "not running" means it has finished."""
    pg.locator(IDLE).wait_for(state="attached", timeout=WAIT_MS)
    pg.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=WAIT_MS)
    pg.locator("[data-stale='true']").first.wait_for(state="detached", timeout=WAIT_MS)


# Records the length of the assistant's reply at every change of the page, while it streams.
WATCH_REPLY = """() => {
    window.__replyLengths = [];
    new MutationObserver(() => {
        const reply = document.querySelectorAll('[data-testid="stChatMessage"]')[1];
        if (reply) window.__replyLengths.push(reply.innerText.length);
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def send_chat(pg, text: str):
    """Type a message in the playground; returns (reply, routing card) once the card is shown."""
    box = pg.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    reply = pg.locator('[data-testid="stChatMessage"]').nth(1)
    card = pg.locator(".st-key-routing_card_1")
    card.wait_for()
    settle(pg)
    return reply, card


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
    page.evaluate(WATCH_REPLY)
    reply, card = send_chat(page, "What is the capital of Australia?")
    lengths = page.evaluate("window.__replyLengths")
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
    page.goto(server["url"])
    page.get_by_role("heading", name="Chat playground").wait_for()
    settle(page)
    for name, heading in (("Overview", "Overview"), ("Request log", "Request log"), ("Endpoints", "Endpoints")):
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name=name).click()
        page.get_by_role("heading", name=heading, level=1).wait_for()
        settle(page)
        no_exceptions(page)
        if name == "Overview":
            page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
            assert page.locator('[data-testid="stMetric"]').count() == 17
        if name == "Endpoints":
            assert page.locator('[class*="st-key-ep_card_"]').count() == 4
        shot(page, name.lower().replace(" ", "-"))


def test_4_request_log_downloads_the_filtered_rows(page, server, tmp_path):
    page.goto(server["url"])
    page.get_by_role("heading", name="Chat playground").wait_for()
    settle(page)
    send_chat(page, "What is the capital of Australia?")  # the playground message
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
    page.get_by_role("button", name="Export 1 row as CSV").wait_for()
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
    record.get_by_text(re.compile(r"UTC · source ")).wait_for()  # the whole record is drawn
    settle(page)
    text = record.inner_text()
    for part in ("Decision inputs", "Decision", "Outcome", "cost-optimized", "playground", "not stored"):
        assert part in text, (part, text)
    no_exceptions(page)
    shot(page, "request-log-record")
