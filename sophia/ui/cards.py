"""Markdown for the playground's routing card, the request log's record and the session note.

Streamlit-free: the pages pass these strings to `st.markdown` / `st.caption` / `st.info`, and
lay out a `CardView`'s badges with `st.badge`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sophia.ui.appstate import breakdown_text, error_message, ms, usd
from sophia.vocab import Reason, Status, Tier


def _tokens(prompt: int, completion: int, estimated: bool) -> str:
    return f"{prompt:,} + {completion:,}" + (" (estimated)" if estimated else "")


def routing_table(card: Mapping[str, Any]) -> str:
    """The routing card's facts, two to a row (complexity and tokens, the costs, the timings),
    so that the table fits beside a reply on a phone-width screen."""
    tokens = _tokens(card["prompt_tokens"], card["completion_tokens"], card["usage_estimated"])
    complexity = "—" if card["complexity"] is None else f"{card['complexity']:.2f}"
    return (
        "| Complexity | Tokens (in + out) |\n"
        "|---|---|\n"
        f"| {complexity} | {tokens} |\n"
        "| **Estimated cost** | **Actual cost** |\n"
        f"| {usd(card['estimated_cost_usd'])} | {usd(card['cost_usd'])} |\n"
        "| **Latency** | **First token** |\n"
        f"| {ms(card['latency_ms'])} | {ms(card['ttft_ms'])} |"
    )


def routing_caption(card: Mapping[str, Any]) -> str:
    """The routing card's footnote: what added to the score, the cost basis, failover, cache, id."""
    kind = "GPU-time share" if card["amortized_cost_usd"] else "metered"
    lines = [f"**Score:** {breakdown_text(card['breakdown'])}", f"**Cost basis:** {kind}"]
    if card["failed_over"]:
        lines.append("**Failover path:** " + " → ".join(card["path"]))
    if card["cached"]:
        lines.append("**Served from the response cache**")
    lines.append(f"**Request id:** `{card['request_id']}`")
    return " · ".join(lines)


class Badge(NamedTuple):
    label: str
    icon: str
    color: str
    help: str | None = None


@dataclass(frozen=True)
class CardView:
    """What the playground shows under a reply, by its outcome.

    A served reply gets its routing as badges and its facts as a table; a refused request or
    an error says so, with the reason, and shows nothing as if a model had answered."""

    outcome: str  # a Status word
    badges: tuple[Badge, ...]
    message: str | None  # the refusal, the error or the interruption, in a sentence
    table: str | None  # the facts of a reply a model gave
    caption: str


def served_badges(card: Mapping[str, Any]) -> tuple[Badge, ...]:
    """Tier, endpoint, simulated, model and reason of a request a model answered."""
    out = [
        Badge(
            card["tier"] or "no tier",
            ":material/alt_route:",
            "violet" if card["tier"] == Tier.DEDICATED else "blue",
        ),
        Badge(card["endpoint"] or "—", ":material/dns:", "gray"),
    ]
    if card["simulated"]:
        out.append(
            Badge(
                "simulated",
                ":material/science:",
                "orange",
                "A built-in simulated endpoint answered: no network, no bill.",
            )
        )
    out.append(Badge(card["model"] or "—", ":material/neurology:", "gray"))
    policy = card.get("policy_reason")
    out.append(
        Badge(
            card["reason"] or "—",
            ":material/rule:",
            "green",
            f"The policy alone said '{policy}'." if policy else None,
        )
    )
    return tuple(out)


_REFUSED_BY = {
    Reason.BUDGET: "A budget reached its hard limit (action: block).",
    Reason.CAPABILITY: "No model that may take it can serve what the request needs.",
}


