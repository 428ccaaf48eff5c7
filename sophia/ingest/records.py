"""Whole tables of records at once: the bulk path shared by demo traffic and imports."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from sophia.config import Config
from sophia.log import append as log_append
from sophia.log import schema
from sophia.log.db import Database
from sophia.routing import policy


def group_counts(keywords: list, cfg: Config) -> dict[str, np.ndarray]:
    return policy.group_counts_from_keywords(keywords, cfg.scorer)


def breakdowns(chars, max_tokens, counts: Mapping[str, np.ndarray], cfg: Config) -> pa.Array:
    """The score breakdown of every row as JSON, encoding each distinct breakdown once."""
    n = len(chars)
    _, parts = policy.score(np.asarray(chars), np.asarray(max_tokens), counts, cfg.scorer)
    names = list(parts)
    cols = [np.broadcast_to(np.asarray(parts[k]), (n,)) for k in names]
    # One small integer per distinct combination of parts (few: bands x keyword counts x 2).
    key = np.zeros(n, dtype=np.int64)
    for c in cols:
        codes, uniq = pd.factorize(c)
        key = key * len(uniq) + codes
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    texts = [json.dumps({k: int(c[i]) / policy.BP for k, c in zip(names, cols, strict=True)}) for i in first]
    return pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), pa.array(texts)).cast(pa.string())


def constant(value, n: int, typ: pa.DataType) -> pa.Array:
    """A column holding one value n times, built without a Python list of n items."""
    return pa.repeat(pa.scalar(value, typ), n)


def empty_lists(n: int) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))


def to_table(columns: Mapping[str, object], n: int) -> pa.Table:
    """Columns (arrays or lists) in schema order; a missing column is all null."""
    arrays = []
    for name, _, typ in schema.COLUMNS:
        v = columns.get(name)
        if v is None:
            arrays.append(pa.nulls(n, typ))
        elif isinstance(v, pa.Array):
            arrays.append(v if v.type == typ else v.cast(typ))
        else:
            arrays.append(pa.array(v, type=typ))
    return pa.Table.from_arrays(arrays, schema=schema.ARROW_SCHEMA)


def write(db: Database, table: pa.Table) -> int:
    """Append a whole table through the log's one append path, holding the database for the
    one statement; request ids already logged are skipped. Returns the rows added."""
    with db.cursor() as cur:
        return log_append.append(cur, table)
