"""Markdown for the playground's routing card, the request log's record and the session note.

Streamlit-free: the pages pass these strings to `st.markdown` / `st.caption` / `st.info`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sophia.ui.appstate import breakdown_text, ms, usd


def _tokens(prompt: int, completion: int, estimated: bool) -> str:
    return f"{prompt:,} + {completion:,}" + (" (estimated)" if estimated else "")


def routing_table(card: Mapping[str, Any]) -> str:
    """The routing card's one-row table: complexity, costs, tokens and timings."""
    tokens = _tokens(card["prompt_tokens"], card["completion_tokens"], card["usage_estimated"])
    complexity = "—" if card["complexity"] is None else f"{card['complexity']:.2f}"
    return (
        "| Complexity | Estimated cost | Actual cost | Tokens (in + out) | Latency | First token |\n"
        "|---|---|---|---|---|---|\n"
        f"| {complexity} | {usd(card['estimated_cost_usd'])} | {usd(card['cost_usd'])} "
        f"| {tokens} | {ms(card['latency_ms'])} | {ms(card['ttft_ms'])} |"
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
