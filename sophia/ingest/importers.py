"""Import existing traffic into the log: Azure traces, mapped CSV/JSONL, OpenAI logs, labelled sets.

Each file becomes its own source. A file is identified by its SHA-256, so importing it twice
adds nothing. Every bad row is reported with its line number and reason; the good rows are
imported. Token-only rows are featurized as 4 characters a token with `max_tokens` = the
recorded completion tokens; rows with text are scored like live requests. Features are what
the decision sees; actual tokens are what costs are computed from.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sophia.config import Config
from sophia.ingest import records as bulk
from sophia.log.db import Database
from sophia.money import pricing
from sophia.routing import features, policy

FORMATS = ("azure", "csv", "jsonl", "openai", "labels")
TS_UNITS = ("s", "ms", "us", "iso")
MAX_FIELD = 16 * 1024 * 1024  # a prompt may be long; a 16 MiB field is a broken file
SHOWN_PROBLEMS = 50
csv.field_size_limit(MAX_FIELD)


class ImportFailed(ValueError):
    """The file cannot be imported at all (wrong format, empty, unreadable)."""


@dataclass
class Mapping:
    ts_col: str | None = None
    ts_unit: str = "iso"
    prompt_tokens_col: str | None = None
    completion_tokens_col: str | None = None
    prompt_col: str | None = None
    model_col: str | None = None
    latency_col: str | None = None
    start: datetime | None = None  # numeric times are offsets from here


@dataclass
class ImportReport:
    path: str
    format: str
    source: str
    imported: int = 0
    skipped: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    already: bool = False
    import_id: str = ""
    labelled_models: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.already:
            return f"{self.path} was already imported (source '{self.source}'): nothing added"
        s = f"imported {self.imported:,} requests from {self.path} as source '{self.source}'"
        if self.skipped:
            s += f"; skipped {self.skipped:,} bad rows"
        return s

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "source": self.source,
            "imported": self.imported,
            "skipped": self.skipped,
            "already_imported": self.already,
            "labelled_models": self.labelled_models,
            "problems": [{"line": ln, "reason": r} for ln, r in self.problems],
        }


Progress = Callable[[float, str], None]


# --- reading ----------------------------------------------------------------------------


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFailed(f"{path} not found") from None
    except IsADirectoryError:
        raise ImportFailed(f"{path} is a folder, not a file") from None
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


def _csv_rows(text: str, problems: list) -> tuple[list[str], list[tuple[int, list[str]]] | pa.Table]:
    """The header and the (line number, fields) of every well-formed row, or an Arrow table
    of every row when the file is plain enough to read at Arrow speed."""
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as e:
        raise ImportFailed(f"no CSV header could be read ({e})") from None
    width = len(header)
    fast = _arrow_csv(text, header) if '"' not in text and "\r" not in text else None
    if fast is not None:
        return header, fast
    check_utf8 = _bad_text(text)
    out = []
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
            out.append((reader.line_num, row))
    return header, out


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


def _jsonl_rows(text: str, problems: list) -> Iterator[tuple[int, dict]]:
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


def _need(header: list[str], cols: dict[str, str | None], fmt: str) -> None:
    missing = [f"{flag} {name!r}" for flag, name in cols.items() if name is not None and name not in header]
    if missing:
        raise ImportFailed(
            f"column {', '.join(missing)} not in the file's header ({', '.join(header[:12])}); "
            f"is --format {fmt} right, or does the mapping need changing?"
        )


# --- validating columns -----------------------------------------------------------------


def _series(raw) -> pd.Series:
    return raw.to_pandas().astype(object) if isinstance(raw, pa.ChunkedArray) else raw


def _tokens(raw, name: str, lines: np.ndarray, bad: np.ndarray, problems: list) -> np.ndarray:
    if isinstance(raw, pa.ChunkedArray):
        try:  # the common case, all plain integers, at Arrow speed
            fast = pc.cast(raw, pa.int64()).to_numpy()
            if (fast >= 0).all() and (fast <= 10_000_000).all():
                return fast
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raw = _series(raw)
    num = pd.to_numeric(raw, errors="coerce")
    invalid = num.isna() | (num < 0) | (num % 1 != 0) | (num > 10_000_000)
    for ln, v in zip(lines[invalid.to_numpy() & ~bad], raw[invalid & ~bad], strict=True):
        problems.append((int(ln), f"{name} {str(v)[:40]!r} is not a whole number of tokens >= 0"))
    bad |= invalid.to_numpy()
    return num.fillna(0).to_numpy(dtype=np.int64)


def _times(
    raw, unit: str, start: datetime | None, lines: np.ndarray, bad: np.ndarray, problems: list, name: str
) -> np.ndarray:
    if isinstance(raw, pa.ChunkedArray) and unit != "iso":
        try:
            num = pd.Series(pc.cast(raw, pa.float64()).to_numpy())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            num = None
    else:
        num = None
    raw = _series(raw)
    if unit == "iso":
        ts = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
        invalid = ts.isna().to_numpy()
        what = "an ISO 8601 time"
    else:
        num = pd.to_numeric(raw, errors="coerce") if num is None else num
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
        # offsets beyond a century are not a trace's times (and would overflow)
        invalid = (num.isna() | (num < 0) | (num * scale > 100 * 365.25 * 86_400e6)).to_numpy()
        what = f"a number of {unit} from 0 to a century"
        offs = (num.where(~invalid, 0).to_numpy(dtype=np.float64) * scale).astype(np.int64)
        ok = offs[~invalid]
        span = int(ok.max() - ok.min()) if ok.size else 0
        base = start or (datetime.now(UTC).replace(tzinfo=None) - timedelta(microseconds=span))
        first = int(ok.min()) if ok.size else 0
        ts = pd.Series(np.datetime64(base, "us") + (offs - first).astype("timedelta64[us]"))
    for ln, v in zip(lines[invalid & ~bad], raw[invalid & ~bad], strict=True):
        problems.append((int(ln), f"{name} {str(v)[:40]!r} is not {what}"))
    bad |= invalid
    return ts.to_numpy(dtype="datetime64[us]")


# --- per format: raw rows into canonical columns -----------------------------------------


@dataclass
class _Parsed:
    lines: np.ndarray
    ts: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    bad: np.ndarray
    texts: list | None = None
    max_tokens: np.ndarray | None = None
    latency_ms: np.ndarray | None = None
    models: np.ndarray | None = None  # model the traffic named (informational)
    labels: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _tabular(header, rows, m: Mapping, fmt: str, problems: list) -> _Parsed:
    cols = {
        "--ts-col": m.ts_col,
        "--prompt-tokens-col": m.prompt_tokens_col,
        "--completion-tokens-col": m.completion_tokens_col,
        "--prompt-col": m.prompt_col,
        "--model-col": m.model_col,
        "--latency-col": m.latency_col,
    }
    for flag in ("--ts-col", "--prompt-tokens-col", "--completion-tokens-col"):
        if cols[flag] is None:
            raise ImportFailed(f"--format {fmt} needs {flag} to say which column holds it")
    if isinstance(rows, pa.Table):  # the fast path: clean, unquoted CSV read by Arrow
        _need(header, cols, fmt)
        lines = np.arange(2, rows.num_rows + 2)
        data = {name: rows.column(name) for name in cols.values() if name is not None}
    elif header is not None:
        _need(header, cols, fmt)
        idx = {name: header.index(name) for name in cols.values() if name is not None}
        lines = [ln for ln, _ in rows]
        fields = list(zip(*(row for _, row in rows), strict=True)) if rows else [() for _ in header]
        data = {name: pd.Series(fields[i], dtype=object) for name, i in idx.items()}
        del fields
    else:  # JSONL objects
        lines, data = [], {name: [] for name in cols.values() if name is not None}
        for ln, obj in rows:
            lines.append(ln)
            for name in data:
                data[name].append(obj.get(name))
        if lines:
            absent = [flag for flag, name in cols.items() if name is not None and all(v is None for v in data[name])]
            if absent:
                raise ImportFailed(f"no row has the key named by {', '.join(absent)}; is the mapping right?")
        data = {name: pd.Series(v, dtype=object) for name, v in data.items()}
    lines = np.asarray(lines, dtype=np.int64)
    bad = np.zeros(len(lines), dtype=bool)
    ts = _times(data[m.ts_col], m.ts_unit, m.start, lines, bad, problems, m.ts_col)
    pt = _tokens(data[m.prompt_tokens_col], m.prompt_tokens_col, lines, bad, problems)
    ct = _tokens(data[m.completion_tokens_col], m.completion_tokens_col, lines, bad, problems)
    p = _Parsed(lines, ts, pt, ct, bad)
    if m.prompt_col:
        p.texts = [v if isinstance(v, str) else (None if v is None else str(v)) for v in _series(data[m.prompt_col])]
    if m.model_col:
        p.models = _series(data[m.model_col]).to_numpy()
    if m.latency_col:
        lat = pd.to_numeric(_series(data[m.latency_col]), errors="coerce")
        p.latency_ms = lat.where(lat >= 0).to_numpy(dtype=np.float64)
    return p


def _openai(rows, problems: list, cfg: Config, now: datetime) -> _Parsed:
    lines, ts, pt, ct, mt, texts, models = [], [], [], [], [], [], []
    for ln, obj in rows:
        msgs = obj.get("messages")
        if msgs is None and isinstance(obj.get("request"), dict):  # {"request": {...}, "response": {...}}
            msgs = obj["request"].get("messages")
        try:
            text = features.prompt_text(msgs) if isinstance(msgs, list) and msgs else None
        except features.RequestError as e:
            problems.append((ln, str(e)))
            continue
        if text is None:
            problems.append((ln, "no 'messages' list"))
            continue
        reply = obj.get("response") if isinstance(obj.get("response"), dict) else obj
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else obj.get("usage")
        choices = reply.get("choices") if isinstance(reply.get("choices"), list) else []
        answer = ""
        if choices and isinstance(choices[0], dict):
            msg = choices[0].get("message") or {}
            answer = msg.get("content") or "" if isinstance(msg, dict) else ""
        p_tok = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        c_tok = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if not (isinstance(p_tok, int) and p_tok >= 0):
            p_tok = features.estimate_tokens(len(text))
        if not (isinstance(c_tok, int) and c_tok >= 0):
            c_tok = features.estimate_tokens(len(answer if isinstance(answer, str) else ""))
        created = obj.get("created", reply.get("created"))
        if created is not None and not (
            isinstance(created, (int, float)) and not isinstance(created, bool) and 0 <= created < 1e11
        ):
            problems.append((ln, f"created {str(created)[:40]!r} is not a Unix time in seconds"))
            continue
        req_mt = obj.get("max_tokens")
        if req_mt is not None and not (isinstance(req_mt, int) and 0 < req_mt <= features.MAX_TOKENS_LIMIT):
            problems.append(
                (ln, f"max_tokens {str(req_mt)[:40]!r} is not a whole number from 1 to {features.MAX_TOKENS_LIMIT:,}")
            )
            continue
        if p_tok > 10_000_000 or c_tok > 10_000_000:
            problems.append((ln, "usage token counts over 10,000,000 are not plausible"))
            continue
        lines.append(ln)
        ts.append(np.datetime64(int(created * 1e6), "us") if created is not None else np.datetime64(now, "us"))
        pt.append(p_tok)
        ct.append(c_tok)
        mt.append(req_mt if req_mt is not None else max(c_tok, 1))
        texts.append(text)
        models.append(obj.get("model", reply.get("model")))
    n = len(lines)
    return _Parsed(
        np.asarray(lines, dtype=np.int64),
        np.asarray(ts, dtype="datetime64[us]"),
        np.asarray(pt, dtype=np.int64),
        np.asarray(ct, dtype=np.int64),
        np.zeros(n, dtype=bool),
        texts=texts,
        max_tokens=np.asarray(mt, dtype=np.int64),
        models=np.asarray(models, dtype=object),
    )


_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f"}


def _labels(header, rows, problems: list, cfg: Config, now: datetime, exclude: set[str]) -> _Parsed:
    if "prompt" not in header:
        raise ImportFailed(f"a labelled set needs a 'prompt' column; the header is {', '.join(header[:12])}")
    models = [h for h in header if h != "prompt" and not h.endswith("_response")]
    if len(models) < 2:
        raise ImportFailed("a labelled set needs at least two True/False columns, one per model, named by the model")
    responses = {m: header.index(f"{m}_response") for m in models if f"{m}_response" in header}
    if isinstance(rows, pa.Table):  # read by Arrow: back to (line, fields) rows
        rows = list(
            zip(range(2, rows.num_rows + 2), zip(*(c.to_pylist() for c in rows.columns), strict=False), strict=True)
        )
    pi = header.index("prompt")
    mi = {m: header.index(m) for m in models}
    lines, texts, correct, tokens = [], [], {m: [] for m in models}, {m: [] for m in models}
    for ln, row in rows:
        prompt = row[pi]
        if prompt in exclude:
            continue
        if not prompt.strip():
            problems.append((ln, "empty prompt"))
            continue
        vals = {}
        for m in models:
            v = row[mi[m]].strip().lower()
            if v not in _TRUE and v not in _FALSE:
                vals = None
                problems.append((ln, f"{m} {row[mi[m]][:40]!r} is not True or False"))
                break
            vals[m] = v in _TRUE
        if vals is None:
            continue
        lines.append(ln)
        texts.append(prompt)
        for m in models:
            correct[m].append(vals[m])
            r = row[responses[m]] if m in responses else None
            tokens[m].append(features.estimate_tokens(len(r)) if r else -1)
    n = len(lines)
    # Labelled sets carry no arrival times: space them a second apart, ending now.
    ts = np.datetime64(now, "us") - (n - np.arange(n)).astype("timedelta64[s]")
    p = _Parsed(
        np.asarray(lines, dtype=np.int64),
        ts,
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=bool),
        texts=texts,
        max_tokens=np.full(n, cfg.routing.default_max_tokens, dtype=np.int64),
    )
    p.labels = {m: (np.asarray(correct[m], dtype=bool), np.asarray(tokens[m], dtype=np.int64)) for m in models}
    return p


# --- the whole import ---------------------------------------------------------------------


def tier_models(label_models: list[str], accuracy: dict[str, float], setting: dict | None = None) -> dict[str, str]:
    """Which labelled model stands for which tier: by default the less accurate one serves
    the serverless tier and the more accurate one the dedicated tier."""
    if setting:
        return dict(setting)
    ranked = sorted(label_models, key=lambda m: accuracy.get(m, 0.0))
    return {"serverless": ranked[0], "dedicated": ranked[-1]}


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_file(
    db: Database,
    cfg: Config,
    path: str | Path,
    fmt: str,
    *,
    source: str | None = None,
    mapping: Mapping | None = None,
    exclude_prompts: set[str] | None = None,
    policy_version: int | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ImportReport:
    if fmt not in FORMATS:
        raise ImportFailed(f"--format {fmt!r} is not known: expected one of {', '.join(FORMATS)}")
    path = Path(path)
    source = source or path.stem
    if not source.strip() or source in ("playground", "cli", "api", "demo"):
        raise ImportFailed(f"source {source!r} is not allowed: it must name the import, not a live source")
    now = now or datetime.now(UTC).replace(tzinfo=None)
    say = progress or (lambda f, m: None)
    say(0.0, f"reading {path.name}")
    text = _text(path)
    import_id = digest(path)
    report = ImportReport(str(path), fmt, source, import_id=import_id)
    with db.cursor() as cur:
        row = cur.execute("SELECT source FROM imports WHERE import_id = ?", [import_id]).fetchone()
    if row:
        report.already, report.source = True, row[0]
        return report
    problems: list[tuple[int, str]] = []
    m = mapping or Mapping()
    if fmt == "azure":
        header, rows = _csv_rows(text, problems)
        m = Mapping("TIMESTAMP", "iso", "ContextTokens", "GeneratedTokens", start=m.start)
        parsed = _tabular(header, rows, m, fmt, problems)
    elif fmt == "csv":
        header, rows = _csv_rows(text, problems)
        parsed = _tabular(header, rows, m, fmt, problems)
    elif fmt == "jsonl":
        parsed = _tabular(None, _jsonl_rows(text, problems), m, fmt, problems)
    elif fmt == "openai":
        parsed = _openai(_jsonl_rows(text, problems), problems, cfg, now)
    else:
        header, rows = _csv_rows(text, problems)
        parsed = _labels(header, rows, problems, cfg, now, exclude_prompts or set())
    del text
    say(0.4, f"read {len(parsed.lines):,} rows")
    table, labels = _records(parsed, cfg, source, import_id, policy_version)
    say(0.7, f"writing {table.num_rows:,} requests")
    problems.sort()
    report.imported, report.skipped = table.num_rows, len(problems)
    report.problems = problems
    report.labelled_models = list(parsed.labels)
    if table.num_rows == 0:
        raise ImportFailed(
            f"no row of {path} could be imported ({len(problems)} bad rows; first: "
            f"{_first(problems)}); is --format {fmt} right?"
        )
    with db.cursor() as cur:
        cur.execute("BEGIN TRANSACTION")
        try:
            bulk.append(cur, table)
            if labels is not None:
                cur.register("_labels", labels)
                cur.execute("INSERT INTO request_labels SELECT * FROM _labels")
                cur.unregister("_labels")
            cur.execute(
                "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?)",
                [import_id, str(path), fmt, source, now, report.imported, report.skipped],
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    say(1.0, report.summary())
    return report


def _first(problems) -> str:
    return f"line {problems[0][0]}: {problems[0][1]}" if problems else "none"


def _records(p: _Parsed, cfg: Config, source: str, import_id: str, version: int | None):
    keep = ~p.bad
    n = int(keep.sum())
    lines = p.lines[keep]
    pt, ct = p.prompt_tokens[keep], p.completion_tokens[keep]
    mt = p.max_tokens[keep] if p.max_tokens is not None else ct.copy()
    if p.texts is not None:
        texts = [t for t, k in zip(p.texts, keep, strict=True) if k]
        vocab = features.vocabulary(cfg.scorer)
        feats = [features.features_of_text(t or "", 1, 1, vocab) for t in texts]
        chars = np.fromiter((f.prompt_chars for f in feats), dtype=np.int64, count=n)
        keywords = [list(f.keywords) for f in feats]
        est = features.estimate_tokens(chars)
        # Token counts the file did not give are estimated from the text.
        pt = np.where(pt > 0, pt, est)
        counts = bulk.group_counts(keywords, cfg)
    else:
        chars = pt * features.CHARS_PER_TOKEN
        est = pt.copy()
        keywords = bulk.empty_lists(n)
        counts = {g.name: np.zeros(n, dtype=np.int64) for g in cfg.scorer.keyword_groups}
    d = policy.decide_table(chars, est, mt, counts, cfg)
    labels_table = None
    if p.labels:
        acc = {m: float(c[keep].mean()) if n else 0.0 for m, (c, _) in p.labels.items()}
        tiers = tier_models(list(p.labels), acc)
        # Output length is that of the labelled model standing for the tier chosen.
        for tier, model in tiers.items():
            toks = p.labels[model][1][keep]
            sel = (d["tier"] == tier) & (toks >= 0)
            ct = np.where(sel, toks, ct)
        ct = np.where(ct > 0, ct, mt)
    metered, amortized = pricing.costs_for(cfg, d["endpoint"], d["model"], pt, ct)
    ids = pc.binary_join_element_wise(
        bulk.constant(import_id[:20] + "-", n, pa.string()), pc.cast(pa.array(lines), pa.string()), ""
    )
    cols = {
        "request_id": ids,
        "ts": p.ts[keep],
        "source": bulk.constant(source, n, pa.string()),
        "policy_version": bulk.constant(version, n, pa.int32()),
        "prompt_chars": chars,
        "est_prompt_tokens": est,
        "max_tokens": mt,
        "n_messages": np.ones(n, dtype=np.int32),
        "keywords": keywords,
        "tier": d["tier"],
        "endpoint": d["endpoint"],
        "model": d["model"],
        "complexity": d["complexity"],
        "breakdown": bulk.breakdowns(chars, mt, counts, cfg),
        "estimated_cost_usd": d["estimated_cost_usd"],
        "reason": d["reason"],
        "policy_reason": d["reason"],
        "status": bulk.constant("ok", n, pa.string()),
        "attempts": np.zeros(n, dtype=np.int32),
        "failover_path": bulk.empty_lists(n),
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "usage_estimated": np.zeros(n, dtype=bool),
        "metered_cost_usd": metered,
        "amortized_cost_usd": amortized,
        "latency_ms": p.latency_ms[keep] if p.latency_ms is not None else None,
        "streamed": np.zeros(n, dtype=bool),
        "cached": np.zeros(n, dtype=bool),
        "simulated": np.zeros(n, dtype=bool),
    }
    table = bulk.to_table(cols, n)
    if p.labels:
        rid, mod, cor, tok = [], [], [], []
        for m, (c, t) in p.labels.items():
            rid += ids.to_pylist()
            mod += [m] * n
            cor.append(c[keep])
            tok.append(t[keep])
        tok_all = np.concatenate(tok)
        labels_table = pa.table(
            {
                "request_id": pa.array(rid, pa.string()),
                "model": pa.array(mod, pa.string()),
                "correct": pa.array(np.concatenate(cor)),
                "completion_tokens": pa.array(np.where(tok_all >= 0, tok_all, 0), pa.int32(), mask=tok_all < 0),
            }
        )
    return table, labels_table


def print_problems(report: ImportReport, stream=sys.stderr) -> None:
    for ln, reason in report.problems[:SHOWN_PROBLEMS]:
        print(f"  line {ln}: {reason}", file=stream)
    if len(report.problems) > SHOWN_PROBLEMS:
        print(f"  … and {len(report.problems) - SHOWN_PROBLEMS:,} more (use --json for all)", file=stream)
