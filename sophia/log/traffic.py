"""A selection of the log read as columns, for replay and tuning: one scan, numpy out.

What the policy needs (features, the keywords each record had), what costs are made of
(tokens), what replay compares with (the recorded tier, whether the reason was runtime-only)
and, for labelled evaluation records, each model's correctness. Every value is bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import pandas as pd

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
    columns = cur.execute(sql, [Tier.DEDICATED, *RUNTIME_REASONS, endpoints, *words, *params]).fetchnumpy()
    return words, columns, labels, endpoints
