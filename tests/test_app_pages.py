"""The Streamlit app, page by page, through AppTest (server-side, no browser).

Each test gets its own database file and configuration (SOPHIA_DB, SOPHIA_CONFIG) and fresh
Streamlit caches, so the app opens a new runtime for it. The playground tests go through a
real OpenAI-compatible server on 127.0.0.1 (tests/fakeopenai.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from sophia import config
from sophia.money import pricing
from sophia.ui import appstate
from tests.apptest import app, badges, close_app, metric, no_exception, rows, run_page, seed, texts
from tests.fakeopenai import FakeOpenAI
from tests.helpers import fast_config, merge, openai_config, reference_config, write_toml

PAGES = ("pages/chat.py", "pages/overview.py", "pages/request_log.py", "pages/endpoints.py")
TITLES = {
    "pages/chat.py": "Chat playground",
    "pages/overview.py": "Overview",
    "pages/request_log.py": "Request log",
    "pages/endpoints.py": "Endpoints",
}
SECRET = "sk-test-0123456789abcdefSECRET"


# --- every page, empty and with traffic ---------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_database(app_env, page):
    at = run_page(page)
    no_exception(at)
    assert at.title[0].value == TITLES[page]
    said = texts(at)
    sidebar = "\n".join(str(e.value) for e in at.sidebar.caption)
    assert str(app_env["db"]) in sidebar and str(app_env["config"]) in sidebar
    if page in ("pages/overview.py", "pages/request_log.py"):
        assert "The request log is empty" in said
        assert "sophia demo" in said
        assert any(b.label.startswith("Load demo traffic") for b in at.button)
    if page == "pages/chat.py":
        assert "Ask anything" in said
    if page == "pages/endpoints.py":
        assert "No request is logged yet" in said
        assert "sophia demo" in said


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_demo_traffic(app_env, page):
    seed(app_env["db"], app_env["config"])
    at = run_page(page)
    no_exception(at)
    assert at.title[0].value == TITLES[page]
    assert not at.error, [e.value for e in at.error]
    said = texts(at)
    assert "The request log is empty" not in said
    if page == "pages/overview.py":
        assert metric(at, "Requests") != "0"
        # Over time, by model, reasons; then complexity scores, throughput, savings over time.
        assert len(at.get("plotly_chart")) == 6
        assert {t.label for t in at.tabs} >= {"Complexity scores", "Failovers", "Savings over time"}
    if page == "pages/request_log.py":
        assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 50
    if page == "pages/endpoints.py":
        assert len(at.get("plotly_chart")) == 1


def test_sidebar_says_backends_are_simulated(app_env):
    at = run_page("pages/overview.py")
    assert "Simulated backends" in badges(at, at.sidebar), badges(at, at.sidebar)


def test_load_demo_traffic_from_the_empty_state(app_env):
    at = run_page("pages/overview.py")
    [button] = [b for b in at.button if b.label.startswith("Load demo traffic")]
    button.click().run()
    no_exception(at)
    assert "The request log is empty" not in texts(at)
    close_app()
    n = rows(app_env["db"], "SELECT count(*) AS n, min(source) AS s, max(source) AS t FROM requests").iloc[0]
    assert (n["n"], n["s"], n["t"]) == (appstate.DEMO_REQUESTS, "demo", "demo")


# --- the playground through a real OpenAI-compatible server -----------------------------------


@pytest.fixture
def fake_env(app_env):
    with FakeOpenAI(reply="Hello from the fake server.") as fake:
        write_toml(app_env["config"], openai_config(fake.base_url))
        app_env["fake"] = fake
        yield app_env


def assistant_text(at: AppTest) -> str:
    msg = [m for m in at.chat_message if m.name == "assistant"][-1]
    return "\n".join(str(e.value) for e in msg.markdown)


def test_playground_round_trip_leaves_one_record(fake_env):
    fake = fake_env["fake"]
    at = app().run()
    at.chat_input[0].set_value("Hello there, what is the capital of Australia?").run()
    no_exception(at)
    assert len(fake.requests) == 1
    body = fake.requests[0]
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "Hello there, what is the capital of Australia?"}]
    assert body["model"] == "llama-4-scout-17b-16e-instruct"
    # The streamed reply and its routing card are on the page.
    assert "Hello from the fake server." in assistant_text(at)
    card = "\n".join(str(e.value) for e in at.markdown if "| Complexity |" in str(e.value))
    assert "Estimated cost" in card and "Tokens (in + out)" in card
    shown = badges(at, at.main)
    assert {"serverless", "llama-4-scout-17b-16e-instruct", "cost-optimized"} <= set(shown), shown
    assert "simulated" not in shown  # a real (fake) server answered
    close_app()
    df = rows(fake_env["db"])
    assert len(df) == 1
    r = df.iloc[0]
    assert (r.source, r.status, r.tier, r.endpoint, r.reason) == (
        "playground",
        "ok",
        "serverless",
        "serverless",
        "cost-optimized",
    )
    assert not r.simulated and r.streamed
    # Usage as the fake server reports it, costed from the catalog.
    assert r.completion_tokens == len("Hello from the fake server.".split())
    cfg = config.load(fake_env["config"])
    price = pricing.price_of(cfg, "llama-4-scout-17b-16e-instruct")
    assert r.metered_cost_usd == pytest.approx(
        pricing.metered_cost(r.prompt_tokens, r.completion_tokens, price.input_per_mtok, price.output_per_mtok),
        abs=1e-12,
    )
    assert appstate.usd(r.metered_cost_usd) in card


def test_playground_sends_the_whole_conversation(fake_env):
    fake = fake_env["fake"]
    at = app().run()
    at.chat_input[0].set_value("First question").run()
    fake.reply = "Second answer."
    at.chat_input[0].set_value("And a follow-up").run()
    no_exception(at)
    assert [m["role"] for m in fake.requests[1]["messages"]] == ["user", "assistant", "user"]
    assert fake.requests[1]["messages"][1]["content"] == "Hello from the fake server."
    assert len([m for m in at.chat_message if m.name == "assistant"]) == 2
    # Clear chat empties the conversation.
    at.button(key="pg_clear").click().run()
    assert not at.chat_message
    close_app()
    assert len(rows(fake_env["db"])) == 2


def test_playground_backend_error_is_a_message_and_a_record(fake_env):
    fake = fake_env["fake"]
    fake.mode = "http500"
    at = app().run()
    at.chat_input[0].set_value("Hello?").run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any(e.startswith("The request failed:") and "HTTP 500" in e for e in errors), errors
    close_app()
    df = rows(fake_env["db"])
    assert len(df) == 1 and df.iloc[0].status == "error" and df.iloc[0].source == "playground"
    # Serverless failed over to every dedicated endpoint, in order: all on the same fake.
    assert list(df.iloc[0].failover_path) == [
        "serverless",
        "sophia-ai-core",
        "sophia-data-pipeline",
        "sophia-production",
    ]


def test_playground_forced_tier_and_session_thresholds(fake_env):
    fake = fake_env["fake"]
    at = app().run()
    at.selectbox(key="pg_tier").set_value("dedicated").run()
    at.chat_input[0].set_value("Hi").run()
    assert fake.requests[-1]["model"] == "llama-3.3-70b-instruct"
    assert "forced" in badges(at, at.main)
    # Back to Auto, and a session complexity threshold of 0: one keyword (0.1) is now "high".
    at.selectbox(key="pg_tier").set_value("Auto")
    at.slider(key="pg_complexity").set_value(0.0).run()
    assert any("complexity threshold 0.00" in str(i.value) for i in at.info)
    at.chat_input[0].set_value("Please analyze this").run()
    no_exception(at)
    assert "high-complexity" in badges(at, at.main)
    # Another session still routes by the file's threshold (0.7).
    other = app().run()
    other.chat_input[0].set_value("Please analyze that").run()
    assert "cost-optimized" in badges(other, other.main)
    close_app()
    df = rows(fake_env["db"], "SELECT reason, tier FROM requests ORDER BY ts")
    assert list(df.reason) == ["forced", "high-complexity", "cost-optimized"]


def test_playground_bad_input_is_a_readable_message(fake_env):
    at = app().run()
    at.selectbox(key="pg_model").set_value("llama-3.3-70b-instruct").run()
    at.number_input(key="pg_max_tokens").set_value(1).run()
    at.chat_input[0].set_value("Hi").run()
    no_exception(at)
    # max_tokens 1 is valid: the reply arrives; the model was forced.
    assert "forced" in badges(at, at.main)


# --- overview -----------------------------------------------------------------------------------


def independent(df: pd.DataFrame, cfg, start: datetime, end: datetime) -> dict:
    """The overview's figures from the raw rows with pandas."""
    sel = df[(df.ts >= start) & (df.ts < end)]
    metered = sel.metered_cost_usd.sum()
    fixed = sum(e.hourly_usd for e in cfg.endpoints if e.tier == "dedicated") * (end - start).total_seconds() / 3600
    primary = pricing.price_of(cfg, cfg.routing.serverless_model)
    baseline = (
        (sel.prompt_tokens * primary.input_per_mtok + sel.completion_tokens * primary.output_per_mtok) / 1e6
    ).sum()
    cost = metered + sel.amortized_cost_usd.sum()
    ok = sel[sel.status == "ok"]
    return {
        "requests": len(sel),
        "metered": metered,
        "fixed": fixed,
        "spend": metered + fixed,
        "serverless_share": 100 * (sel.tier == "serverless").mean(),
        "avg": cost / len(sel),
        "primary": baseline,
        "savings": baseline - (metered + fixed),
        "p50": ok.latency_ms.quantile(0.5),
        "p95": ok.latency_ms.quantile(0.95),
        "error_rate": (sel.status != "ok").mean(),
        "failover_rate": (sel.reason == "failover").mean(),
        "amortized": sel.amortized_cost_usd.sum(),
    }


