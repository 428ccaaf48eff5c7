"""What a file looks like, told from its first lines, and whether an import format fits it.

The check runs before anything else (the duplicate check included), so that a wrong
`--format` is always reported as such, in one line that says what the file looks like.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

from sophia.ingest.readers import HEAD_BYTES, ImportFailed

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_SAMPLE_LINES = 50  # lines looked at for a JSON object's keys
_SHOWN = 8  # columns or keys named in a message


class WrongFormat(ImportFailed):
    """The file does not look like the format it is imported as."""


@dataclass(frozen=True)
class Shape:
    kind: str  # "csv", "jsonl", "json" (one document), "binary"
    names: tuple[str, ...] = ()  # the CSV header, or the keys of the first JSON object

    def guess(self) -> str | None:
        """The import format that fits the file best, if any does."""
        if self.kind == "jsonl":  # no keys known (first lines unreadable): the rows will tell
            return "openai" if not self.names or {"messages", "request"} & set(self.names) else "jsonl"
        if self.kind == "csv":
            if set(AZURE_COLUMNS) <= set(self.names):
                return "azure"
            verdicts = [n for n in self.names if n != "prompt" and not n.endswith("_response")]
            return "labels" if "prompt" in self.names and len(verdicts) >= 2 else "csv"
        return None

    def describe(self) -> str:
        # Printable characters only: the message stays one line whatever the file holds.
        names = ("".join(c if c.isprintable() else "?" for c in n[:40]) for n in self.names[:_SHOWN])
        shown = ", ".join(names) + (", …" if len(self.names) > _SHOWN else "")
        if self.kind == "csv":
            return f"a CSV file with columns {shown}"
        if self.kind == "jsonl":
            return f"JSON lines with keys {shown}" if self.names else "JSON lines"
        if self.kind == "json":
            return "one JSON document, not one object a line"
        return "a binary file, not text"


def of_text(text: str) -> Shape:
    """The shape of a file's text, from its first non-blank lines."""
    head = text[:HEAD_BYTES]
    if "\x00" in head[:4096]:
        return Shape("binary")
    lines = [ln for ln in head.splitlines()[: _SAMPLE_LINES * 4] if ln.strip()][:_SAMPLE_LINES]
    first = lines[0].lstrip() if lines else ""
    if first.startswith("["):
        return Shape("json")
    if first.startswith("{"):
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return Shape("jsonl", tuple(str(k) for k in obj))
        return Shape("jsonl")
    try:
        header = next(csv.reader([lines[0]])) if lines else []
    except csv.Error:
        header = [lines[0]]
    return Shape("csv", tuple(h.strip() for h in header))


def _fits(fmt: str, shape: Shape) -> bool:
    # A mapped CSV or JSONL import may read any file of that kind (an Azure trace as csv, say).
    if fmt == "csv":
        return shape.kind == "csv"
    if fmt == "jsonl":
        return shape.kind == "jsonl"
    return shape.guess() == fmt


def check(path: object, fmt: str, text: str) -> None:
    """Raise WrongFormat, in one line, when the file does not look like `fmt`."""
    shape = of_text(text)
    if _fits(fmt, shape):
        return
    expected = {
        "azure": f"a CSV with columns {', '.join(AZURE_COLUMNS)}",
        "csv": "a CSV with a header",
        "jsonl": "one JSON object a line",
        "openai": "one JSON object a line with 'messages' (or 'request')",
        "labels": "a CSV with a 'prompt' column and a True/False column per model",
    }[fmt]
    guess = shape.guess()
    hint = f"; try --format {guess}" if guess and guess != fmt else ""
    raise WrongFormat(f"{path} does not fit --format {fmt} ({expected}): it looks like {shape.describe()}{hint}")
