"""Every view of a routed request's `Result`, derived from one set of routing facts.

- `chat_response`: the reference deployment's `POST /chat` body and `sophia chat --json`;
- `completion`, `usage`, `sophia_extension`, `finish_reason`: the OpenAI chat.completion body
  (and the final chunk of a stream) with Sophia's extension object;
- `routing_headers`, `result_headers`: the x-request-id and x-sophia-* response headers;
- `routing_card`: what the playground shows under a reply.

Each reads the tier, endpoint, model, reason, complexity, cost and latency from `routing(res)`,
so a fact is derived once, the same way for all of them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC
from typing import NamedTuple
from urllib.parse import quote

from sophia.config import Config
from sophia.routing.result import Result
from sophia.vocab import Reason

# --- the routing facts ---------------------------------------------------------------------


_SETTLED = frozenset((Reason.CACHE, Reason.FAILOVER))  # reasons a failover does not replace


def live_reason(res: Result) -> str | None:
    """The reason, already `failover` while a stream that failed over is still running.

    The router sets `failover` when the request ends; a stream's headers need it at the first
    text. For a finished request this is `res.reason`.
    """
    d = res.decision
    if res.reason not in _SETTLED and res.path and d is not None and d.chain and res.path[-1] != d.chain[0][0]:
        return Reason.FAILOVER
    return res.reason


class Routing(NamedTuple):
    """What every view shows of where a request went and what it cost (a tuple: cheap to build)."""

    request_id: str
    status: str
    tier: str | None
    endpoint: str | None
    model: str | None
    reason: str | None
    complexity: float | None
    cost_usd: float
    latency_ms: float
    simulated: bool
    path: list[str]
    attempts: int


def routing(res: Result) -> Routing:
    """The routing facts of a request (finished, or a stream at its first text)."""
    d = res.decision
    return Routing(
        res.request_id,
        res.status,
        res.tier,
        res.endpoint,
        res.model,
        live_reason(res),
        d.complexity if d else None,
        res.cost_usd,
        res.latency_ms,
        res.simulated,
        list(res.path),
        res.attempts,
    )


def timestamp(res: Result) -> str | None:
    """The request's time as ISO 8601 UTC with a Z."""
    return res.ts.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") if res.ts else None


def _tokens(res: Result) -> dict:
    return {
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "total_tokens": res.prompt_tokens + res.completion_tokens,
    }


# --- the reference response (POST /chat, sophia chat --json) ---------------------------------


def chat_response(res: Result) -> dict:
    """`{"response": {...}, "routing": {...}, "timestamp": ...}` for a routed request."""
    r = routing(res)
    return {
        "response": {
            "choices": [{"message": {"role": "assistant", "content": res.text}}],
            "usage": {**_tokens(res), "estimated": res.usage_estimated},
        },
        "routing": {
            "endpoint": r.tier,  # the reference deployment's names: endpoint = tier, server = endpoint
            "server": r.endpoint,
            "model": r.model,
            "cost": r.cost_usd,
            "reason": r.reason,
            "complexity": r.complexity,
            "latency_ms": round(r.latency_ms, 1),
            "failover_path": r.path,
            "simulated": r.simulated,
            "status": r.status,
        },
        "timestamp": timestamp(res),
        "request_id": r.request_id,
    }


# --- the OpenAI completion body ------------------------------------------------------------


def api_routing(r: Routing) -> dict:
    """The routing part of the `sophia` extension object of an API response."""
    return {
        "request_id": r.request_id,
        "tier": r.tier,
        "endpoint": r.endpoint,
        "model": r.model,
        "reason": r.reason,
        "complexity": r.complexity,
        "simulated": r.simulated,
        "failover_path": r.path,
        "attempts": r.attempts,
    }


def sophia_extension(res: Result, r: Routing | None = None) -> dict:
    """Routing and cost, as an extension object of each response (ignored by OpenAI clients)."""
    r = r or routing(res)
    return {
        **api_routing(r),
        "cost_usd": r.cost_usd,
        "metered_cost_usd": res.metered_cost_usd,
        "amortized_cost_usd": res.amortized_cost_usd,
        "usage_estimated": res.usage_estimated,
        "latency_ms": round(r.latency_ms, 1),
        "status": r.status,
    }


def usage(res: Result) -> dict:
    """The OpenAI usage object: the upstream's as sent (cached and reasoning token details too),
    with the counts Sophia billed and the request's cost."""
    details = res.usage_details if res.usage_details is not None and not res.usage_estimated else {}
    return {**details, **_tokens(res), "cost_usd": res.cost_usd, "estimated": res.usage_estimated}


def finish_reason(res: Result, max_tokens: int | None) -> str:
    """The upstream's finish reason; when it gave none, `length` if the reply used every token it
    was allowed (as reported), else `stop`."""
    if res.finish_reason is not None:
        return res.finish_reason
    limit = max_tokens or (res.decision.features.max_tokens if res.decision else None)
    return "length" if limit and not res.usage_estimated and res.completion_tokens >= limit else "stop"