def test_overview_figures_equal_independent_computations(app_env):
    seed(app_env["db"], app_env["config"], n=3000, days=10)
    df = rows(app_env["db"])
    cfg = config.load(app_env["config"])
    at = run_page("pages/overview.py")
    # A custom range of whole days: the exact bounds are known to the test.
    first = (df.ts.min() + timedelta(days=2)).date()
    last = first + timedelta(days=4)
    at.selectbox(key="ov_range").set_value("Custom").run()
    at.date_input(key="ov_dates").set_value((first, last)).run()
    no_exception(at)
    start, end = (
        datetime.combine(first, datetime.min.time()),
        datetime.combine(last + timedelta(days=1), datetime.min.time()),
    )
    x = independent(df, cfg, start, end)
    assert metric(at, "Requests") == f"{x['requests']:,}"
    assert metric(at, "Metered (per token)") == appstate.usd(x["metered"])
    assert metric(at, "Fixed (GPU-hours)") == appstate.usd(x["fixed"])
    assert metric(at, "Total spend") == appstate.usd(x["spend"])
    assert metric(at, "Serverless share") == f"{x['serverless_share']:.1f}%"
    assert metric(at, "Average cost / request") == appstate.usd(x["avg"])
    assert metric(at, f"Savings vs. all on {cfg.routing.serverless_model}") == appstate.usd(x["savings"])
    assert metric(at, f"All on {cfg.routing.serverless_model}") == appstate.usd(x["primary"])
    assert metric(at, "Actual total") == appstate.usd(x["spend"])
    assert metric(at, "GPU time used") == appstate.usd(x["amortized"])
    assert metric(at, "Latency p50") == appstate.ms(x["p50"])
    assert metric(at, "Latency p95") == appstate.ms(x["p95"])
    assert metric(at, "Error rate") == appstate.pct(x["error_rate"], 2)
    assert metric(at, "Failover rate") == appstate.pct(x["failover_rate"], 2)


