"""The reference deployment's chat response, shared by `sophia chat --json` and `POST /chat`."""

from __future__ import annotations

from datetime import UTC

from sophia.routing.router import Result


def timestamp(res: Result) -> str | None:
    """The request's time as ISO 8601 UTC with a Z."""
    return res.ts.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") if res.ts else None


def chat_response(res: Result, reason: str | None = None) -> dict:
    """`{"response": {...}, "routing": {...}, "timestamp": ...}` for a routed request."""
    return {
        "response": {
            "choices": [{"message": {"role": "assistant", "content": res.text}}],
            "usage": {
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "total_tokens": res.prompt_tokens + res.completion_tokens,
                "estimated": res.usage_estimated,
            },
        },
        "routing": {
            "endpoint": res.tier,
            "server": res.endpoint,
            "model": res.model,
            "cost": res.cost_usd,
            "reason": reason or res.reason,
            "complexity": res.decision.complexity if res.decision else None,
            "latency_ms": round(res.latency_ms, 1),
            "failover_path": res.path,
            "simulated": res.simulated,
            "status": res.status,
        },
        "timestamp": timestamp(res),
        "request_id": res.request_id,
    }
