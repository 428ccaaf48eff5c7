"""CSV export of a selection of the request log, built batch by batch.

`csv_chunks` reads the selection through a DuckDB record-batch reader and yields the CSV a
batch at a time, so memory stays bounded by the batch size however many rows are selected.
Rows come newest first, in the Request log table's order (`ORDER`). Numbers are written as
people read them: costs in USD with 9 decimals (the log's 1e-9 USD precision, never in exponent
notation, so sums come out exact), latencies to 0.1 ms, the complexity score to 6 decimals,
tokens as whole numbers.

Each text cell that a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`,
a tab or a carriage return) is prefixed with a single quote, which makes it inert. No column
carries a secret: the caller's key id is not exported, and any configured API key value that
happens to appear in a text cell (a pasted prompt, an error message) is replaced.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sophia.config import Config
from sophia.log import schema
from sophia.log.filters import Filters

EXCLUDED = ("api_key_id",)  # names who called; not for files that travel
COLUMNS: tuple[str, ...] = tuple(n for n in schema.NAMES if n not in EXCLUDED)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_RE = r"^([=+@\t\r-])"
SECRET_MASK = "[secret]"
BOM = "\ufeff".encode()
BATCH_ROWS = 20_000
# The Request log table's order (`analytics.page`): newest first, ties by id.
ORDER = "ts DESC, request_id"
COST_COLUMNS = ("estimated_cost_usd", "metered_cost_usd", "amortized_cost_usd")  # 9 decimals, as text
ROUNDED = {"latency_ms": 1, "ttft_ms": 1, "complexity": 6}  # decimals kept


def neutralize(value: str | None) -> str | None:
    """One cell made inert for spreadsheets (the same rule `csv_chunks` applies in bulk)."""
    if value and value.startswith(FORMULA_START):
        return "'" + value
    return value


def inert_frame(df):
    """A copy of a DataFrame whose text cells are made inert like the CSV's: the table's own
    download (the grid's toolbar) then cannot carry a live formula either."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = df.copy()
    for col in out.columns:
        if is_object_dtype(out[col].dtype) or is_string_dtype(out[col].dtype):
            out[col] = out[col].map(lambda v: neutralize(v) if isinstance(v, str) else v)
    return out


def frame_csv(df, float_format: str | None = None) -> str:
    """The one CSV writer for a DataFrame: every text cell inert, one line ending, no index."""
    buf = io.StringIO()
    inert_frame(df).to_csv(buf, index=False, float_format=float_format, lineterminator="\n")
    return buf.getvalue()


def secret_values(cfg: Config, secrets: dict | None = None) -> list[str]:
    """The values of every configured API key (environment or Streamlit secrets)."""
    out = []
    for e in cfg.endpoints:
        if not e.api_key_env:
            continue
        v = os.environ.get(e.api_key_env) or (secrets or {}).get(e.api_key_env)
        if isinstance(v, str) and len(v) >= 4:
            out.append(v)
    return out


def select_sql(f: Filters) -> tuple[str, list]:
    """The export query: every exported column as text-friendly values, newest first.

    DuckDB sorts out of core (it spills to its temporary directory past its memory limit),
    and the sorted result still reaches `csv_chunks` batch by batch.
    """
    exprs = []
    for name, typ, _ in schema.COLUMNS:
        if name in EXCLUDED:
            continue
        if typ == "TIMESTAMP":
            exprs.append(f"strftime({name}, '%Y-%m-%dT%H:%M:%S.%fZ') AS {name}")
        elif typ.endswith("[]"):
            exprs.append(
                f"array_to_string({name}, ' > ' ) AS {name}"
                if name == "failover_path"
                else f"array_to_string({name}, ';') AS {name}"
            )
        elif name in COST_COLUMNS:
            # Fixed-point text: a double would print 1.2e-7, which not every reader takes as money.
            exprs.append(f"printf('%.9f', {name}) AS {name}")
        elif name in ROUNDED:
            exprs.append(f"round({name}, {ROUNDED[name]}) AS {name}")
        else:
            exprs.append(name)
    clause, params = f.where()
    sql = f"SELECT {', '.join(exprs)} FROM requests WHERE {clause} ORDER BY {ORDER}"
    return sql, params


def _clean(batch: pa.RecordBatch, secrets: Iterable[str]) -> pa.RecordBatch:
    cols = []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if name in COST_COLUMNS:  # numbers printed here, not text from outside
            cols.append(col)
            continue
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            for s in secrets:
                col = pc.replace_substring(col, pattern=s, replacement=SECRET_MASK)
            col = pc.replace_substring_regex(col, pattern=_FORMULA_RE, replacement="'\\1")
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def csv_chunks(
    cur: duckdb.DuckDBPyConnection,
    f: Filters,
    *,
    secrets: Iterable[str] = (),
    batch_rows: int = BATCH_ROWS,
    bom: bool = False,
) -> Iterator[bytes]:
    """The selection as CSV (UTF-8, header first), one chunk of bytes per batch of rows."""
    secrets = [s for s in secrets if s]
    sql, params = select_sql(f)
    own = cur.cursor()  # a cursor of its own: the reader streams while the caller's stays usable
    try:
        # A relation's reader streams batch by batch (a DB-API result would be copied whole).
        reader = own.sql(sql, params=params).to_arrow_reader(batch_rows)
        header = True
        if bom:
            yield BOM
        for batch in reader:
            if batch.num_rows == 0 and not header:
                continue
            buf = io.BytesIO()
            pacsv.write_csv(
                _clean(batch, secrets), buf, pacsv.WriteOptions(include_header=header, quoting_style="needed")
            )
            header = False
            yield buf.getvalue()
        if header:  # no row at all: still a header
            yield (",".join(f'"{c}"' for c in COLUMNS) + "\n").encode()
    finally:
        own.close()


def write_csv(cur: duckdb.DuckDBPyConnection, f: Filters, out, **kw) -> int:
    """Write the selection to a binary file object; returns the bytes written."""
    n = 0
    for chunk in csv_chunks(cur, f, **kw):
        out.write(chunk)
        n += len(chunk)
    return n


def csv_bytes(cur: duckdb.DuckDBPyConnection, f: Filters, **kw) -> bytes:
    buf = io.BytesIO()
    write_csv(cur, f, buf, **kw)
    return buf.getvalue()


def file_name(f: Filters, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"sophia-requests-{stamp}.csv"
