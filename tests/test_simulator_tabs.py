"""The Cost simulator's result tabs: a button pressed in a tab other than the first reruns the page
and the same tab stays open (it used to fall back to "Costs").

Server-side through AppTest (the tab the rerun sends), then in headless Chromium (Playwright)
against `streamlit run app.py`, like tests/test_browser.py (what the browser shows).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia import config
from sophia.ingest import demo
from sophia.log.db import Database
from tests.apptest import no_exception, run_page
from tests.helpers import Streamlit, fast, write_toml

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 60_000  # the longest any condition may take (a loaded machine, the first run of a page)
IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'

NO_CHROMIUM = f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)"


def _seed(cfg_path: Path, db_path: Path) -> None:
    db = Database(db_path)
    demo.write(db, demo.generate(config.load(cfg_path), 400, 2, seed=11))
    db.close()


# --- server-side: the rerun sends the open tab --------------------------------------------------------


def _open_tab(at) -> str:
    """The label of the tab the page sends as open (the results' tab container, the last on the page)."""
    container = [c for c in at.main.children.values() if getattr(c, "type", "") == "tab_container"][-1]
    labels = [tab.label for tab in container.children.values()]
    return labels[container.proto.tab_container.default_tab_index]


def test_the_open_tab_is_state_and_survives_a_rerun(app_env):
    _seed(app_env["config"], app_env["db"])
    at = run_page("pages/simulator.py")
    at.button(key="sim_run").click().run()
    no_exception(at)
    assert _open_tab(at) == "Costs"
    at.session_state["sim_tab"] = "Scenarios"  # as the browser reports a click on the tab
    at.button(key="sim_save").click().run()  # the run's progress slot is gone: the tabs move up one place
    no_exception(at)
    assert at.session_state["sim_tab"] == "Scenarios"
    assert _open_tab(at) == "Scenarios"
    at.button(key="sim_clear").click().run()
    assert _open_tab(at) == "Scenarios"


# --- in the browser -----------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    """A Streamlit server of this test's own (free port, own configuration and a little demo traffic)."""
    cfg_path = write_toml(tmp_path / "sophia.toml", fast())
    db_path = tmp_path / "app.duckdb"
    _seed(cfg_path, db_path)
    app = Streamlit(cfg_path, db_path)
    try:
        yield app.url
    finally:
        app.close()


@pytest.fixture
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        pg = chromium.new_context(viewport={"width": 1400, "height": 2000}).new_page()
        pg.set_default_timeout(WAIT_MS)
        yield pg
        chromium.close()


def settle(pg) -> None:
    """Wait until Streamlit is connected, has finished the script and has replaced every stale element."""
    pg.locator(IDLE).wait_for(state="attached")
    pg.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    pg.locator("[data-stale='true']").first.wait_for(state="detached")


def result_tab(pg, name: str):
    return pg.get_by_role("tab", name=name, exact=True)


def selected(pg, name: str) -> bool:
    return result_tab(pg, name).get_attribute("aria-selected") == "true"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=NO_CHROMIUM)
def test_a_button_in_a_later_tab_keeps_that_tab_open(page, server):
    page.goto(f"{server}/simulator")
    page.get_by_role("heading", name="Cost simulator", level=1).wait_for()
    settle(page)
    page.get_by_role("button", name="Run simulation").click()
    result_tab(page, "Scenarios").wait_for()
    settle(page)
    assert selected(page, "Costs")
    result_tab(page, "Scenarios").click()
    page.get_by_role("button", name="Save this run").wait_for()
    settle(page)  # switching tabs reruns the page (the tabs keep their state)
    assert selected(page, "Scenarios")

    page.get_by_role("button", name="Save this run").click()
    page.get_by_role("button", name="Clear scenarios").and_(page.locator(":enabled")).wait_for()
    settle(page)
    assert selected(page, "Scenarios"), "saving reran the page and the tabs went back to the first"

    page.get_by_role("button", name="Clear scenarios").click()
    page.get_by_text("Save runs by name to compare them side by side.").wait_for()
    settle(page)
    assert selected(page, "Scenarios")
    assert page.locator('[data-testid="stException"]').count() == 0
