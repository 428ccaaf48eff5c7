"""The chat playground: Reset, the suggestions, refused and failed requests, how replies are
shown, the numeric controls' ranges, and the page on a phone-width screen.

AppTest drives the page server-side; what only a browser does (the values the browser holds
for its widgets, the layout at 390 px) is checked in headless Chromium.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sophia.routing import features, policy, views
from sophia.routing.result import ChatRequest
from sophia.routing.router import Router
from sophia.ui import appstate, cards
from sophia.vocab import Reason, Status, Tier
from tests.apptest import app, badges, close_app, no_exception, rows, texts
from tests.fakeopenai import FakeOpenAI
from tests.helpers import (
    DEDICATED_MODEL,
    EMBEDDINGS_MODEL,
    Streamlit,
    fast_config,
    merge,
    openai_config,
    reference,
    reference_config,
    simulate,
    write_toml,
)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"  # gitignored screenshots for a person to look at


def assistant(at):
    return [m for m in at.chat_message if m.name == "assistant"][-1]


def tables(at) -> list[str]:
    return [str(e.value) for e in at.markdown if "| Complexity |" in str(e.value)]


def send(at, text: str):
    at.chat_input[0].set_value(text).run()
    no_exception(at)
    return at


def press(at, key: str):
    at.button(key=key).click().run()
    no_exception(at)
    return at


# --- 1. Reset ---------------------------------------------------------------------------------


def test_reset_restores_every_control_and_clears_the_conversation(app_env):
    cfg = reference_config()
    at = app().run()
    at.selectbox(key="pg_tier").set_value(Tier.DEDICATED)
    at.selectbox(key="pg_model").set_value(DEDICATED_MODEL)
    at.number_input(key="pg_max_tokens").set_value(2000)
    at.slider(key="pg_complexity").set_value(0.2)
    at.number_input(key="pg_cost").set_value(0.5).run()
    send(at, "Hi")
    assert "forced" in badges(at, at.main)
    assert any("differ from the configuration" in str(i.value) for i in at.info)

    [reset] = [b for b in at.button if b.label == "Reset"]
    reset.click().run()
    no_exception(at)
    assert not at.chat_message, "Reset leaves the conversation in place"
    assert at.selectbox(key="pg_tier").value == appstate.AUTO
    assert at.selectbox(key="pg_model").value == appstate.AUTO
    assert at.number_input(key="pg_max_tokens").value is None
    assert at.slider(key="pg_complexity").value == cfg.routing.complexity_threshold
    assert at.number_input(key="pg_cost").value == cfg.routing.cost_threshold_usd
    assert not at.info, [i.value for i in at.info]  # no session note: nothing differs any more
    assert "Ask anything" in texts(at)

    send(at, "Hi again")
    shown = badges(at, at.main)
    assert {Tier.SERVERLESS, Reason.COST_OPTIMIZED} <= set(shown) and "forced" not in shown, shown
    close_app()
    df = rows(app_env["db"], "SELECT reason, tier, max_tokens FROM requests ORDER BY ts")
    assert list(df.reason) == [Reason.FORCED, Reason.COST_OPTIMIZED]
    assert list(df.max_tokens) == [2000, cfg.routing.default_max_tokens]


# --- 2. Suggestions ---------------------------------------------------------------------------


def shipped_decision(prompt: str) -> policy.Decision:
    cfg = reference_config()  # what the shipped sophia.toml declares (tests/test_config.py checks it)
    f = features.extract([{"role": "user", "content": prompt}], None, cfg.scorer, cfg.routing.default_max_tokens)
    return policy.decide(f, cfg)


def test_suggestions_show_serverless_and_dedicated_routing_under_the_shipped_config():
    decisions = [shipped_decision(s.prompt) for s in appstate.SUGGESTIONS]
    assert any(d.tier == Tier.SERVERLESS and d.reason == Reason.COST_OPTIMIZED for d in decisions)
    assert any(d.tier == Tier.DEDICATED and d.reason == Reason.HIGH_COMPLEXITY for d in decisions), [
        (d.complexity, d.reason) for d in decisions
    ]
    # Each shows something different: three different scores.
    assert len({d.complexity for d in decisions}) == len(decisions)
    assert appstate.route_label(decisions[-1]) == "dedicated · high-complexity · score 0.80"


def test_each_suggestion_says_where_it_goes_and_goes_there(app_env):
    at = app().run()
    labels = badges(at, at.main)
    expected = [appstate.route_label(shipped_decision(s.prompt)) for s in appstate.SUGGESTIONS]
    assert labels == expected, labels
    for s in appstate.SUGGESTIONS:
        assert any(s.title in str(m.value) and s.prompt in str(m.value) for m in at.markdown), s
    for j, s in enumerate(appstate.SUGGESTIONS):
        d = shipped_decision(s.prompt)
        press(at, f"pg_suggest_{j}")
        [user] = [m for m in at.chat_message if m.name == "user"]
        assert s.prompt in "\n".join(str(e.value) for e in user.markdown)
        shown = badges(at, assistant(at))
        assert shown[0] == d.tier and shown[-1] == d.reason, shown
        press(at, "pg_clear")
    close_app()
    df = rows(app_env["db"], "SELECT tier, reason FROM requests ORDER BY ts")
    assert list(df.tier) == [shipped_decision(s.prompt).tier for s in appstate.SUGGESTIONS]
    assert Tier.DEDICATED in set(df.tier) and Tier.SERVERLESS in set(df.tier)


def test_suggestion_labels_follow_the_session_settings(app_env):
    at = app().run()
    at.selectbox(key="pg_tier").set_value(Tier.DEDICATED).run()
    assert all(label.startswith(f"{Tier.DEDICATED} · {Reason.FORCED}") for label in badges(at, at.main))


# --- 3. Refused and failed requests -----------------------------------------------------------


def assert_no_served_badges(shown: list[str]) -> None:
    served = {Tier.SERVERLESS, Tier.DEDICATED, "serverless", "sophia-ai-core", "simulated", DEDICATED_MODEL}
    assert not served & set(shown), shown


def test_a_forced_embeddings_model_is_refused_and_its_card_says_so():
    cfg = reference_config()
    assert EMBEDDINGS_MODEL not in appstate.model_choices(cfg)  # the page offers chat models only
    router = Router(cfg)
    res = router.chat(ChatRequest([{"role": "user", "content": "Hi"}], force_model=EMBEDDINGS_MODEL))
    assert res.status == Status.REFUSED
    view = cards.card_view(views.routing_card(res, cfg))
    assert view.outcome == Status.REFUSED and view.table is None
    assert [b.label for b in view.badges] == [f"refused · {Reason.CAPABILITY}"]
    assert view.message.startswith("Refused: ") and "does not support chat" in view.message
    assert "nothing was charged" in view.caption and res.request_id in view.caption
    router.close()


def test_a_request_refused_by_a_budget_shows_a_refused_card(app_env):
    block = {"name": "tiny", "scope": "global", "period": "day", "amount_usd": 1e-9, "action": "block"}
    write_toml(app_env["config"], merge(fast_config(), budgets=[block]))
    at = send(app().run(), "What is the capital of Australia?")
    shown = badges(at, assistant(at))
    assert shown == [f"refused · {Reason.BUDGET}"], shown
    assert_no_served_badges(shown)
    errors = [str(e.value) for e in at.error]
    assert any(e.startswith("Refused: budget 'tiny'") for e in errors), errors
    assert not tables(at)  # no cost, tokens or latency as if a model had answered
    assert "Not sent to any model" in "\n".join(str(c.value) for c in at.caption)
    close_app()
    df = rows(app_env["db"])
    assert list(df.status) == [Status.REFUSED]


def test_a_request_no_model_can_take_shows_a_refused_card(app_env):
    data = fast_config()
    for ep in data["endpoints"]:
        ep["context_window"] = 1000
    write_toml(app_env["config"], data)
    at = app().run()
    at.number_input(key="pg_max_tokens").set_value(2000).run()
    send(at, "Hi")
    shown = badges(at, assistant(at))
    assert shown == [f"refused · {Reason.CAPABILITY}"], shown
    errors = [str(e.value) for e in at.error]
    assert any(e.startswith("Refused: ") and "context window" in e for e in errors), errors
    assert not tables(at)


def test_a_backend_error_shows_an_error_card(app_env):
    with FakeOpenAI(reply="unused") as fake:
        write_toml(app_env["config"], openai_config(fake.base_url))
        fake.mode = "http500"
        at = send(app().run(), "Hello?")
        shown = badges(at, assistant(at))
        assert shown == ["error"], shown
        assert not tables(at)
        captions = "\n".join(str(c.value) for c in at.caption)
        assert "**Tried:** serverless → sophia-ai-core" in captions
        close_app()


# --- 4. Replies are shown as the backend wrote them --------------------------------------------


def test_a_simulated_reply_is_shown_as_an_answer_to_the_prompt(app_env):
    at = send(app().run(), "How do I tune the cache of my routing service?")
    reply = "\n".join(str(e.value) for e in assistant(at).markdown if "-badge[" not in str(e.value))
    turn = at.session_state["turns"][-1]
    assert turn.content and turn.content in reply  # the whole reply, as streamed
    assert "cache" in turn.content.lower()  # it reads as an answer to this prompt


def test_dollar_signs_are_shown_as_written_and_sent_back_unchanged(app_env):
    with FakeOpenAI(reply="It costs $5 a day and $10 at peak.") as fake:
        write_toml(app_env["config"], openai_config(fake.base_url))
        at = send(app().run(), "Is $0.10 per request a lot?")
        shown = "\n".join(str(m.value) for m in at.markdown)
        assert r"It costs \$5 a day and \$10 at peak." in shown  # not LaTeX
        assert r"Is \$0.10 per request a lot?" in shown
        send(at, "And per month?")
        assert fake.requests[-1]["messages"][:2] == [
            {"role": "user", "content": "Is $0.10 per request a lot?"},
            {"role": "assistant", "content": "It costs $5 a day and $10 at peak."},
        ]
        close_app()


# --- 6. Numeric inputs --------------------------------------------------------------------------


def test_every_numeric_input_has_a_range_its_help_states(app_env):
    at = app().run()
    numbers = list(at.number_input) + list(at.slider)
    assert {w.key for w in numbers} == {"pg_max_tokens", "pg_cost", "pg_complexity"}
    for w in numbers:
        assert w.min is not None and w.max is not None and math.isfinite(w.max), w.key
        assert w.help, w.key
    mt, cost, cx = at.number_input(key="pg_max_tokens"), at.number_input(key="pg_cost"), at.slider(key="pg_complexity")
    assert (mt.min, mt.max) == appstate.MAX_TOKENS_RANGE == (1, features.MAX_TOKENS_LIMIT)
    assert f"from {int(mt.min):,} to {int(mt.max):,}" in mt.help
    assert f"from ${cost.min:,.0f} to ${cost.max:,.0f}" in cost.help
    assert f"from {cx.min:g} to {cx.max:g}" in cx.help.lower()


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("pg_max_tokens", "lots", "max_tokens 'lots' is not allowed"),
        ("pg_max_tokens", 10**12, "expected a whole number from 1 to 1,000,000"),
        ("pg_max_tokens", 2.5, "expected a whole number"),
        ("pg_cost", float("nan"), "cost threshold nan is not allowed"),
        ("pg_cost", 1e12, "cost threshold"),
        ("pg_complexity", 5.0, "expected 0 to 1"),
        ("pg_complexity", "high", "complexity threshold 'high' is not allowed"),
        ("pg_tier", "gpu", "tier 'gpu' is not one of"),
        ("pg_model", "gpt-99", "model 'gpt-99' is not one of"),
    ],
)
def test_unusable_values_never_reach_the_router(app_env, key, value, says):
    cfg = reference_config()
    at = app()
    at.session_state[key] = value
    at.run()
    no_exception(at)
    errors = [str(e.value) for e in at.error]
    assert any(says in e and "back to its default" in e for e in errors), errors
    send(at, "What is the capital of Australia?")
    assert badges(at, assistant(at))[-1] == Reason.COST_OPTIMIZED
    close_app()
    df = rows(app_env["db"], "SELECT reason, max_tokens FROM requests")
    assert list(df.reason) == [Reason.COST_OPTIMIZED] and list(df.max_tokens) == [cfg.routing.default_max_tokens]


def test_a_forced_model_of_another_tier_is_said_before_anything_is_sent(app_env):
    at = app().run()
    at.selectbox(key="pg_tier").set_value(Tier.SERVERLESS)
    at.selectbox(key="pg_model").set_value(DEDICATED_MODEL).run()
    no_exception(at)
    errors = [str(e.value) for e in at.error]
    assert any(f"served by the {Tier.DEDICATED} tier, not {Tier.SERVERLESS}" in e for e in errors), errors
    assert at.chat_input[0].proto.disabled
    close_app()
    assert len(rows(app_env["db"])) == 0


# --- in a browser: what the browser keeps, and a phone-width screen ----------------------------

NEEDS_CHROMIUM = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"
)
IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def streamlit_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chat")
    cfg = write_toml(tmp / "sophia.toml", simulate(reference(), ttft_ms=5, tpot_ms=0, error_rate=0.0))
    app_ = Streamlit(cfg, tmp / "app.duckdb")
    try:
        yield app_
    finally:
        app_.close()


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield b
        b.close()


def settle(pg) -> None:
    pg.locator(IDLE).wait_for(state="attached", timeout=WAIT_MS)
    pg.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=WAIT_MS)
    pg.locator("[data-stale='true']").first.wait_for(state="detached", timeout=WAIT_MS)


def open_page(chromium, url: str, width: int):
    ctx = chromium.new_context(viewport={"width": width, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    pg.goto(url)
    pg.get_by_role("heading", name="Chat playground").wait_for()
    settle(pg)
    return ctx, pg


def open_controls(pg) -> None:
    pg.get_by_text("Routing for this session").first.click()
    pg.get_by_label("max_tokens", exact=True).wait_for(state="visible")
    # Until the expander has finished opening, a choice made in it may not reach the app.
    pg.wait_for_function("() => document.getAnimations().length === 0")


def chat(pg, text: str, card: int = 1):
    box = pg.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    pg.locator(f".st-key-routing_card_{card}").wait_for()
    settle(pg)
    return pg.locator(f".st-key-routing_card_{card}")


def force_tier(pg, tier: str) -> None:
    """Choose a tier by typing it, as a keyboard user would."""
    box = pg.get_by_label("Tier", exact=True)
    box.click()
    # Type only once the box has the focus, and choose only once the typed option is offered:
    # keys sent earlier go nowhere (seen on a loaded machine at phone width).
    box.evaluate(
        "el => new Promise(ok => { const f = () => document.activeElement === el ? ok() : setTimeout(f, 20); f(); })"
    )
    pg.keyboard.type(tier)
    pg.get_by_role("option", name=tier, exact=True).wait_for()
    pg.keyboard.press("Enter")
    pg.get_by_text(f"tier forced to {tier}").wait_for()
    settle(pg)


@pytest.mark.browser
@pytest.mark.slow
@NEEDS_CHROMIUM
def test_reset_in_a_browser_sends_the_defaults_from_then_on(chromium, streamlit_app):
    ctx, pg = open_page(chromium, streamlit_app.url, 1400)
    try:
        open_controls(pg)
        force_tier(pg, Tier.DEDICATED)
        pg.get_by_label("max_tokens", exact=True).fill("2000")
        pg.get_by_label("max_tokens", exact=True).press("Enter")
        settle(pg)
        assert "forced" in chat(pg, "Hi").inner_text()
        pg.get_by_role("button", name="Reset").click()
        settle(pg)
        # What the browser shows, and sends back with the next message, is the default again.
        # The reset run may start after settle() returns: wait for what it shows, not for idle.
        expect = pytest.importorskip("playwright.sync_api").expect
        expect(pg.get_by_label("max_tokens", exact=True)).to_have_value("", timeout=WAIT_MS)
        expect(pg.get_by_label("Tier", exact=True)).to_have_value(appstate.AUTO, timeout=WAIT_MS)
        settle(pg)
        pg.get_by_text("Ask anything").wait_for()
        card = chat(pg, "Hi again")
        text = card.inner_text()
        assert Reason.COST_OPTIMIZED in text and "forced" not in text, text
        assert "llama-4-scout-17b-16e-instruct" in text
    finally:
        ctx.close()


@pytest.mark.browser
@pytest.mark.slow
@NEEDS_CHROMIUM
def test_the_page_is_usable_at_phone_width(chromium, streamlit_app):
    ctx, pg = open_page(chromium, streamlit_app.url, 390)
    try:
        sidebar = pg.locator('[data-testid="stSidebar"]')
        if sidebar.get_attribute("data-collapsed") == "false":  # app.py may open it: close it as a user would
            pg.get_by_test_id("stSidebarCollapseButton").locator("button").click()
            pg.locator('[data-testid="stSidebar"][data-collapsed="true"]').wait_for(state="attached")
        # The routing controls are in the page, not only in the sidebar.
        open_controls(pg)
        tier = pg.get_by_label("Tier", exact=True)
        box = tier.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        force_tier(pg, Tier.DEDICATED)
        card = chat(pg, "What is the capital of Australia?")
        # The card fits the screen, and nothing in it sticks out of it.
        width = pg.evaluate("() => document.documentElement.clientWidth")
        edges = card.evaluate(
            "el => [el.getBoundingClientRect().right,"
            " Math.max(...[...el.querySelectorAll('*')].map(e => e.getBoundingClientRect().right))]"
        )
        assert edges[0] <= width and edges[1] <= edges[0], (edges, width)
        assert "forced" in card.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "chat-390.png"), full_page=True)
    finally:
        ctx.close()
