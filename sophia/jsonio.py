"""JSON on the request path: orjson (several times faster than the standard library at both
ends of every proxied request), with the standard library behind it for what orjson refuses.

`dumps` gives compact UTF-8 bytes, as the OpenAI API sends them. Integers beyond 64 bits, which
orjson cannot encode, go through the standard library. `loads` raises ValueError on bad input;
callers that explain a parse error to a client re-read it with the standard library, whose
messages carry the position.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except TypeError:  # an integer beyond 64 bits, or a type orjson does not know
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)
