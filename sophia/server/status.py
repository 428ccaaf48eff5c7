"""The reading endpoints' bodies: GET /v1/models, /health and /stats."""

from __future__ import annotations

from datetime import UTC, datetime

from sophia.config import Config
from sophia.config.server import ServerSettings
from sophia.log import stats
from sophia.log.db import DatabaseBusy, DatabaseError
from sophia.runtime import Runtime
from sophia.server.errors import ApiError

# What a key holder sees of each endpoint's health beyond its state.
_HEALTH_DETAIL = (
    "consecutive_failures",
    "cooldown_remaining_s",
    "successes",
    "failures",
    "last_latency_ms",
    "last_error",
)


def models(settings: ServerSettings, cfg: Config) -> list[dict]:
    """What can be asked for: the aliases, then every configured model (once, at its first endpoint)."""
    out = [
        {
            "id": a,
            "object": "model",
            "created": 0,
            "owned_by": "sophia",
            "description": "Sophia routes each request to the tier and model its policy chooses",
        }
        for a in settings.aliases
    ]
    seen: set[str] = set()
    for e in cfg.endpoints:
        for m in e.models:
            if m not in seen:
                seen.add(m)
                out.append(
                    {
                        "id": m,
                        "object": "model",
                        "created": 0,
                        "owned_by": f"sophia:{e.tier}",
                        "tier": e.tier,
                        "endpoint": e.name,
                        "simulated": e.simulated,
                        "capabilities": list(cfg.capabilities(e, m)),
                    }
                )
    return out


def health(cfg: Config, snap: dict, checked: dict[str, bool] | None, detail: bool) -> tuple[dict, bool]:
    """(body, whether some tier can serve); `checked` holds the results of a probe, if one ran."""
    endpoints, tiers = {}, {}
    for e in cfg.endpoints:
        s = snap[e.name]
        up = checked[e.name] if checked is not None else s["state"] != "cooling-down"
        info = {"tier": e.tier, "state": s["state"], "available": up, "simulated": e.simulated}
        if checked is not None:
            info["probe"] = "ok" if checked[e.name] else "failed"
        if detail:
            info.update({k: s[k] for k in _HEALTH_DETAIL})
        endpoints[e.name] = info
        t = tiers.setdefault(e.tier, {"available": False, "endpoints": []})
        t["endpoints"].append(e.name)
        t["available"] = t["available"] or up
    serving = any(t["available"] for t in tiers.values())
    degraded = any(not i["available"] or i["state"] != "healthy" for i in endpoints.values())
    body = {
        "status": ("degraded" if degraded else "ok") if serving else "down",
        "tiers": tiers,
        "endpoints": endpoints,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    return body, serving


def stats_body(rt: Runtime, sources: list[str] | None) -> dict:
    """The log's routing statistics, with the API's traffic by key (runs on a routing thread)."""
    try:
        with rt.reader(wait_s=10.0) as cur:
            data = stats.stats(cur, rt.cfg, sources)
            rows = stats.by_api_key(cur, sources)
    except (DatabaseBusy, DatabaseError) as e:
        raise ApiError(
            503,
            f"The request log is not available right now: {e}",
            "server_error",
            None,
            "database_busy",
            {"retry-after": "1"},
        ) from None
    data["cost_savings"] = data.get("cost_savings_usd")  # the reference deployment's name
    data["sources"] = sources
    data["by_api_key"] = [
        {"api_key_id": k, "requests": n, "cost_usd": round(c, 6), "serverless_requests": s, "dedicated_requests": d}
        for k, n, c, s, d in rows
    ]
    return data
