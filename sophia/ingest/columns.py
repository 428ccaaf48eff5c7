"""The canonical columns every format's reader produces, and the checks of token and time columns.

A check marks its bad rows in the shared `bad` mask (in place) and reports each once, so
a row is reported for its first bad column only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sophia.ingest.readers import Problems

MAX_TOKENS_PER_ROW = 10_000_000  # token counts above this are not plausible


@dataclass
class Parsed:
    """A file's rows as columns; rows marked in `bad` are reported and left out."""

    lines: np.ndarray
    ts: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    bad: np.ndarray
    texts: list | None = None
    max_tokens: np.ndarray | None = None
    latency_ms: np.ndarray | None = None
    models: np.ndarray | None = None  # model the traffic named (informational)
    labels: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def series(raw) -> pd.Series:
    return raw.to_pandas().astype(object) if isinstance(raw, pa.ChunkedArray) else raw


def tokens(raw, name: str, lines: np.ndarray, bad: np.ndarray, problems: Problems) -> np.ndarray:
    if isinstance(raw, pa.ChunkedArray):
        try:  # the common case, all plain integers, at Arrow speed
            fast = pc.cast(raw, pa.int64()).to_numpy()
            if (fast >= 0).all() and (fast <= MAX_TOKENS_PER_ROW).all():
                return fast
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raw = series(raw)
    num = pd.to_numeric(raw, errors="coerce")
    invalid = num.isna() | (num < 0) | (num % 1 != 0) | (num > MAX_TOKENS_PER_ROW)
    for ln, v in zip(lines[invalid.to_numpy() & ~bad], raw[invalid & ~bad], strict=True):
        problems.append((int(ln), f"{name} {str(v)[:40]!r} is not a whole number of tokens >= 0"))
    bad |= invalid.to_numpy()
    return num.fillna(0).to_numpy(dtype=np.int64)


def times(
    raw, unit: str, start: datetime | None, lines: np.ndarray, bad: np.ndarray, problems: Problems, name: str
) -> np.ndarray:
    """ISO times, or numeric offsets in `unit` from `start` (default: ending now)."""
    num = _arrow_numbers(raw) if unit != "iso" else None
    raw = series(raw)
    if unit == "iso":
        ts = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
        invalid = ts.isna().to_numpy()
        what = "an ISO 8601 time"
    else:
        num = pd.to_numeric(raw, errors="coerce") if num is None else num
        ts, invalid = _offsets(num, unit, start)
        what = f"a number of {unit} from 0 to a century"
    for ln, v in zip(lines[invalid & ~bad], raw[invalid & ~bad], strict=True):
        problems.append((int(ln), f"{name} {str(v)[:40]!r} is not {what}"))
    bad |= invalid
    return ts.to_numpy(dtype="datetime64[us]")


def _arrow_numbers(raw) -> pd.Series | None:
    if not isinstance(raw, pa.ChunkedArray):
        return None
    try:
        return pd.Series(pc.cast(raw, pa.float64()).to_numpy())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _offsets(num: pd.Series, unit: str, start: datetime | None) -> tuple[pd.Series, np.ndarray]:
    scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    # offsets beyond a century are not a trace's times (and would overflow)
    invalid = (num.isna() | (num < 0) | (num * scale > 100 * 365.25 * 86_400e6)).to_numpy()
    offs = (num.where(~invalid, 0).to_numpy(dtype=np.float64) * scale).astype(np.int64)
    ok = offs[~invalid]
    span = int(ok.max() - ok.min()) if ok.size else 0
    base = start or (datetime.now(UTC).replace(tzinfo=None) - timedelta(microseconds=span))
    first = int(ok.min()) if ok.size else 0
    return pd.Series(np.datetime64(base, "us") + (offs - first).astype("timedelta64[us]")), invalid
