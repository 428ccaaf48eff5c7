"""The steering pages through AppTest: threshold tuning and budgets, and the alert banner."""

from __future__ import annotations

import json

from sophia import config
from sophia.vocab import LIVE_SOURCES, Source
from tests.apptest import close_app, metric, no_exception, rows, run_page, seed, texts
from tests.helpers import fast_config, write_toml


def test_tuning_renders_empty_and_with_traffic(app_env):
    at = run_page("pages/tuning.py")
    no_exception(at)
    assert at.title[0].value == "Threshold tuning"
    assert "The request log is empty" in texts(at)
    close_app()
    seed(app_env["db"], app_env["config"])
    at = run_page("pages/tuning.py")
    no_exception(at)
    assert metric(at, "To dedicated GPUs")
    assert any(s.label == "Complexity threshold" for s in at.slider)


def test_moving_a_slider_changes_the_figures_and_apply_creates_a_version(app_env):
    seed(app_env["db"], app_env["config"], n=3000)
    at = run_page("pages/tuning.py")
    before = metric(at, "To dedicated GPUs")
    metered_before = metric(at, "Metered spend")
    at.slider(key="tn_cx").set_value(0.2).run()
    no_exception(at)
    after = metric(at, "To dedicated GPUs")
    assert after != before
    assert metric(at, "Metered spend") != metered_before
    at.text_input(key="tn_note").input("more to GPUs")
    at.button(key="FormSubmitter:tn_apply-Apply").click().run()
    no_exception(at)
    close_app()
    versions = rows(app_env["db"], "SELECT version, origin, note, settings FROM settings_versions ORDER BY version")
    assert list(versions["origin"]) == ["config", "tuning"]
    assert versions["note"].iloc[-1] == "more to GPUs"
    assert json.loads(versions["settings"].iloc[-1])["routing"]["complexity_threshold"] == 0.2
    # the router uses it: a new runtime resolves the newest version, and a chat is recorded under it
    at = run_page("pages/chat.py")
    at.chat_input[0].set_value("hello").run()
    no_exception(at)
    close_app()
    last = rows(app_env["db"], "SELECT policy_version FROM requests WHERE source = 'playground'")
    assert list(last["policy_version"]) == [int(versions["version"].iloc[-1])]


def test_budgets_page_and_banner(app_env):
    data = fast_config()
    data["budgets"][0].update(sources=[*LIVE_SOURCES, Source.DEMO], amount_usd=1)  # monthly-total
    write_toml(app_env["config"], data)
    config.load(app_env["config"])
    seed(app_env["db"], app_env["config"], n=500, days=1)
    at = run_page("pages/budgets.py")
    no_exception(at)
    assert at.title[0].value == "Budgets"
    said = texts(at)
    assert "monthly-total" in said and "serverless-daily" in said
    assert any("Budget monthly-total" in w.value and "has reached its limit" in w.value for w in at.warning)
    # the banner is on every page
    at.switch_page("pages/overview.py").run()
    assert any("Budget monthly-total" in w.value for w in at.warning)
    # add a budget through the form
    at.switch_page("pages/budgets.py").run()
    at.text_input[0].input("team-a")
    at.number_input[0].set_value(42.0)
    at.button(key="FormSubmitter:bud_form-Save budget").click().run()
    no_exception(at)
    assert "team-a" in texts(at)
    close_app()
    saved = rows(app_env["db"], "SELECT budgets, origin FROM budget_versions ORDER BY version DESC LIMIT 1")
    assert saved["origin"][0] == "page"
    assert {b["name"]: b["amount_usd"] for b in json.loads(saved["budgets"][0])}["team-a"] == 42.0


def test_budget_form_rejects_a_bad_budget(app_env):
    at = run_page("pages/budgets.py")
    at.text_input[0].input("")
    at.button(key="FormSubmitter:bud_form-Save budget").click().run()
    no_exception(at)
    assert any("name" in e.value for e in at.error)


def test_money_deltas_read_as_falls():
    from sophia.ui import appstate

    assert appstate.usd(-0.0363) == "-$0.0363" and appstate.usd(-26.14) == "-$26.14" and appstate.usd(1234) == "$1,234"


def test_a_blank_chat_message_is_not_sent(app_env):
    at = run_page("pages/chat.py")
    at.chat_input[0].set_value("   ").run()
    no_exception(at)
    close_app()
    assert rows(app_env["db"], "SELECT count(*) AS n FROM requests")["n"][0] == 0


def test_a_goal_out_of_range_says_what_is_allowed_instead_of_keeping_the_old_value(app_env):
    seed(app_env["db"], app_env["config"], n=1500)
    at = run_page("pages/tuning.py")
    before = at.slider(key="tn_cx").value
    at.number_input(key="tn_goal_budget").set_value(999_999_999_999.0).run()
    at.button(key="tn_go_budget").click().run()
    no_exception(at)
    warning = " ".join(w.value for w in at.warning)
    assert "Monthly budget = 999,999,999,999 is not allowed: expected 0 to 1,000,000,000" in warning
    assert at.slider(key="tn_cx").value == before
    at.number_input(key="tn_goal_share").set_value(150.0).run()
    at.button(key="tn_go_share").click().run()
    assert "Target dedicated share = 150 is not allowed: expected 0 to 100" in " ".join(w.value for w in at.warning)
