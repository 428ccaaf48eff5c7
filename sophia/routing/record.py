"""One routed request as a row of the log: the only place a record is built from a result."""

from __future__ import annotations

import json

from sophia.config import Config
from sophia.config.privacy import stored_text
from sophia.routing import features as feats
from sophia.routing.policy import Decision
from sophia.routing.result import ChatRequest, Result


def log_record(req: ChatRequest, cfg: Config, d: Decision, res: Result, instance: str) -> dict:
    """The log row of a finished request: its decision's inputs, its outcome, who sent it."""
    f = d.features
    prompt = None
    if cfg.store_prompts != "off":
        prompt = stored_text(feats.prompt_text(req.messages), cfg.store_prompts)
    return {
        "request_id": res.request_id,
        "ts": res.ts,
        "source": req.source,
        "policy_version": res.policy_version,
        "prompt_chars": f.prompt_chars,
        "est_prompt_tokens": f.est_prompt_tokens,
        "max_tokens": f.max_tokens,
        "n_messages": f.n_messages,
        "keywords": list(f.keywords),
        "tier": res.tier,
        "endpoint": res.endpoint,
        "model": res.model,
        "complexity": d.complexity,
        "breakdown": json.dumps(d.breakdown),
        "estimated_cost_usd": d.estimated_cost_usd,
        "reason": res.reason,
        "policy_reason": d.policy_reason,
        "status": res.status,
        "error_kind": res.error_kind,
        "error": res.error,
        "failover_cause": res.failover_cause,
        "usage_anomaly": res.usage_anomaly,
        "attempts": res.attempts,
        "failover_path": res.path,
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "usage_estimated": res.usage_estimated,
        "metered_cost_usd": res.metered_cost_usd,
        "amortized_cost_usd": res.amortized_cost_usd,
        "latency_ms": res.latency_ms,
        "ttft_ms": res.ttft_ms,
        "streamed": res.streamed,
        "cached": res.cached,
        "simulated": res.simulated,
        "api_key_id": req.api_key_id,
        "prompt_text": prompt,
        "response_text": stored_text(res.text, cfg.store_prompts),
        "instance": instance,
        "operation": res.operation,
        "finish_reason": res.finish_reason,
        "tool_calls": res.tool_calls,
        "choices": len(res.choices) if res.choices else (res.traits.choices if res.ok else None),
        "uses_tools": res.traits.uses_tools,
        "response_format": res.traits.response_format,
        "images": res.traits.images,
        "cached_prompt_tokens": res.cached_prompt_tokens,
        "reasoning_tokens": res.reasoning_tokens,
    }
