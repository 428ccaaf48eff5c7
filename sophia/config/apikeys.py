"""API keys of `sophia serve`: minted once, shown once, stored only as SHA-256 hashes.

The configuration holds `api_keys = [{ id = "team-a", sha256 = "<hex>" }]`; a request presents
the key as `Authorization: Bearer <key>` and is recorded with the key's id, never the key. Keys
are 256 random bits, so an unsalted hash is safe to store (it is not a password hash).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sophia.config.checks import ConfigError, check_keys, fail, integer, text

PREFIX = "sk-sophia-"
_HEX64 = re.compile(r"[0-9a-f]{64}")
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}")


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str
    rate_limit_per_minute: int | None = None  # None: the server-wide setting


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def parse(raw: object, prefix: str = "server.") -> tuple[ApiKey, ...]:
    """Validate the `api_keys` list of the [server] table."""
    key = prefix + "api_keys"
    if not isinstance(raw, list):
        raise fail(key, raw, 'a list of { id = "name", sha256 = "<hex of sha256(key)>" } tables')
    out: list[ApiKey] = []
    for i, t in enumerate(raw):
        p = f"{key}[{i}]."
        if not isinstance(t, dict):
            raise fail(f"{key}[{i}]", t, '{ id = "name", sha256 = "<hex>" }')
        if "key" in t or "api_key" in t:
            raise ConfigError(
                f'{p}key must not be written in the file: store sha256 = "<hex>" '
                "(python -m sophia.apikeys NAME prints it)"
            )
        check_keys(t, {"id", "sha256", "rate_limit_per_minute"}, p)
        kid = text(t, "id", p, None)
        if kid is None:
            raise ConfigError(f'{p}id is missing: name the key, e.g. id = "team-a"')
        if not KEY_ID.fullmatch(kid):
            raise fail(p + "id", kid, "1-64 letters, digits or . _ @ : - (starting with a letter or digit)")
        digest = text(t, "sha256", p, None)
        if digest is None:
            raise ConfigError(f"{p}sha256 is missing: python -m sophia.apikeys {kid} prints a key and its hash")
        digest = digest.lower()
        if not _HEX64.fullmatch(digest):
            raise fail(p + "sha256", t["sha256"], "64 hexadecimal digits (the SHA-256 of the key)")
        limit = integer(t, "rate_limit_per_minute", p, None, 0, 10_000_000) if "rate_limit_per_minute" in t else None
        out.append(ApiKey(kid, digest, limit))
    ids = [k.id for k in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise fail(key + ".id", dupes[0], "distinct key ids")
    hashes = [k.sha256 for k in out]
    if len(set(hashes)) != len(hashes):
        raise fail(key + ".sha256", next(h for h in hashes if hashes.count(h) > 1), "a different hash for each key")
    return tuple(out)


class KeyRing:
    """Looks a presented key up by its hash. Comparing digests reveals nothing about a key."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_hash = {k.sha256: k for k in keys}

    def __bool__(self) -> bool:
        return bool(self._by_hash)

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, presented: str) -> ApiKey | None:
        return self._by_hash.get(hash_key(presented))


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None
