"""Who may call: API keys (Bearer tokens), each key's rate limit, and the body size limit."""

from __future__ import annotations

import math

from starlette.requests import Request

from sophia.config.apikeys import ApiKey, KeyRing, bearer
from sophia.config.server import ServerSettings
from sophia.server.errors import ApiError, too_big
from sophia.server.ratelimit import RateLimiter

_CHALLENGE = {"www-authenticate": "Bearer"}


class Access:
    """The keys and limits of one server process."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.api_keys)
        self.limiter = RateLimiter()

    def authenticate(self, request: Request) -> ApiKey | None:
        """The caller's key; None when no keys are configured (loopback only, checked at start-up)."""
        if not self.keys:
            return None
        token = bearer(request.headers.get("authorization"))
        if token is None:
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
                headers=_CHALLENGE,
            )
        key = self.keys.lookup(token)
        if key is None:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key", headers=_CHALLENGE)
        return key

    def probe_needs_key(self) -> ApiError:
        return ApiError(
            401,
            "A probe calls every endpoint: send an API key as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
            headers=_CHALLENGE,
        )

    def admit(self, request: Request) -> str | None:
        """Authenticate and apply the key's rate limit; the key's id, or None without keys."""
        key = self.authenticate(request)
        if key is None:
            return None
        limit = (
            key.rate_limit_per_minute if key.rate_limit_per_minute is not None else self.settings.rate_limit_per_minute
        )
        wait = self.limiter.take(key.id, limit)
        if wait > 0:
            raise ApiError(
                429,
                f"Rate limit reached for key {key.id!r}: {limit} requests a minute. Retry in {wait:.1f} s.",
                "requests",
                None,
                "rate_limit_exceeded",
                {
                    "retry-after": str(max(1, math.ceil(wait))),
                    "retry-after-ms": str(math.ceil(wait * 1000)),
                    "x-ratelimit-limit-requests": str(limit),
                    "x-ratelimit-remaining-requests": "0",
                },
            )
        return key.id

    async def read_body(self, request: Request) -> bytes:
        """The whole body, or a 413 as soon as it is known to be over server.max_body_bytes."""
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise too_big(limit)
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big(limit)
            parts.append(chunk)
        return b"".join(parts)
