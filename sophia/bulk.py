"""Whole tables of records at once: the bulk path shared by demo traffic and imports."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from . import policy, schema
from .config import Config
from .db import Database


def group_counts(keywords: list, cfg: Config) -> dict[str, np.ndarray]:
    return policy.group_counts_from_keywords(keywords, cfg.scorer)


def breakdowns(chars, max_tokens, counts: Mapping[str, np.ndarray], cfg: Config) -> list[str]:
    """The score breakdown of every row as JSON, encoding each distinct breakdown once."""
    n = len(chars)
    _, parts = policy.score(np.asarray(chars), np.asarray(max_tokens), counts, cfg.scorer)
    names = list(parts)
    arr = np.stack([np.broadcast_to(parts[k], (n,)) for k in names], axis=1)
    seen: dict[tuple, str] = {}
    out = []
    for row in map(tuple, arr):
        s = seen.get(row)
        if s is None:
            s = seen[row] = json.dumps({k: int(v) / policy.BP for k, v in zip(names, row, strict=True)})
        out.append(s)
    return out


def to_table(columns: Mapping[str, object], n: int) -> pa.Table:
    """Columns (arrays or lists) in schema order; a missing column is all null."""
    arrays = []
    for name, _, typ in schema.COLUMNS:
        v = columns.get(name)
        arrays.append(pa.nulls(n, typ) if v is None else pa.array(v, type=typ))
    return pa.Table.from_arrays(arrays, schema=schema.ARROW_SCHEMA)


def append(cur, table: pa.Table) -> int:
    """Append a whole table in one statement (the caller holds the database)."""
    cur.register("_bulk", table)
    try:
        cur.execute("INSERT INTO requests BY NAME SELECT * FROM _bulk")
    finally:
        cur.unregister("_bulk")
    return table.num_rows


def write(db: Database, table: pa.Table) -> int:
    with db.cursor() as cur:
        return append(cur, table)
