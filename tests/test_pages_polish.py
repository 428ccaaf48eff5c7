"""The Request log, Endpoints and Budgets pages as a new user meets them: columns in view, a CSV
in the table's order with readable numbers, amounts that never overflow, configuration as
tables, latencies in one unit, /dashboard on the app that runs, `make run PORT=`."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta

import duckdb
import httpx
import pandas as pd
import pytest
from streamlit import config as st_config

from sophia import config
from sophia.budgets import alerts
from sophia.budgets import model as bmod
from sophia.config import server as server_settings
from sophia.config.checks import ConfigError
from sophia.log import analytics, export, migrations, schema
from sophia.log.filters import Filters
from sophia.ui import appstate, charts, metrics
from tests.apptest import close_app, no_exception, rows, run_page, seed, texts
from tests.helpers import ROOT, Server, answers, fast_config, free_port, openai_config, write_toml
from tests.test_analytics import handmade

SECRET = "sk-test-0123456789abcdefPOLISH"

# --- request log: the table -------------------------------------------------------------------


def _log_table(at):
    [table] = at.dataframe
    return list(table.proto.column_order), json.loads(table.proto.columns)


def test_request_log_shows_cost_latency_and_tokens_early_and_ids_whole(app_env):
    seed(app_env["db"], app_env["config"], n=120, days=2)
    at = run_page("pages/request_log.py")
    no_exception(at)
    order, columns = _log_table(at)
    # What a person looks at first is in the first columns, in view at 1400 px.
    assert order[:6] == ["ts", "cost_usd", "latency_ms", "prompt_tokens", "completion_tokens", "request_id"]
    assert set(analytics.PAGE_COLUMNS) == set(order)  # nothing hidden
    # Ids (32 characters) get a column wide enough to read them; the early columns fit 1400 px.
    assert columns["request_id"]["width"] >= 250
    ids = at.dataframe[0].value.request_id
    assert ids.str.len().max() <= 32
    early = sum(columns[c]["width"] for c in order[:6])
    assert early <= 1400 - 300 - 120  # sidebar and margins
    assert columns["cost_usd"]["type_config"]["format"] == "$%.6f"
    # Latencies and tokens with thousands separators (16,039), units in the header.
    assert columns["latency_ms"]["type_config"]["format"] == "localized"
    assert columns["latency_ms"]["label"] == "latency ms"
    assert columns["prompt_tokens"]["type_config"]["format"] == "localized"


def test_open_a_request_by_id_when_the_filters_match_nothing(app_env):
    seed(app_env["db"], app_env["config"], n=80, days=1)
    df = rows(app_env["db"])
    rid = df.request_id.iloc[7]
    at = run_page("pages/request_log.py")
    at.text_input(key="log_text").set_value("no-such-request-anywhere").run()
    assert any("No request matches" in i.value for i in at.info)
    [box] = [t for t in at.text_input if t.label == "Open a request by id"]
    box.set_value(rid).run()
    no_exception(at)
    assert f"Request `{rid}`" in texts(at)


# --- request log: the CSV ---------------------------------------------------------------------


@pytest.fixture
def con(tmp_path):
    """A log whose numbers carry float noise, and whose insertion order is not the table's."""
    c = duckdb.connect(str(tmp_path / "p.duckdb"))
    migrations.apply(c)
    recs = [
        handmade(
            i,
            ts=datetime(2026, 3, 1) + timedelta(minutes=(i * 37) % 11, seconds=i % 2),  # ties on ts too
            latency_ms=1754.3000000000002 + i / 3,
            ttft_ms=323.49999999999994,
            complexity=0.1 + 0.2,
            metered_cost_usd=[0.000000123, 0.1 + 0.2, 0.0000068, 0.000000001][i % 4],
            amortized_cost_usd=0.0 if i % 3 else 0.000012345,
            estimated_cost_usd=0.00003,
        )
        for i in range(24)
    ]
    c.register("_r", schema.to_arrow(recs))
    c.execute("INSERT INTO requests BY NAME SELECT * FROM _r")
    c.unregister("_r")
    yield c
    c.close()