def card_view(card: Mapping[str, Any]) -> CardView:
    """The card of a finished request (a `views.routing_card` dict), by how it ended."""
    status, rid = card["status"], f"**Request id:** `{card['request_id']}`"
    if status == Status.REFUSED:
        reason = card.get("reason")
        label = f"refused · {reason}" if reason else "refused"
        badge = Badge(label, ":material/block:", "red", _REFUSED_BY.get(reason))
        caption = "Not sent to any model, so nothing was charged · recorded in the log · " + rid
        return CardView(Status.REFUSED, (badge,), error_message(card), None, caption)
    if status == Status.ERROR:
        parts = [f"**Tried:** {' → '.join(card['path'])}" if card["path"] else "No endpoint was reached"]
        parts.append(f"**Attempts:** {card['attempts']}")
        parts.append(f"**Time spent:** {ms(card['latency_ms'])}")
        if card["cost_usd"]:
            parts.append(f"**Cost:** {usd(card['cost_usd'])}")
        parts += ["recorded in the log with its error", rid]
        badge = Badge("error", ":material/error:", "red", "No model gave a reply.")
        return CardView(Status.ERROR, (badge,), error_message(card), None, " · ".join(parts))
    badges = served_badges(card)
    if status == Status.CANCELLED:
        stop = Badge("interrupted", ":material/stop_circle:", "orange", "The reply stopped before it ended.")
        return CardView(status, (stop, *badges), error_message(card), routing_table(card), routing_caption(card))
    return CardView(Status.OK, badges, None, routing_table(card), routing_caption(card))


def session_note(
    defaults: tuple[float, float],
    auto: str,
    tier: str,
    model: str,
    max_tokens: int | None,
    thresholds: tuple[float, float],
) -> str:
    """How the playground's session settings differ from the configuration's.

    `defaults` and `thresholds` are (complexity threshold, cost threshold in USD): the
    configuration's and the session's; `auto` is the word meaning "let the policy decide".
    """
    complexity, cost = thresholds
    parts = [
        f"tier forced to {tier}" if tier != auto else "",
        f"model forced to {model}" if model != auto else "",
        f"max_tokens {max_tokens}" if max_tokens is not None else "",
        f"complexity threshold {complexity:.2f}" if complexity != defaults[0] else "",
        f"cost threshold ${cost:.4f}" if cost != defaults[1] else "",
    ]
    return "Session settings differ from the configuration: " + ", ".join(x for x in parts if x) + "."


def record_sections(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    """A logged record as three bullet lists: decision inputs, decision, outcome."""
    inputs = (
        f"- prompt: {rec['prompt_chars']:,} characters (≈ {rec['est_prompt_tokens']:,} tokens)\n"
        f"- max_tokens: {rec['max_tokens']:,}\n"
        f"- messages: {rec['n_messages']}\n"
        f"- keywords: {', '.join(rec['keywords'] or []) or 'none'}"
    )
    sim = " (simulated)" if rec["simulated"] else ""
    decision = (
        f"- {rec['tier']} · {rec['endpoint']}{sim} · {rec['model']}\n"
        f"- reason: {rec['reason']} (policy: {rec['policy_reason']})\n"
        f"- complexity: {rec['complexity']:.2f}\n"
        f"- score: {breakdown_text(rec['breakdown'] or {})}\n"
        f"- estimated serverless cost: {usd(rec['estimated_cost_usd'])}"
    )
    outcome = (
        f"- status: **{rec['status']}**" + (f" ({rec['error_kind']})" if rec["error_kind"] else "") + "\n"
        f"- attempts: {rec['attempts']} · path: {' → '.join(rec['failover_path'] or []) or '—'}\n"
        f"- tokens: {_tokens(rec['prompt_tokens'], rec['completion_tokens'], rec['usage_estimated'])}\n"
        f"- cost: {usd(rec['cost_usd'])} (metered {usd(rec['metered_cost_usd'])}, "
        f"GPU share {usd(rec['amortized_cost_usd'])})\n"
        f"- latency: {ms(rec['latency_ms'])} · first token {ms(rec['ttft_ms'])}\n"
        f"- streamed: {'yes' if rec['streamed'] else 'no'} · cached: {'yes' if rec['cached'] else 'no'}"
    )
    return inputs, decision, outcome
