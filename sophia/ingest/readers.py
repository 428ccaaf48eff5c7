"""Reading a file's rows, shared by every import format: CSV (at Arrow speed when plain) and JSONL.

Every unreadable row goes into `problems` as (line number, reason); the readable ones are kept.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

MAX_FIELD = 16 * 1024 * 1024  # a prompt may be long; a 16 MiB field is a broken file
csv.field_size_limit(MAX_FIELD)

Problems = list[tuple[int, str]]
CsvRows = list[tuple[int, list[str]]] | pa.Table  # (line, fields) rows, or every row read by Arrow


class ImportFailed(ValueError):
    """The file cannot be imported at all (wrong format, empty, unreadable)."""


HEAD_BYTES = 1 << 20  # what is read to tell a file's shape


def read_text(path: Path, limit: int | None = None) -> str:
    """The file's text (its first `limit` bytes when given), or a one-line ImportFailed."""
    try:
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        raise ImportFailed(f"{path} not found") from None
    except IsADirectoryError:
        raise ImportFailed(f"{path} is a folder, not a file") from None
    except OSError as e:
        raise ImportFailed(f"{path} cannot be read ({e.strerror or e})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as spreadsheets write
    if not data.strip():
        raise ImportFailed(f"{path} is empty: nothing to import")
    # Undecodable bytes become lone surrogates, so that only the rows holding them are rejected.
    return data.decode("utf-8", "surrogateescape")


def _bad_text(value: str) -> bool:
    try:
        value.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def csv_rows(text: str, problems: Problems) -> tuple[list[str], CsvRows]:
    """The header and the (line number, fields) of every well-formed row, or an Arrow table
    of every row when the file is plain enough to read at Arrow speed."""
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as e:
        raise ImportFailed(f"no CSV header could be read ({e})") from None
    fast = _arrow_csv(text, header) if '"' not in text and "\r" not in text else None
    if fast is not None:
        return header, fast
    return header, _python_csv(reader, len(header), _bad_text(text), problems)


def _python_csv(reader, width: int, check_utf8: bool, problems: Problems) -> list[tuple[int, list[str]]]:
    rows = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append((reader.line_num, f"unreadable CSV row: {e}"))
            continue
        if not row:
            continue
        if check_utf8 and _bad_text("".join(row)):
            problems.append((reader.line_num, "not UTF-8 text"))
        elif len(row) != width:
            problems.append((reader.line_num, f"{len(row)} fields where the header has {width}"))
        else:
            rows.append((reader.line_num, row))
    return rows


def _arrow_csv(text: str, header: list[str]) -> pa.Table | None:
    """Read a plain CSV (no quoting, every row complete, no blank line) with Arrow, every
    column as text; None when anything is off, so that the row-by-row reader reports it."""
    if _bad_text(text) or "\n\n" in text.rstrip("\n") or len(set(header)) != len(header):
        return None
    invalid = []

    def on_invalid(row):
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(text.encode()),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException:
        return None
    return None if invalid else table


def jsonl_rows(text: str, problems: Problems) -> Iterator[tuple[int, dict]]:
    """(line number, object) of every line holding a JSON object."""
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if _bad_text(line):
            problems.append((i, "not UTF-8 text"))
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            problems.append((i, f"not valid JSON ({e.msg} at column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append((i, "a JSON object was expected"))
            continue
        yield i, obj


def require_columns(header: list[str], cols: dict[str, str | None], fmt: str) -> None:
    """Every column a flag names is in the header, else say which and what the header holds."""
    missing = [f"{flag} {name!r}" for flag, name in cols.items() if name is not None and name not in header]
    if missing:
        raise ImportFailed(
            f"column {', '.join(missing)} not in the file's header ({', '.join(header[:12])}); "
            f"is --format {fmt} right, or does the mapping need changing?"
        )