def test_overview_says_when_the_gpus_cost_more_than_they_save(app_env):
    seed(app_env["db"], app_env["config"], n=800, days=3)
    at = run_page("pages/overview.py")
    no_exception(at)
    cfg = config.load(app_env["config"])
    said = [w.value for w in at.warning]
    assert any(w.startswith("The GPUs cost $") and "break even" in w for w in said), said
    # And the savings card is negative: the three GPUs cost far more than per-token for this traffic.
    assert metric(at, f"Savings vs. all on {cfg.routing.serverless_model}").startswith("-$")


def test_overview_hides_demo_traffic_and_filters_sources(app_env):
    seed(app_env["db"], app_env["config"], n=500, days=3)
    # Add playground traffic the demo toggle must keep.
    con = duckdb.connect(str(app_env["db"]))
    con.execute("UPDATE requests SET source = 'playground' WHERE rowid % 5 = 0")
    con.close()
    df = rows(app_env["db"])
    at = run_page("pages/overview.py")
    at.selectbox(key="ov_range").set_value("All time").run()
    assert metric(at, "Requests") == f"{len(df):,}"
    at.toggle(key="ov_demo").set_value(False).run()
    no_exception(at)
    assert metric(at, "Requests") == f"{(df.source != 'demo').sum():,}"
    at.toggle(key="ov_demo").set_value(True)
    at.multiselect(key="ov_sources").set_value(["demo"]).run()
    assert metric(at, "Requests") == f"{(df.source == 'demo').sum():,}"