def _parse(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_comes_in_the_tables_order(con):
    got = [r["request_id"] for r in _parse(export.csv_bytes(con, Filters()))]
    table = list(analytics.page(con, Filters(), 1000, 0).request_id)
    assert got == table  # newest first, ties by id: what the Request log shows
    # Batches keep the order.
    assert b"".join(export.csv_chunks(con, Filters(), batch_rows=5)) == export.csv_bytes(con, Filters())


def test_csv_numbers_are_rounded_but_costs_keep_nine_decimals(con):
    data = export.csv_bytes(con, Filters())
    text = data.decode()
    assert "0000000002" not in text and "99999999" not in text  # no float noise anywhere
    out = _parse(data)
    by_id = {r["request_id"]: r for r in out}
    r0 = by_id["hand0000"]
    assert r0["latency_ms"] == "1754.3" and r0["ttft_ms"] == "323.5" and r0["complexity"] == "0.3"
    assert by_id["hand0001"]["latency_ms"] == "1754.6"  # 1754.633… to 0.1 ms
    # Costs: fixed-point, 9 decimals, never 1.23e-7.
    assert r0["metered_cost_usd"] == "0.000000123" and r0["amortized_cost_usd"] == "0.000012345"
    assert by_id["hand0001"]["metered_cost_usd"] == "0.300000000"
    assert by_id["hand0003"]["metered_cost_usd"] == "0.000000001"
    assert r0["estimated_cost_usd"] == "0.000030000"
    for r in out:
        for c in export.COST_COLUMNS:
            assert re.fullmatch(r"\d+\.\d{9}", r[c]), (c, r[c])
        for c in ("prompt_tokens", "completion_tokens", "est_prompt_tokens", "max_tokens"):
            assert re.fullmatch(r"\d+", r[c]), (c, r[c])
    # A finance team's sum is the log's, to the 1e-9 USD.
    want = con.execute("SELECT sum(metered_cost_usd) FROM requests").fetchone()[0]
    assert round(sum(float(r["metered_cost_usd"]) for r in out), 9) == round(want, 9)


def test_cost_cells_are_numbers_not_text_for_a_spreadsheet(con):
    con.execute("UPDATE requests SET amortized_cost_usd = -0.0 WHERE request_id = 'hand0001'")
    r = {x["request_id"]: x for x in _parse(export.csv_bytes(con, Filters()))}["hand0001"]
    assert not r["amortized_cost_usd"].startswith("'")  # a formatted number is not made inert


# --- budgets ----------------------------------------------------------------------------------


def _budget(amount: float, name: str = "b") -> bmod.Budget:
    return bmod.Budget(name, "global", "month", amount)


def test_a_huge_amount_at_a_tiny_burn_rate_lasts_the_period():
    now, end = datetime(2026, 3, 10), datetime(2026, 4, 1)
    for amount in (bmod.MAX_AMOUNT_USD, 1e15):  # 1e15: what an older version accepted
        f = bmod.forecast(_budget(amount), 1.0, [0.0001] * 24, 0.0, now, end)
        assert f.runs_out_at is None and f.projected_usd == pytest.approx(1.0 + 0.0001 * 22 * 24)
    # Still: a rate that does run out within the period gives its time.
    f = bmod.forecast(_budget(10.0), 4.0, [1.0] * 24, 0.0, now, end)
    assert f.runs_out_at == now + timedelta(hours=6)


def test_amounts_past_the_range_are_refused_with_the_range():
    cfg = config.parse(fast_config())
    for bad in (1e15, 999_999_999_999, 0, -5):
        with pytest.raises(ConfigError, match=r"> 0 and <= 1,000,000,000"):
            bmod.parse_budget({"name": "x", "scope": "global", "period": "month", "amount_usd": bad}, cfg)


def test_alert_text_shows_small_amounts_with_their_digits():
    b = bmod.Budget("tiny", "global", "day", 0.0001)
    msg = alerts.message(b, "hard", 0.000463)
    assert "$0.000463 of $0.000100 (463%)" in msg and "$0.00 " not in msg
    assert alerts.usd(1e9) == "$1,000,000,000" and alerts.usd(0.5) == "$0.5000" and alerts.usd(2e-9) == "$0.000000002"
    for x in (0, 0.0001, 0.012, 1.5, 250, 1e9):
        assert alerts.usd(x) == appstate.usd(x)  # the alert says what the card says
    table = metrics.alert_table([{"spent_usd": 0.000463, "amount_usd": 0.0001, "message": msg}])
    assert list(table.spent_usd) == ["$0.000463"] and list(table.amount_usd) == ["$0.000100"]
    assert metrics.alert_table([]).empty


def test_budget_chart_axis_is_plain_dollars():
    start = datetime(2026, 3, 1)
    fig = charts.budget_forecast(
        (start, start + timedelta(days=1)), start + timedelta(hours=2), [0.00002], 0.00002, (0.0001, 0.8)
    )
    assert fig.layout.yaxis.exponentformat == "none" and fig.layout.yaxis.tickprefix == "$"  # not "$100µ"


def _budgets_page(app_env, *budgets: dict):
    data = fast_config()
    data["budgets"] = list(budgets)
    write_toml(app_env["config"], data)
    seed(app_env["db"], app_env["config"], n=200, days=1)
    at = run_page("pages/budgets.py")
    no_exception(at)
    return at


def test_budget_cards_with_a_billion_and_a_hundredth_of_a_cent(app_env):
    at = _budgets_page(
        app_env,
        {"name": "huge", "scope": "global", "period": "month", "amount_usd": 1e9, "sources": ["demo"]},
        {"name": "tiny", "scope": "tier:serverless", "period": "day", "amount_usd": 0.0001, "sources": ["api"]},
    )
    assert not any("Forecasts are not available" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not any("too large" in str(e.value) for e in [*at.warning, *at.error])
    bars = [p.proto.text for p in at.get("progress")]
    assert any("of $1,000,000,000 (0%)" in t for t in bars) and "$0 of $0.000100 (0%)" in bars, bars
    assert len(at.get("plotly_chart")) == 2  # both forecasts drawn


def test_budget_form_refuses_an_amount_out_of_range_with_a_message(app_env):
    at = _budgets_page(app_env, {"name": "keep", "scope": "global", "period": "month", "amount_usd": 50})
    [amount] = at.number_input
    # The widget itself has no bounds (they would silently keep the old value); its help says them.
    assert not amount.proto.has_max and "$1,000,000,000" in amount.help and amount.proto.format == "%.4f"
    for bad in (999_999_999_999.0, 0.0):
        at.text_input[0].input("goal")
        at.number_input[0].set_value(bad)
        at.button(key="FormSubmitter:bud_form-Save budget").click().run()
        no_exception(at)
        assert any("Not saved" in e.value and "1,000,000,000" in e.value for e in at.error), [e.value for e in at.error]
    close_app()
    saved = rows(app_env["db"], "SELECT count(*) AS n FROM budget_versions WHERE origin = 'page'")
    assert saved.n[0] == 0


def test_the_form_keeps_small_amounts_and_soft_limits_in_percent(app_env):
    at = _budgets_page(app_env)
    at.text_input[0].input("cents")
    at.number_input[0].set_value(0.0001)
    at.slider[0].set_value(50)
    at.button(key="FormSubmitter:bud_form-Save budget").click().run()
    no_exception(at)
    close_app()
    saved = rows(app_env["db"], "SELECT budgets FROM budget_versions ORDER BY version DESC LIMIT 1")
    [b] = json.loads(saved.budgets[0])
    assert (b["name"], b["amount_usd"], b["soft_limit"]) == ("cents", 0.0001, 0.5)


# --- every numeric input has a documented range -----------------------------------------------


@pytest.mark.parametrize("page", ["pages/request_log.py", "pages/endpoints.py", "pages/budgets.py"])
def test_every_numeric_input_documents_its_range(app_env, page):
    seed(app_env["db"], app_env["config"], n=60, days=1)
    at = run_page(page)
    no_exception(at)
    for w in [*at.number_input, *at.slider]:
        assert w.help and re.search(r"\d.*(to|at most).*\d", w.help), (w.label, w.help)


# --- endpoints --------------------------------------------------------------------------------


def test_latencies_are_in_ms_whatever_their_size():
    assert metrics.latency_ms(13_200) == "13,200 ms" and metrics.latency_ms(4_627.4) == "4,627 ms"
    assert metrics.latency_ms(3.25) == "3.2 ms" and metrics.latency_ms(None) == "—"
    assert metrics.latency_ms(float("nan")) == "—" and metrics.latency_ms(13_202.4, unit=False) == "13,202"
    lat = pd.DataFrame({"bucket": [datetime(2026, 1, 1)] * 2, "endpoint": ["a", "b"], "p95_ms": [4627.0, 13200.0]})
    fig = charts.endpoint_latency(lat, ["a", "b"], str)
    assert fig.layout.yaxis.tickformat == ",.0f"  # 13,000, not 13k
    assert all(t.hovertemplate.endswith("ms<extra></extra>") for t in fig.data)


def test_endpoints_page_shows_the_configuration_as_tables(app_env, monkeypatch):
    url = f"http://user:{SECRET}@127.0.0.1:9/v1?api_key={SECRET}"
    write_toml(app_env["config"], openai_config(url, key_env="SOPHIA_POLISH_KEY"))
    monkeypatch.setenv("SOPHIA_POLISH_KEY", SECRET)
    seed(app_env["db"], app_env["config"], n=300, days=1)
    at = run_page("pages/endpoints.py")
    no_exception(at)
    assert not at.json  # no collapsed JSON
    endpoints, models, settings = (t.value for t in at.table)
    cfg = config.load(app_env["config"])
    assert list(endpoints.columns) == [e.name for e in cfg.endpoints]
    assert {"tier", "models", "URL", "API key", "price", "throughput"} <= set(endpoints.index)
    assert list(models.index) == [m.name for m in cfg.models]
    assert {"input (USD / 1M tokens)", "output (USD / 1M tokens)", "served by"} <= set(models.columns)
    assert "routing.complexity_threshold" in settings.index and "failover.timeout_s" in settings.index
    assert settings.loc["routing.complexity_threshold", "value"] == f"{cfg.routing.complexity_threshold:g}"
    shown = repr([t.value.to_dict() for t in at.table]) + texts(at)
    assert SECRET not in shown and "set (hidden)" in shown and "SOPHIA_POLISH_KEY" in shown
    # Latencies in one unit.
    p95 = [m for m in at.metric if m.label == "p95 (ms)"]
    assert len(p95) == len(cfg.endpoints)
    for m in p95:
        assert m.value == "—" or re.fullmatch(r"[\d,]+(\.\d)?", m.value), m.value
        assert re.search(r"p50 ([\d,]+ ms|—), first token p50 ([\d,]+ ms|—)", m.help), m.help


# --- /dashboard and make run ------------------------------------------------------------------


def test_app_url_setting_and_its_resolution(tmp_path):
    s = server_settings.parse_settings({})
    assert s.app_url == ""  # not set: detected
    assert server_settings.parse_settings({"app_url": "https://sophia.example.com/app"}).app_url.endswith("/app")
    for bad in ("localhost:8501", "", "http://", "ftp://x", 8501, "http://x/" + "a" * 3000):
        with pytest.raises(ConfigError, match="server.app_url"):
            server_settings.parse_settings({"app_url": bad})
    db = tmp_path / "x.duckdb"
    assert server_settings.app_url_for(s, db) == "http://localhost:8501"  # nothing recorded
    server_settings.record_app_url(db, "http://localhost:8642")
    assert server_settings.app_url_for(s, db) == "http://localhost:8642"
    configured = server_settings.parse_settings({"app_url": "https://sophia.example.com"})
    assert server_settings.app_url_for(configured, db) == "https://sophia.example.com"  # the file wins
    server_settings.forget_app_url(db, "http://localhost:9999")  # another app's: left alone
    assert server_settings.recorded_app_url(db) == "http://localhost:8642"
    server_settings.forget_app_url(db, "http://localhost:8642")
    assert server_settings.recorded_app_url(db) is None
    server_settings.app_url_file(db).write_text("not json")
    assert server_settings.app_url_for(s, db) == "http://localhost:8501"
    with pytest.raises(ValueError, match="http:// or https://"):
        server_settings.record_app_url(db, "javascript:alert(1)")


@pytest.fixture
def app_port():
    """The app as if started with --server.port 8642 --server.address 0.0.0.0 (restored after)."""
    old = {k: st_config.get_option(k) for k in ("server.port", "server.address")}
    st_config.set_option("server.port", 8642)
    st_config.set_option("server.address", "0.0.0.0")
    yield 8642
    for k, v in old.items():
        st_config.set_option(k, v)


def _location(server: Server) -> str:
    r = httpx.get(server.url + "/dashboard")
    assert r.status_code == 307
    return r.headers["location"]


@pytest.mark.slow
def test_dashboard_redirects_to_the_app_that_runs(app_env, app_port):
    at = run_page("pages/request_log.py")
    no_exception(at)
    assert server_settings.recorded_app_url(app_env["db"]) == f"http://localhost:{app_port}"
    close_app()
    server = Server(app_env["config"], app_env["db"])
    try:
        assert _location(server) == f"http://localhost:{app_port}"
        # The app moves: the next visit follows (read on each request).
        server_settings.record_app_url(app_env["db"], "http://localhost:8777")
        assert _location(server) == "http://localhost:8777"
    finally:
        server.stop()
    data = fast_config()
    data["server"] = {"app_url": "https://sophia.example.com/app"}
    write_toml(app_env["config"], data)
    server = Server(app_env["config"], app_env["db"])
    try:
        assert _location(server) == "https://sophia.example.com/app"  # configured wins
    finally:
        server.stop()


def _make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_run_takes_a_port():
    default = _make("-n", "run")
    assert "--server.port 8501" in default.stdout and "http://localhost:8501" in default.stdout
    moved = _make("-n", "run", "PORT=8600")
    assert "--server.port 8600" in moved.stdout and "http://localhost:8600" in moved.stdout
    for bad in ("abc", "80", "70000", ""):
        r = _make("run", f"PORT={bad}")
        assert r.returncode != 0 and f"PORT={bad} is not allowed: expected a port from 1024 to 65535" in r.stderr


@pytest.mark.slow
def test_make_run_serves_on_its_port_and_dashboard_follows(tmp_path):
    cfg = write_toml(tmp_path / "sophia.toml", fast_config())
    db = tmp_path / "app.duckdb"
    port = free_port()
    env = dict(os.environ, SOPHIA_CONFIG=str(cfg), SOPHIA_DB=str(db))
    app = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make, the shell and streamlit in one group, stopped together
    )
    try:
        deadline = time.monotonic() + 180
        while not answers(f"http://localhost:{port}/_stcore/health"):
            assert app.poll() is None, app.stdout.read()
            assert time.monotonic() < deadline, "make run did not answer on its port"
            time.sleep(0.1)
        assert server_settings.recorded_app_url(db) == f"http://localhost:{port}"
        server = Server(cfg, db)
        try:
            assert _location(server) == f"http://localhost:{port}"
        finally:
            server.stop()
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait(10)
