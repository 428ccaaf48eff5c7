"""A selection of the log read as columns, for replay and tuning: one scan, numpy out.

What the policy needs (features, the keywords each record had), what costs are made of
(tokens), what replay compares with (the recorded tier, whether the reason was runtime-only)
and, for labelled evaluation records, each model's correctness. Every value is bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from sophia.log.filters import where
from sophia.vocab import RUNTIME_REASONS, Tier


def keywords(cur: duckdb.DuckDBPyConnection, clause: str, params: list) -> list[str]:
    """The distinct keywords found in the selected records, sorted."""
    sql = f"SELECT DISTINCT unnest(keywords) FROM requests WHERE {clause} ORDER BY 1"
    return [r[0] for r in cur.execute(sql, params).fetchall()]


def read(
    cur: duckdb.DuckDBPyConnection,
    sources: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[list[str], dict, pd.DataFrame, list[str]]:
    """(keywords, columns, labels, endpoints) of the selection, in the log's own order (DuckDB
    keeps insertion order: the same file reads the same way every time). Not sorted: a sort of
    ten million rows cost more than the scan, and what needs time order sorts itself.

    Columns are numpy arrays with no nulls (missing counts are 0, a missing latency NaN): `w{i}`
    flags (record i's keywords contain keywords[i]) and `ep`, the recorded endpoint as a 1-based
    position in `endpoints` (0: none). Strings are never fetched row by row: at ten million rows
    the request ids and endpoint names alone took most of the time and gigabytes of memory.
    Request ids come only with labels, to match them: labels has one row per labelled request
    and model (request_id, model, correct, tok: -1 unknown), and columns a `request_id`.
    """
    clause, params = where(sources, start, end, chat_only=True)
    words = keywords(cur, clause, params)
    endpoints = [
        r[0]
        for r in cur.execute(
            f"SELECT DISTINCT endpoint FROM requests WHERE {clause} AND endpoint IS NOT NULL ORDER BY 1", params
        ).fetchall()
    ]
    labels = cur.execute(
        f"""SELECT l.request_id, l.model, l.correct, coalesce(l.completion_tokens, -1) AS tok
            FROM request_labels l JOIN requests USING (request_id) WHERE {clause}""",
        params,
    ).df()
    flags = "".join(f", list_contains(keywords, ?) AS w{i}" for i in range(len(words)))
    marks = ", ".join("?" for _ in RUNTIME_REASONS)
    rid = ", request_id" if len(labels) else ""
    sql = f"""SELECT ts, coalesce(prompt_chars, 0) AS prompt_chars, coalesce(est_prompt_tokens, 0) AS est_prompt_tokens,
                     coalesce(max_tokens, 0) AS max_tokens, coalesce(prompt_tokens, 0) AS pt,
                     coalesce(completion_tokens, 0) AS ct, coalesce(latency_ms, 'NaN'::DOUBLE) AS latency_ms,
                     coalesce(tier = ?, false) AS ded, coalesce(reason IN ({marks}), false) AS rt,
                     coalesce(policy_version, -1) AS pv,
                     coalesce(list_position(?::VARCHAR[], endpoint), 0)::SMALLINT AS ep{rid} {flags}
              FROM requests WHERE {clause}"""
    n = cur.execute(f"SELECT count(*) FROM requests WHERE {clause}", params).fetchall()[0][0]
    # Streamed a batch at a time into arrays of the final size: a materialized result would be
    # held twice at the peak (by DuckDB and in numpy), a gigabyte at ten million rows.
    rel = cur.sql(sql, params=[Tier.DEDICATED, *RUNTIME_REASONS, endpoints, *words, *params])
    return words, _filled(rel.to_arrow_reader(BATCH_ROWS), n), labels, endpoints


BATCH_ROWS = 1 << 20


def _filled(reader, n: int) -> dict[str, np.ndarray]:
    """A reader's columns as numpy arrays of `n` rows, filled batch by batch."""
    out = {f.name: np.empty(n, dtype=_dtype(f.type)) for f in reader.schema}
    at = 0
    for batch in reader:
        k = min(batch.num_rows, n - at)  # the log may have grown since it was counted
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            out[name][at : at + k] = col.to_numpy(zero_copy_only=False)[:k]
        at += k
    return {name: a[:at] for name, a in out.items()}


def _dtype(t) -> np.dtype:
    if pa.types.is_timestamp(t):
        return np.dtype(f"datetime64[{t.unit}]")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.dtype(object)
    return np.dtype(t.to_pandas_dtype())