def test_overview_chart_controls_and_bad_range(app_env):
    seed(app_env["db"], app_env["config"], n=400, days=3)
    at = run_page("pages/overview.py")
    for measure in ("Requests", "Latency", "Spend"):
        at.segmented_control(key="ov_measure").set_value(measure).run()
        no_exception(at)
    at.segmented_control(key="ov_by").set_value("model").run()
    no_exception(at)
    at.selectbox(key="ov_range").set_value("Custom").run()
    today = date.today()
    at.date_input(key="ov_dates").set_value((today, today - timedelta(days=3))).run()
    no_exception(at)
    assert any("before the first day" in e.value for e in at.error)


def test_figures_update_when_new_records_arrive(app_env):
    seed(app_env["db"], app_env["config"], n=300, days=2)
    at = run_page("pages/overview.py")
    before = metric(at, "Requests")
    close_app()
    seed(app_env["db"], app_env["config"], n=100, days=1, seed_=9)  # another process's writes
    at.run()
    after = metric(at, "Requests")
    assert int(after.replace(",", "")) == int(before.replace(",", "")) + 100


# --- request log --------------------------------------------------------------------------------


def shown_total(at: AppTest) -> int:
    for m in at.markdown:
        hit = re.match(r"\*\*([\d,]+)\*\* requests? match", str(m.value))
        if hit:
            return int(hit.group(1).replace(",", ""))
    raise AssertionError("no match count on the page")


def test_request_log_filters_change_what_it_shows(app_env):
    seed(app_env["db"], app_env["config"], n=1500, days=5)
    df = rows(app_env["db"])
    at = run_page("pages/request_log.py")
    at.selectbox(key="log_range").set_value("All time").run()
    assert shown_total(at) == len(df)
    at.multiselect(key="log_tier").set_value(["dedicated"]).run()
    no_exception(at)
    assert shown_total(at) == (df.tier == "dedicated").sum()
    table = at.dataframe[0].value
    assert set(table.tier) == {"dedicated"}
    at.multiselect(key="log_reason").set_value(["failover"]).run()
    assert shown_total(at) == ((df.tier == "dedicated") & (df.reason == "failover")).sum()
    at.multiselect(key="log_tier").set_value([])
    at.multiselect(key="log_reason").set_value([])
    at.multiselect(key="log_status").set_value(["error"]).run()
    assert shown_total(at) == (df.status == "error").sum()
    assert set(at.dataframe[0].value.status) == {"error"}
    # Search by request id prefix.
    at.multiselect(key="log_status").set_value([])
    rid = df.request_id.iloc[42]
    at.text_input(key="log_text").set_value(rid[:-2]).run()
    assert shown_total(at) == df.request_id.str.startswith(rid[:-2]).sum()
    assert rid in set(at.dataframe[0].value.request_id)
    # Nothing matches: a message, no table.
    at.text_input(key="log_text").set_value("no-such-request-anywhere").run()
    assert shown_total(at) == 0 and not at.dataframe
    assert any("No request matches" in i.value for i in at.info)


