"""Chat playground: streamed replies, each with its routing, on this session's settings."""

from __future__ import annotations

import streamlit as st

from pages import common
from sophia.routing import views
from sophia.routing.features import RequestError
from sophia.routing.result import ChatRequest
from sophia.ui import appstate, cards
from sophia.ui.appstate import AUTO, COMPLEXITY, COST, MAX_TOKENS, MODEL, TIER, Turn
from sophia.vocab import Source, Status, Tier

common.require_shell()
rt = common.runtime()
cfg = rt.cfg

if "turns" not in st.session_state:
    st.session_state.turns = []
turns: list[Turn] = st.session_state.turns
# Before any widget is drawn: defaults for new controls, and unusable values put back.
repaired = appstate.repair_controls(st.session_state, cfg)


def clear_chat() -> None:
    st.session_state.turns = []


def reset_controls() -> None:
    # Assigning the defaults (not deleting the keys) also resets what the browser shows and sends back.
    st.session_state.update(appstate.control_defaults(cfg))
    clear_chat()


common.page_header(
    "Chat playground",
    "Every reply is routed by the policy, streamed, costed and recorded in the log (source 'playground').",
)

# --- controls: this session only, in the page so that a phone reaches them --------------------

with st.expander("Routing for this session", icon=":material/tune:"):
    c1, c2, c3 = st.columns(3)
    c1.selectbox(
        "Tier",
        appstate.tier_options(),
        key=TIER,
        help="Auto lets the policy decide; a forced tier is logged with reason 'forced'.",
    )
    c2.selectbox(
        "Model",
        appstate.model_options(cfg),
        key=MODEL,
        help="Force one chat model (and the endpoint that serves it).",
    )
    lo, hi = appstate.MAX_TOKENS_RANGE
    c3.number_input(
        "max_tokens",
        min_value=lo,
        max_value=hi,
        value=None,
        step=64,
        key=MAX_TOKENS,
        placeholder=f"default {cfg.routing.default_max_tokens}",
        help=appstate.max_tokens_help(cfg),
    )
    c4, c5 = st.columns(2)
    lo, hi = appstate.COMPLEXITY_RANGE
    c4.slider("Complexity threshold", lo, hi, step=0.05, key=COMPLEXITY, help=appstate.complexity_help(cfg))
    lo, hi = appstate.COST_RANGE
    c5.number_input(
        "Cost threshold (USD)",
        min_value=lo,
        max_value=hi,
        step=0.01,
        format="%.4f",
        key=COST,
        help=appstate.cost_help(cfg),
    )
    row = st.container(horizontal=True, gap="small")
    row.button(
        "Reset",
        on_click=reset_controls,
        icon=":material/restart_alt:",
        key="pg_reset",
        help="Every control back to the configuration's settings, and a new conversation.",
    )
    row.button("Clear chat", on_click=clear_chat, icon=":material/delete_sweep:", key="pg_clear")

for problem in repaired:
    st.error(problem, icon=":material/error:")
try:
    controls = appstate.read_controls(st.session_state, cfg)
    session_cfg = appstate.session_config(cfg, controls.complexity_threshold, controls.cost_threshold_usd)
except ValueError as e:
    controls, session_cfg = None, cfg
    st.error(f"{e}.", icon=":material/error:")

if controls is not None and (session_cfg is not cfg or controls.forced()):
    defaults = (cfg.routing.complexity_threshold, cfg.routing.cost_threshold_usd)
    chosen = (controls.complexity_threshold, controls.cost_threshold_usd)
    tier, model = controls.tier or AUTO, controls.model or AUTO
    note = cards.session_note(defaults, AUTO, tier, model, controls.max_tokens, chosen)
    st.info(note + " Reset puts every control back.", icon=":material/tune:")


def request(messages: list[dict]) -> ChatRequest:
    """This session's request for a conversation."""
    return ChatRequest(
        messages=messages,
        max_tokens=controls.max_tokens,
        force_tier=controls.tier,
        force_model=controls.model,
        source=Source.PLAYGROUND,
    )


def predicted(prompt: str):
    """Where a prompt would go now (a Decision), or None when these settings cannot route it."""
    if controls is None:
        return None
    try:
        return rt.router.decide(request([{"role": "user", "content": prompt}]), session_cfg)
    except RequestError:
        return None


# --- the routing card --------------------------------------------------------------------


def routing_card(card: dict, i: int) -> None:
    view = cards.card_view(card)
    with st.container(border=True, key=f"routing_card_{i}"):
        with st.container(horizontal=True, gap="small"):
            for b in view.badges:
                st.badge(b.label, icon=b.icon, color=b.color, help=b.help)
        if view.outcome == Status.CANCELLED:
            st.warning(view.message, icon=":material/stop_circle:")
        elif view.message:
            st.error(view.message, icon=":material/block:" if view.outcome == Status.REFUSED else ":material/error:")
        if view.table:
            st.markdown(view.table)
        st.caption(view.caption)


# --- the conversation --------------------------------------------------------------------

for i, t in enumerate(turns):
    with st.chat_message(t.role):
        if t.content:
            st.markdown(appstate.markdown_safe(t.content))
        if t.routing:
            routing_card(t.routing, i)
        elif t.error:
            st.error(t.error, icon=":material/error:")

picked = None
welcome = st.empty()
if not turns:
    with welcome.container(border=True):
        st.markdown("#### :material/waving_hand: Ask anything")
        st.markdown(
            "Each reply shows how it was routed: tier, endpoint, model, complexity score and what "
            "added to it, estimated and actual cost, tokens, latency and the reason. "
            "Short questions stay on the serverless tier; long or complex ones go to a dedicated GPU. "
            "Try one of these, routed with this session's settings:"
        )
        columns = st.columns(len(appstate.SUGGESTIONS))
        for j, (col, s) in enumerate(zip(columns, appstate.SUGGESTIONS, strict=True)):
            d = predicted(s.prompt)
            with col.container(border=True, key=f"pg_suggestion_{j}", height="stretch"):
                dedicated = d is not None and d.tier == Tier.DEDICATED
                st.badge(
                    appstate.route_label(d),
                    icon=":material/memory:" if dedicated else ":material/cloud:",
                    color="violet" if dedicated else "blue",
                )
                st.markdown(f"**{s.title}**  \n{appstate.markdown_safe(s.prompt)}")
                if st.button("Send", key=f"pg_suggest_{j}", icon=":material/send:", disabled=controls is None):
                    picked = s.prompt

typed = st.chat_input("Message Sophia…", key="pg_input", max_chars=200_000, disabled=controls is None)
prompt = typed or picked
if prompt is not None and not prompt.strip():
    st.toast("Type a message first: an empty one is not sent.", icon=":material/edit:")
    prompt = None
if prompt and controls is not None:
    welcome.empty()
    turns.append(Turn("user", prompt))
    with st.chat_message("user"):
        st.markdown(appstate.markdown_safe(prompt))
    with st.chat_message("assistant"):
        try:
            handle = rt.router.stream(request(appstate.prompt_messages(turns)), session_cfg)
        except (RequestError, ValueError) as e:
            msg = f"This request cannot be routed: {e}"
            st.error(msg, icon=":material/error:")
            turns.append(Turn("assistant", "", error=msg))
        else:
            parts: list[str] = []
            st.write_stream(appstate.shown(handle.texts(), parts))
            res = handle.result
            card = views.routing_card(res, session_cfg)
            routing_card(card, len(turns))
            error = None if res.ok else res.error or res.status
            turns.append(Turn("assistant", "".join(parts), routing=card, error=error))
    if picked:
        st.rerun()