def choices(res: Result, max_tokens: int | None) -> list:
    """The reply's choices as the upstream sent them (one text choice for a reply without them)."""
    if res.choices:
        return res.choices
    return [
        {
            "index": 0,
            "message": {"role": "assistant", "content": res.text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason(res, max_tokens),
        }
    ]


def completion(res: Result, max_tokens: int | None, r: Routing | None = None) -> dict:
    """The chat.completion body of a request that succeeded (`r`: its routing, if already derived)."""
    return {
        "id": f"chatcmpl-{res.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": res.model,
        "system_fingerprint": res.fingerprint,
        "choices": choices(res, max_tokens),
        "usage": usage(res),
        "sophia": sophia_extension(res, r),
    }


def embeddings(res: Result, out) -> dict:
    """The OpenAI embeddings list (the upstream's data as sent), with usage, cost and routing."""
    return {
        "object": "list",
        "data": list(out.data),
        "model": res.model,
        "usage": {
            "prompt_tokens": res.prompt_tokens,
            "total_tokens": res.prompt_tokens,
            "cost_usd": res.cost_usd,
            "estimated": res.usage_estimated,
        },
        "sophia": sophia_extension(res),
    }


# --- response headers --------------------------------------------------------------------

_SAFE_HEADER = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
IGNORED_HEADER_MAX = 512


def header_value(value: object) -> str:
    """A header value: printable ASCII as is, anything else percent-encoded."""
    s = str(value)
    return s if _SAFE_HEADER.fullmatch(s) else quote(s, safe="")


def routing_headers(r: Routing) -> dict[str, str]:
    """x-request-id and the routing headers, known from a stream's first text."""
    h = {"x-request-id": r.request_id}
    for key, value in (("tier", r.tier), ("endpoint", r.endpoint), ("model", r.model), ("reason", r.reason)):
        if value is not None:
            h[f"x-sophia-{key}"] = header_value(value)
    if r.complexity is not None:
        h["x-sophia-complexity"] = f"{r.complexity:.4f}".rstrip("0").rstrip(".") or "0"
    if r.simulated:
        h["x-sophia-simulated"] = "true"
    return h


def dropped_params(body: Mapping | None, cfg: Config, endpoint: str | None) -> tuple[str, ...]:
    """The fields of `body` that `endpoint` is configured not to accept (and so did not get)."""
    if body is None or endpoint is None:
        return ()
    try:
        drop = cfg.endpoint(endpoint).drop_params
    except KeyError:
        return ()
    return tuple(k for k in drop if k in body)


def ignored_header(ignored: tuple[str, ...]) -> str:
    """The x-sophia-ignored-params value: fields the endpoint is configured not to accept."""
    return ",".join(ignored)[:IGNORED_HEADER_MAX]


def result_headers(res: Result, ignored: tuple[str, ...] = (), r: Routing | None = None) -> dict[str, str]:
    """Every x-sophia-* header of a finished request, with its cost and latency."""
    r = r or routing(res)
    h = routing_headers(r)
    h["x-sophia-cost-usd"] = f"{r.cost_usd:.9f}"
    h["x-sophia-latency-ms"] = f"{r.latency_ms:.1f}"
    if res.usage_estimated:
        h["x-sophia-usage-estimated"] = "true"
    if ignored:
        h["x-sophia-ignored-params"] = ignored_header(ignored)
    return h


# --- the playground's routing card -----------------------------------------------------------


def routing_card(res: Result, cfg: Config) -> dict:
    """What the playground shows under a reply: plain data, stored with the turn."""
    r = routing(res)
    d = res.decision
    simulated = {e.name for e in cfg.endpoints if e.simulated}
    return {
        "request_id": r.request_id,
        "status": r.status,
        "tier": r.tier,
        "endpoint": r.endpoint,
        "model": r.model,
        "reason": r.reason,
        "policy_reason": d.policy_reason if d else None,
        "simulated": bool(r.simulated or (r.endpoint in simulated)),
        "complexity": r.complexity,
        "breakdown": dict(d.breakdown) if d else {},
        "estimated_cost_usd": d.estimated_cost_usd if d else None,
        "cost_usd": r.cost_usd,
        "metered_cost_usd": res.metered_cost_usd,
        "amortized_cost_usd": res.amortized_cost_usd,
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "usage_estimated": res.usage_estimated,
        "latency_ms": r.latency_ms,
        "ttft_ms": res.ttft_ms,
        "path": r.path,
        "simulated_path": [p for p in r.path if p in simulated],
        "failed_over": len(r.path) > 1,
        "attempts": r.attempts,
        "cached": res.cached,
        "error": res.error,
    }
