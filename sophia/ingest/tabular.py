"""Traces with one request a row: Azure LLM inference traces, and CSV or JSONL mapped by flags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from sophia.ingest import columns
from sophia.ingest.columns import Parsed
from sophia.ingest.readers import CsvRows, ImportFailed, Problems, csv_rows, jsonl_rows, require_columns


@dataclass
class Mapping:
    """Which column holds what (each named by its CLI flag in messages)."""

    ts_col: str | None = None
    ts_unit: str = "iso"
    prompt_tokens_col: str | None = None
    completion_tokens_col: str | None = None
    prompt_col: str | None = None
    model_col: str | None = None
    latency_col: str | None = None
    start: datetime | None = None  # the first request's time: numeric offsets count from here, ISO times move

    def flags(self) -> dict[str, str | None]:
        return {
            "--ts-col": self.ts_col,
            "--prompt-tokens-col": self.prompt_tokens_col,
            "--completion-tokens-col": self.completion_tokens_col,
            "--prompt-col": self.prompt_col,
            "--model-col": self.model_col,
            "--latency-col": self.latency_col,
        }


_REQUIRED = ("--ts-col", "--prompt-tokens-col", "--completion-tokens-col")


class CsvReader:
    """A CSV file whose columns the mapping names."""

    fmt = "csv"

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping

    def read(self, text: str, problems: Problems) -> Parsed:
        header, rows = csv_rows(text, problems)
        cols = _check_mapping(self.mapping, self.fmt)
        require_columns(header, cols, self.fmt)
        return _parse(self.mapping, *_csv_columns(header, rows, cols), problems)


class AzureReader(CsvReader):
    """An Azure LLM inference trace (TIMESTAMP, ContextTokens, GeneratedTokens)."""

    fmt = "azure"

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(Mapping("TIMESTAMP", "iso", "ContextTokens", "GeneratedTokens", start=start))


class JsonlReader:
    """JSON objects, one a line, whose keys the mapping names."""

    fmt = "jsonl"

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping

    def read(self, text: str, problems: Problems) -> Parsed:
        cols = _check_mapping(self.mapping, self.fmt)
        names = [name for name in cols.values() if name is not None]
        lines, data = [], {name: [] for name in names}
        for ln, obj in jsonl_rows(text, problems):
            lines.append(ln)
            for name in data:
                data[name].append(obj.get(name))
        if lines:
            absent = [flag for flag, name in cols.items() if name is not None and all(v is None for v in data[name])]
            if absent:
                raise ImportFailed(f"no row has the key named by {', '.join(absent)}; is the mapping right?")
        return _parse(self.mapping, lines, {name: pd.Series(v, dtype=object) for name, v in data.items()}, problems)


def _check_mapping(m: Mapping, fmt: str) -> dict[str, str | None]:
    cols = m.flags()
    for flag in _REQUIRED:
        if cols[flag] is None:
            raise ImportFailed(f"--format {fmt} needs {flag} to say which column holds it")
    return cols


def _csv_columns(header: list[str], rows: CsvRows, cols: dict[str, str | None]) -> tuple[list | np.ndarray, dict]:
    """Line numbers and the named columns, as Arrow columns (fast path) or object Series."""
    names = [name for name in cols.values() if name is not None]
    if isinstance(rows, pa.Table):  # clean, unquoted CSV read by Arrow
        return np.arange(2, rows.num_rows + 2), {name: rows.column(name) for name in names}
    lines = [ln for ln, _ in rows]
    fields = list(zip(*(row for _, row in rows), strict=True)) if rows else [() for _ in header]
    return lines, {name: pd.Series(fields[header.index(name)], dtype=object) for name in names}


def _parse(m: Mapping, lines, data: dict, problems: Problems) -> Parsed:
    lines = np.asarray(lines, dtype=np.int64)
    bad = np.zeros(len(lines), dtype=bool)
    ts = columns.times(data[m.ts_col], m.ts_unit, m.start, lines, bad, problems, m.ts_col)
    pt = columns.tokens(data[m.prompt_tokens_col], m.prompt_tokens_col, lines, bad, problems)
    ct = columns.tokens(data[m.completion_tokens_col], m.completion_tokens_col, lines, bad, problems)
    p = Parsed(lines, ts, pt, ct, bad)
    if m.prompt_col:
        texts = columns.series(data[m.prompt_col])
        p.texts = [v if isinstance(v, str) else (None if v is None else str(v)) for v in texts]
    if m.model_col:
        p.models = columns.series(data[m.model_col]).to_numpy()
    if m.latency_col:
        lat = pd.to_numeric(columns.series(data[m.latency_col]), errors="coerce")
        p.latency_ms = lat.where(lat >= 0).to_numpy(dtype=np.float64)
    return p