def test_request_log_pages_in_duckdb(app_env):
    seed(app_env["db"], app_env["config"], n=260, days=2)
    at = run_page("pages/request_log.py")
    at.selectbox(key="log_range").set_value("All time").run()
    at.selectbox(key="log_size").set_value(100).run()
    first = at.dataframe[0].value
    assert len(first) == 100
    at.pagination[0].set_value(3).run()
    third = at.dataframe[0].value
    assert len(third) == 60
    assert not set(first.request_id) & set(third.request_id)
    assert third.ts.max() <= first.ts.min()


def test_request_log_opens_a_record(app_env):
    seed(app_env["db"], app_env["config"], n=200, days=2)
    df = rows(app_env["db"])
    r = df[df.reason == "failover"].iloc[0] if (df.reason == "failover").any() else df.iloc[0]
    at = run_page("pages/request_log.py")
    [box] = [t for t in at.text_input if t.label == "Open a request by id"]
    box.set_value(r.request_id).run()
    no_exception(at)
    said = texts(at)
    assert f"Request `{r.request_id}`" in said
    assert "Decision inputs" in said and "Outcome" in said
    assert f"max_tokens: {r.max_tokens:,}" in said
    assert "not stored" in said  # privacy.store_prompts = off
    [box] = [t for t in at.text_input if t.label == "Open a request by id"]
    box.set_value("nope").run()
    assert any("No request with id" in w.value for w in at.warning)


def test_request_log_export_button_and_limits(app_env, monkeypatch):
    seed(app_env["db"], app_env["config"], n=120, days=2)
    at = run_page("pages/request_log.py")
    at.selectbox(key="log_range").set_value("All time").run()
    [button] = at.get("download_button")
    assert "Export 120 rows as CSV" in button.proto.label and not button.proto.disabled
    monkeypatch.setattr(appstate, "EXPORT_MAX_ROWS", 50)
    at.run()
    [button] = at.get("download_button")
    assert button.proto.disabled and "At most 50 rows" in button.proto.help


def test_request_log_bad_custom_range(app_env):
    seed(app_env["db"], app_env["config"], n=50, days=1)
    at = run_page("pages/request_log.py")
    at.selectbox(key="log_range").set_value("Custom").run()
    today = date.today()
    at.date_input(key="log_dates").set_value((today, today - timedelta(days=1))).run()
    no_exception(at)
    assert any("before the first day" in e.value for e in at.error)


# --- endpoints ----------------------------------------------------------------------------------


def test_endpoints_page_checks_and_masks_secrets(app_env, monkeypatch):
    with FakeOpenAI() as fake:
        url = fake.base_url.replace("http://", f"http://user:{SECRET}@")
        write_toml(app_env["config"], openai_config(url, key_env="SOPHIA_TEST_KEY"))
        monkeypatch.setenv("SOPHIA_TEST_KEY", SECRET)
        at = run_page("pages/endpoints.py")
        no_exception(at)
        assert len([c for c in at.get("metric") if c.label == "Tries"]) == 4
        at.button(key="ep_check").click().run()
        no_exception(at)
        assert fake.model_requests == 4  # GET /v1/models once per endpoint
        shown = repr([j.value for j in at.json]) + texts(at)
        assert SECRET not in shown
        assert "set (hidden)" in shown and "SOPHIA_TEST_KEY" in shown


