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
) -> tuple[list[str], dict, pd.DataFrame]:
    """(keywords, columns, labels) of the selection in (ts, request_id) order.

    Columns hold `w{i}` flags (record i's keywords contain keywords[i]); labels has one row
    per labelled request and model: request_id, model, correct, tok (-1 unknown).
    """
    clause, params = where(sources, start, end, chat_only=True)
    words = keywords(cur, clause, params)
    flags = "".join(f", list_contains(keywords, ?) AS w{i}" for i in range(len(words)))
    marks = ", ".join("?" for _ in RUNTIME_REASONS)
    sql = f"""SELECT ts, prompt_chars, est_prompt_tokens, max_tokens, coalesce(prompt_tokens, 0) AS pt,
                     coalesce(completion_tokens, 0) AS ct, latency_ms, tier = ? AS ded,
                     reason IN ({marks}) AS rt,
                     coalesce(policy_version, -1) AS pv, endpoint, request_id {flags}
              FROM requests WHERE {clause} ORDER BY ts, request_id"""
    columns = cur.execute(sql, [Tier.DEDICATED, *RUNTIME_REASONS, *words, *params]).fetchnumpy()
    labels = cur.execute(
        f"""SELECT l.request_id, l.model, l.correct, coalesce(l.completion_tokens, -1) AS tok
            FROM request_labels l JOIN requests USING (request_id) WHERE {clause}""",
        params,
    ).df()
    return words, columns, labels
