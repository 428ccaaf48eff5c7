"""Chat playground: streamed replies, each with its routing, on this session's settings."""

from __future__ import annotations

import streamlit as st

from pages import common
from sophia.routing import views
from sophia.routing.features import RequestError
from sophia.routing.result import ChatRequest
from sophia.ui import appstate, cards
from sophia.ui.appstate import Turn
from sophia.vocab import Source, Status, Tier, words

common.require_shell()
rt = common.runtime()
cfg = rt.cfg
AUTO = "Auto"
SUGGESTIONS = (
    "What is the capital of Australia?",
    "Analyze the quarterly sales figures and generate a report.",
    "Remember the context of our session and continue the story.",
)

if "turns" not in st.session_state:
    st.session_state.turns = []
turns: list[Turn] = st.session_state.turns


def clear_chat() -> None:
    st.session_state.turns = []


def reset_controls() -> None:
    for k in ("pg_tier", "pg_model", "pg_max_tokens", "pg_complexity", "pg_cost"):
        st.session_state.pop(k, None)


# --- controls: this session only ---------------------------------------------------------

with st.sidebar:
    st.divider()
    st.markdown("**Routing for this session**")
    tier = st.selectbox(
        "Tier",
        [AUTO, *words(Tier)],
        key="pg_tier",
        help="Auto lets the policy decide; a forced tier is logged with reason 'forced'.",
    )
    model = st.selectbox(
        "Model",
        [AUTO, *appstate.model_choices(cfg)],
        key="pg_model",
        help="Force one model (and the endpoint that serves it).",
    )
    max_tokens = st.number_input(
        "max_tokens",
        min_value=1,
        max_value=1_000_000,
        value=None,
        step=64,
        key="pg_max_tokens",
        placeholder=f"default {cfg.routing.default_max_tokens}",
        help=f"Over {cfg.scorer.max_tokens_over:,} adds {cfg.scorer.max_tokens_weight:g} to the complexity score.",
    )
    complexity = st.slider(
        "Complexity threshold",
        0.0,
        1.0,
        value=cfg.routing.complexity_threshold,
        step=0.05,
        key="pg_complexity",
        help="Scores above it go to a dedicated GPU (high-complexity).",
    )
    cost = st.number_input(
        "Cost threshold (USD)",
        min_value=0.0,
        max_value=1000.0,
        value=cfg.routing.cost_threshold_usd,
        step=0.01,
        format="%.4f",
        key="pg_cost",
        help="Estimated serverless cost above it goes to a dedicated GPU (cost-optimization).",
    )
    c1, c2 = st.columns(2)
    c1.button(
        "Reset",
        on_click=reset_controls,
        icon=":material/restart_alt:",
        width="stretch",
        help="Back to the configuration's settings.",
    )
    c2.button(
        "Clear chat",
        on_click=clear_chat,
        icon=":material/delete_sweep:",
        width="stretch",
        key="pg_clear",
    )

try:
    session_cfg = appstate.session_config(cfg, complexity, cost)
except ValueError as e:
    st.error(str(e))
    st.stop()
changed = session_cfg is not cfg or tier != AUTO or model != AUTO or max_tokens is not None


# --- the routing card --------------------------------------------------------------------


def routing_card(card: dict, i: int) -> None:
    with st.container(border=True, key=f"routing_card_{i}"):
        badges = st.container(horizontal=True, gap="small")
        with badges:
            st.badge(
                card["tier"] or "no tier",
                icon=":material/alt_route:",
                color="violet" if card["tier"] == Tier.DEDICATED else "blue",
            )
            st.badge(card["endpoint"] or "—", icon=":material/dns:", color="gray")
            if card["simulated"]:
                st.badge(
                    "simulated",
                    icon=":material/science:",
                    color="orange",
                    help="A built-in simulated endpoint answered: no network, no bill.",
                )
            st.badge(card["model"] or "—", icon=":material/neurology:", color="gray")
            st.badge(
                card["reason"] or "—",
                icon=":material/rule:",
                color="red" if card["status"] != Status.OK else "green",
                help=f"The policy alone said '{card['policy_reason']}'." if card["policy_reason"] else None,
            )
        st.markdown(cards.routing_table(card))
        st.caption(cards.routing_caption(card))


# --- the conversation --------------------------------------------------------------------

common.page_header(
    "Chat playground",
    "Every reply is routed by the policy, streamed, costed and recorded in the log (source 'playground').",
)
if changed:
    defaults = (cfg.routing.complexity_threshold, cfg.routing.cost_threshold_usd)
    st.info(cards.session_note(defaults, AUTO, tier, model, max_tokens, (complexity, cost)), icon=":material/tune:")

for i, t in enumerate(turns):
    with st.chat_message(t.role):
        if t.content:
            st.markdown(t.content)
        if t.role == "assistant":
            if t.error:
                st.error(appstate.error_message(t.routing) if t.routing else t.error, icon=":material/error:")
            if t.routing:
                routing_card(t.routing, i)

picked = None
welcome = st.empty()
if not turns:
    with welcome.container(border=True):
        st.markdown("#### :material/waving_hand: Ask anything")
        st.markdown(
            "Each reply shows how it was routed: tier, endpoint, model, complexity score and what "
            "added to it, estimated and actual cost, tokens, latency and the reason. "
            "Short questions stay on the serverless tier; long or complex ones go to a dedicated GPU."
        )
        row = st.container(horizontal=True, gap="small")
        for j, s in enumerate(SUGGESTIONS):
            if row.button(s, key=f"pg_suggest_{j}", icon=":material/lightbulb:"):
                picked = s

prompt = st.chat_input("Message Sophia…", key="pg_input", max_chars=200_000) or picked
if prompt is not None and not prompt.strip():
    st.toast("Type a message first: an empty one is not sent.", icon=":material/edit:")
    prompt = None
if prompt:
    welcome.empty()
    turns.append(Turn("user", prompt))
    with st.chat_message("user"):
        st.markdown(prompt)
    req = ChatRequest(
        messages=appstate.prompt_messages(turns),
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        force_tier=tier if tier != AUTO else None,
        force_model=model if model != AUTO else None,
        source=Source.PLAYGROUND,
    )
    with st.chat_message("assistant"):
        try:
            handle = rt.router.stream(req, session_cfg)
        except (RequestError, ValueError) as e:
            msg = f"This request cannot be routed: {e}"
            st.error(msg, icon=":material/error:")
            turns.append(Turn("assistant", "", error=msg))
        else:
            text = st.write_stream(handle.texts())
            res = handle.result
            card = views.routing_card(res, session_cfg)
            reply = text if isinstance(text, str) else "".join(map(str, text or []))
            error = None if res.ok else (res.error or res.status)
            if error:
                st.error(appstate.error_message(card), icon=":material/error:")
                st.caption("The request is recorded in the log with its error.")
            routing_card(card, len(turns))
            turns.append(Turn("assistant", reply, routing=card, error=error))
    if picked:
        st.rerun()