# --- failure modes ------------------------------------------------------------------------------


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
""")


def test_a_locked_database_is_a_friendly_message_with_retry(app_env, monkeypatch):
    import pages.common

    seed(app_env["db"], app_env["config"], n=50, days=1)
    monkeypatch.setattr(pages.common, "DB_WAIT_S", 0.5)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(app_env["db"]), "4"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        at = run_page("pages/overview.py")
        no_exception(at)
        assert any("The request log is busy" in w.value for w in at.warning)
        retry = at.button(key="busy_retry")
    finally:
        holder.wait(timeout=30)
    retry.click().run()
    if not at.title:  # the first run failed opening: now the page loads
        at.switch_page("pages/overview.py").run()
    no_exception(at)
    assert not any("busy" in w.value for w in at.warning)
    assert metric(at, "Requests")


def test_a_database_that_is_not_one_is_a_message(app_env):
    app_env["db"].write_text("this is not a DuckDB file\n" * 100)
    at = run_page("pages/overview.py")
    no_exception(at)
    assert any("The request log cannot be opened" in e.value and str(app_env["db"]) in e.value for e in at.error)


def test_a_bad_configuration_names_the_key(app_env):
    write_toml(app_env["config"], merge(fast_config(), routing={"complexity_threshold": 7}))
    at = app().run()
    no_exception(at)
    [err] = at.error
    assert "routing.complexity_threshold" in err.value and "configuration cannot be used" in err.value


# --- the app's plain logic (sophia.ui.appstate) ----------------------------------------------------


def test_resolve_range():
    now = datetime(2026, 3, 1, 12, 30, 15)
    start, end = appstate.resolve_range("Last 24 hours", now)
    assert end == datetime(2026, 3, 1, 12, 31) and end - start == timedelta(hours=24)
    assert appstate.resolve_range("All time", now) == (None, None)
    assert appstate.resolve_range("Custom", now, (date(2026, 2, 1), date(2026, 2, 3))) == (
        datetime(2026, 2, 1),
        datetime(2026, 2, 4),
    )
    with pytest.raises(ValueError, match="before the first day"):
        appstate.resolve_range("Custom", now, (date(2026, 2, 3), date(2026, 2, 1)))
    with pytest.raises(ValueError, match="both a first and a last day"):
        appstate.resolve_range("Custom", now, (date(2026, 2, 3),))
    with pytest.raises(ValueError, match="not one of"):
        appstate.resolve_range("Yesterday-ish", now)


def test_session_config_and_prompt_messages():
    cfg = reference_config()
    assert appstate.session_config(cfg, cfg.routing.complexity_threshold, cfg.routing.cost_threshold_usd) is cfg
    s = appstate.session_config(cfg, 0.2, 0.5)
    assert (s.routing.complexity_threshold, s.routing.cost_threshold_usd) == (0.2, 0.5)
    assert cfg.routing.complexity_threshold == 0.7  # the process's config is untouched
    with pytest.raises(ValueError, match="expected 0 to 1"):
        appstate.session_config(cfg, 1.5, None)
    with pytest.raises(ValueError, match=">= 0"):
        appstate.session_config(cfg, None, -1)
    turns = [
        appstate.Turn("user", "a"),
        appstate.Turn("assistant", "", error="boom"),
        appstate.Turn("user", "b"),
        appstate.Turn("assistant", "c"),
    ]
    assert appstate.prompt_messages(turns) == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]


def test_masked_config_never_shows_a_key():
    cfg = config.parse(
        openai_config(f"https://bob:{SECRET}@example.invalid/v1?api_key={SECRET}", key_env="SOPHIA_TEST_KEY"),
        "x.toml",
    )
    shown = repr(appstate.masked_config(cfg, env={"SOPHIA_TEST_KEY": SECRET}))
    assert SECRET not in shown and "set (hidden)" in shown
    shown = repr(appstate.masked_config(cfg, env={}))
    assert "not set: export SOPHIA_TEST_KEY" in shown


def test_formatting():
    assert appstate.usd(0) == "$0" and appstate.usd(1234.4) == "$1,234" and appstate.usd(12.345) == "$12.35"
    assert appstate.usd(0.000123) == "$0.000123" and appstate.usd(0.5) == "$0.5000" and appstate.usd(None) == "—"
    assert appstate.ms(None) == "—" and appstate.ms(12.4) == "12 ms" and appstate.ms(12_500) == "12.50 s"
    assert appstate.pct(0.0000001) == "<0.1%" and appstate.pct(0.25) == "25.0%" and appstate.pct(0) == "0.0%"
