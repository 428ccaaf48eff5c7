"""Labelled sets: a prompt column and one True/False column per model (optionally MODEL_response).

They carry no arrival times or usage: rows are spaced a second apart ending now, and a
model's output length is estimated from its response when the set has one.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from sophia.ingest.columns import Parsed
from sophia.ingest.readers import ImportFailed, Problems, csv_rows
from sophia.routing import features

_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f"}


class LabelsReader:
    fmt = "labels"

    def __init__(self, max_tokens: int, now: datetime, exclude: set[str]) -> None:
        self.max_tokens = max_tokens  # what each row asks for (the configured default)
        self.now = now
        self.exclude = exclude  # prompts left out, e.g. ones an evaluation set contains

    def read(self, text: str, problems: Problems) -> Parsed:
        header, rows = csv_rows(text, problems)
        models, responses = _models(header)
        if isinstance(rows, pa.Table):  # read by Arrow: back to (line, fields) rows
            rows = list(
                zip(range(2, rows.num_rows + 2), zip(*(c.to_pylist() for c in rows.columns), strict=False), strict=True)
            )
        pi = header.index("prompt")
        mi = {m: header.index(m) for m in models}
        lines, texts, correct, tokens = [], [], {m: [] for m in models}, {m: [] for m in models}
        for ln, row in rows:
            prompt = row[pi]
            if prompt in self.exclude:
                continue
            if not prompt.strip():
                problems.append((ln, "empty prompt"))
                continue
            vals = _verdicts(row, mi, ln, problems)
            if vals is None:
                continue
            lines.append(ln)
            texts.append(prompt)
            for m in models:
                correct[m].append(vals[m])
                r = row[responses[m]] if m in responses else None
                tokens[m].append(features.estimate_tokens(len(r)) if r else -1)
        n = len(lines)
        ts = np.datetime64(self.now, "us") - (n - np.arange(n)).astype("timedelta64[s]")
        p = Parsed(
            np.asarray(lines, dtype=np.int64),
            ts,
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=bool),
            texts=texts,
            max_tokens=np.full(n, self.max_tokens, dtype=np.int64),
        )
        p.labels = {m: (np.asarray(correct[m], dtype=bool), np.asarray(tokens[m], dtype=np.int64)) for m in models}
        return p


def _models(header: list[str]) -> tuple[list[str], dict[str, int]]:
    """The labelled models and the column of each one's response, where there is one."""
    if "prompt" not in header:
        raise ImportFailed(f"a labelled set needs a 'prompt' column; the header is {', '.join(header[:12])}")
    models = [h for h in header if h != "prompt" and not h.endswith("_response")]
    if len(models) < 2:
        raise ImportFailed("a labelled set needs at least two True/False columns, one per model, named by the model")
    return models, {m: header.index(f"{m}_response") for m in models if f"{m}_response" in header}


def _verdicts(row: list[str], columns: dict[str, int], ln: int, problems: Problems) -> dict[str, bool] | None:
    vals = {}
    for m, i in columns.items():
        v = row[i].strip().lower()
        if v not in _TRUE and v not in _FALSE:
            problems.append((ln, f"{m} {row[i][:40]!r} is not True or False"))
            return None
        vals[m] = v in _TRUE
    return vals
