"""Import existing traffic into the log: Azure traces, mapped CSV/JSONL, OpenAI logs, labelled sets.

Each file becomes its own source, named (unless `--source` says otherwise) by the file's name
with the dot before its extension made a hyphen: `calls.csv` → `calls-csv`, `calls.jsonl` →
`calls-jsonl` (a name without an extension takes the format: `calls` → `calls-csv`). When
another file already holds that source, `-2`, `-3`, … is appended (`calls-csv-2`). A file is
identified by its SHA-256, so importing it again adds nothing and keeps its source.

The format is checked against what the file looks like before anything else, and a trace
can be moved in time: `start` puts its first request, `shift_to` its last, at an instant.

Every bad row is reported with its line number and reason; the good rows are
imported. Token-only rows are featurized as 4 characters a token with `max_tokens` = the
recorded completion tokens; rows with text are scored like live requests. Features are what
the decision sees; actual tokens are what costs are computed from.

Reading is one small class per format (tabular.py, openai_log.py, labels.py) with one method,
`read(text, problems) -> Parsed`; this module turns the parsed columns into records.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sophia.config import Config
from sophia.ingest import records as bulk
from sophia.ingest import shape
from sophia.ingest.columns import Parsed
from sophia.ingest.labels import LabelsReader
from sophia.ingest.openai_log import OpenAIReader
from sophia.ingest.readers import HEAD_BYTES, MAX_FIELD, ImportFailed, Problems, read_text
from sophia.ingest.tabular import AzureReader, CsvReader, JsonlReader, Mapping
from sophia.log import fleet_store
from sophia.log import imports as imports_log
from sophia.log.db import Database
from sophia.money import pricing
from sophia.routing import features, policy
from sophia.vocab import LIVE_SOURCES, Source, Status, Tier

__all__ = [
    "FORMATS",
    "MAX_FIELD",
    "TS_UNITS",
    "ImportFailed",
    "ImportReport",
    "Mapping",
    "WrongFormat",
    "check_format",
    "default_source",
    "digest",
    "import_file",
    "tier_models",
]

WrongFormat = shape.WrongFormat

logger = logging.getLogger(__name__)

FORMATS = ("azure", "csv", "jsonl", "openai", "labels")
TS_UNITS = ("s", "ms", "us", "iso")
# Sources a file may not be imported as: they name live or generated traffic.
_RESERVED_SOURCES = (*LIVE_SOURCES, Source.DEMO)

Progress = Callable[[float, str], None]


class Reader(Protocol):
    def read(self, text: str, problems: Problems) -> Parsed: ...


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


def tier_models(label_models: list[str], accuracy: dict[str, float], setting: dict | None = None) -> dict[str, str]:
    """Which labelled model stands for which tier: by default the less accurate one serves
    the serverless tier and the more accurate one the dedicated tier."""
    if setting:
        return dict(setting)
    ranked = sorted(label_models, key=lambda m: accuracy.get(m, 0.0))
    return {Tier.SERVERLESS: ranked[0], Tier.DEDICATED: ranked[-1]}


def digest(path: Path) -> str:
    """The file's SHA-256: its import id."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reader_for(fmt: str, cfg: Config, mapping: Mapping, now: datetime, exclude: set[str]) -> Reader:
    if fmt == "azure":
        return AzureReader(mapping.start)
    if fmt == "csv":
        return CsvReader(mapping)
    if fmt == "jsonl":
        return JsonlReader(mapping)
    if fmt == "openai":
        return OpenAIReader(now)
    if fmt == "labels":
        return LabelsReader(cfg.routing.default_max_tokens, now, exclude)
    raise ImportFailed(f"--format {fmt!r} is not known: expected one of {', '.join(FORMATS)}")


# --- the whole import ---------------------------------------------------------------------


def check_format(path: str | Path, fmt: str) -> None:
    """The checks of `import_file` that need no database, on the file's first megabyte: it
    exists, is not empty and looks like `fmt` (else WrongFormat)."""
    if fmt not in FORMATS:
        raise ImportFailed(f"--format {fmt!r} is not known: expected one of {', '.join(FORMATS)}")
    shape.check(path, fmt, read_text(Path(path), HEAD_BYTES))


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
    shift_to: datetime | None = None,
    charge_fleet: bool = False,
) -> ImportReport:
    """Import one file. `mapping.start` puts the first request at that time, `shift_to` the
    last one (for numeric and ISO times alike); without either, numeric times end now.

    Imported traffic accrues no GPU-hours for its own past span (the configured fleet did not run
    then) unless `charge_fleet` asks for the configured fleet's hours over exactly that span."""
    if fmt not in FORMATS:
        raise ImportFailed(f"--format {fmt!r} is not known: expected one of {', '.join(FORMATS)}")
    path = Path(path)
    if source is not None:
        _check_source(source)
    mapping = mapping or Mapping()
    if mapping.start is not None and shift_to is not None:
        raise ImportFailed("give --start (the first request's time) or --shift-to (the last one's), not both")
    now = now or datetime.now(UTC).replace(tzinfo=None)

    def say(frac: float, msg: str) -> None:
        logger.debug("import %s: %s", path.name, msg)
        if progress is not None:
            progress(frac, msg)

    say(0.0, f"reading {path.name}")
    text = read_text(path)
    shape.check(path, fmt, text)  # before the duplicate check: a wrong format is always said
    report = ImportReport(str(path), fmt, source or "", import_id=digest(path))
    if _already_imported(db, report):
        logger.info("%s was already imported as source %r", path, report.source)
        return report
    report.source = _free_source(db, path, fmt, source)
    problems: Problems = []
    reader = reader_for(fmt, cfg, mapping, now, exclude_prompts or set())
    parsed = reader.read(text, problems)
    del text
    _shift(parsed, mapping.start, shift_to)
    say(0.4, f"read {len(parsed.lines):,} rows")
    table, labels = _records(parsed, cfg, report.source, report.import_id, policy_version)
    say(0.7, f"writing {table.num_rows:,} requests")
    _fill_report(report, table, parsed, problems)
    _store(db, report, table, labels, now)
    if charge_fleet and report.imported:
        _charge_fleet(db, cfg, report.source, table)
    logger.info("%s", report.summary())
    say(1.0, report.summary())
    return report


def _check_source(source: str) -> str:
    if not source.strip() or source in _RESERVED_SOURCES:
        raise ImportFailed(f"source {source!r} is not allowed: it must name the import, not a live source")
    return source


def default_source(path: Path, fmt: str) -> str:
    """`calls.csv` → `calls-csv`; a name without an extension takes the format."""
    ext = path.suffix[1:].lower() or fmt
    return f"{path.stem}-{ext}"


def _free_source(db: Database, path: Path, fmt: str, asked: str | None) -> str:
    """A source no other file holds: the one asked for, or the default with a numeric suffix."""
    with db.cursor() as cur:
        taken = {r[0] for r in cur.execute("SELECT DISTINCT source FROM imports").fetchall()}
    if asked is not None:
        if asked in taken:
            raise ImportFailed(
                f"source {asked!r} already holds another imported file: choose another --source "
                f"(or leave it out for {_numbered(default_source(path, fmt), taken)!r})"
            )
        return asked
    return _check_source(_numbered(default_source(path, fmt), taken))


def _numbered(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    k = 2
    while f"{name}-{k}" in taken:
        k += 1
    return f"{name}-{k}"


def _shift(parsed: Parsed, start: datetime | None, last: datetime | None) -> None:
    """Move every time by one offset: the first request to `start`, or the last to `last`."""
    good = ~parsed.bad
    if not good.any() or (start is None and last is None):
        return
    ts = parsed.ts.astype("datetime64[us]")
    if last is not None:
        delta = np.datetime64(last, "us") - ts[good].max()
    else:
        delta = np.datetime64(start, "us") - ts[good].min()
    parsed.ts = ts + delta


def _already_imported(db: Database, report: ImportReport) -> bool:
    with db.cursor() as cur:
        source = imports_log.source_of(cur, report.import_id)
    if source is not None:
        report.already, report.source = True, source
    return source is not None


def _fill_report(report: ImportReport, table: pa.Table, parsed: Parsed, problems: Problems) -> None:
    problems.sort()
    report.imported, report.skipped = table.num_rows, len(problems)
    report.problems = problems
    report.labelled_models = list(parsed.labels)
    if table.num_rows == 0:
        first = f"line {problems[0][0]}: {problems[0][1]}" if problems else "none"
        raise ImportFailed(
            f"no row of {report.path} could be imported ({len(problems)} bad rows; first: "
            f"{first}); is --format {report.format} right?"
        )


def _charge_fleet(db: Database, cfg: Config, source: str, table: pa.Table) -> None:
    first, last = pc.min(table["ts"]).as_py(), pc.max(table["ts"]).as_py()
    with db.cursor() as cur:
        fleet_store.charge_span(cur, cfg, source, first, last + timedelta(microseconds=1))


def _store(db: Database, report: ImportReport, table: pa.Table, labels: pa.Table | None, now: datetime) -> None:
    row = imports_log.ImportRow(
        report.import_id, report.path, report.format, report.source, report.imported, report.skipped
    )
    with db.cursor() as cur:
        report.imported = imports_log.store(cur, row, table, labels, now)


# --- parsed columns into records ----------------------------------------------------------


@dataclass
class _Features:
    chars: np.ndarray
    est_tokens: np.ndarray
    prompt_tokens: np.ndarray
    keywords: object  # list of lists, or an Arrow column of empty lists
    counts: dict[str, np.ndarray]


def _features(p: Parsed, keep: np.ndarray, n: int, cfg: Config) -> _Features:
    """What the decision sees: scored text when the file has it, else 4 characters a token."""
    pt = p.prompt_tokens[keep]
    if p.texts is None:
        counts = {g.name: np.zeros(n, dtype=np.int64) for g in cfg.scorer.keyword_groups}
        return _Features(pt * features.CHARS_PER_TOKEN, pt.copy(), pt, bulk.empty_lists(n), counts)
    texts = [t for t, k in zip(p.texts, keep, strict=True) if k]
    vocab = features.vocabulary(cfg.scorer)
    feats = [features.features_of_text(t or "", 1, 1, vocab) for t in texts]
    chars = np.fromiter((f.prompt_chars for f in feats), dtype=np.int64, count=n)
    keywords = [list(f.keywords) for f in feats]
    est = features.estimate_tokens(chars)
    # Token counts the file did not give are estimated from the text.
    pt = np.where(pt > 0, pt, est)
    return _Features(chars, est, pt, keywords, bulk.group_counts(keywords, cfg))


def _labelled_completion(p: Parsed, keep: np.ndarray, n: int, tiers_chosen, ct, mt) -> np.ndarray:
    """Output length is that of the labelled model standing for the tier chosen."""
    acc = {m: float(c[keep].mean()) if n else 0.0 for m, (c, _) in p.labels.items()}
    for tier, model in tier_models(list(p.labels), acc).items():
        toks = p.labels[model][1][keep]
        sel = (tiers_chosen == tier) & (toks >= 0)
        ct = np.where(sel, toks, ct)
    return np.where(ct > 0, ct, mt)


def _records(p: Parsed, cfg: Config, source: str, import_id: str, version: int | None):
    """The requests table and, for a labelled set, the labels table."""
    keep = ~p.bad
    n = int(keep.sum())
    lines = p.lines[keep]
    ct = p.completion_tokens[keep]
    mt = p.max_tokens[keep] if p.max_tokens is not None else ct.copy()
    f = _features(p, keep, n, cfg)
    d = policy.decide_table(f.chars, f.est_tokens, mt, f.counts, cfg)
    if p.labels:
        ct = _labelled_completion(p, keep, n, d["tier"], ct, mt)
    metered, amortized = pricing.costs_for(cfg, d["endpoint"], d["model"], f.prompt_tokens, ct)
    ids = pc.binary_join_element_wise(
        bulk.constant(import_id[:20] + "-", n, pa.string()), pc.cast(pa.array(lines), pa.string()), ""
    )
    cols = {
        "request_id": ids,
        "ts": p.ts[keep],
        "source": bulk.constant(source, n, pa.string()),
        "policy_version": bulk.constant(version, n, pa.int32()),
        "prompt_chars": f.chars,
        "est_prompt_tokens": f.est_tokens,
        "max_tokens": mt,
        "n_messages": np.ones(n, dtype=np.int32),
        "keywords": f.keywords,
        "tier": d["tier"],
        "endpoint": d["endpoint"],
        "model": d["model"],
        "complexity": d["complexity"],
        "breakdown": bulk.breakdowns(f.chars, mt, f.counts, cfg),
        "estimated_cost_usd": d["estimated_cost_usd"],
        "reason": d["reason"],
        "policy_reason": d["reason"],
        "status": bulk.constant(Status.OK.value, n, pa.string()),
        "attempts": np.zeros(n, dtype=np.int32),
        "failover_path": bulk.empty_lists(n),
        "prompt_tokens": f.prompt_tokens,
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
    return table, (_labels_table(p, keep, ids, n) if p.labels else None)


def _labels_table(p: Parsed, keep: np.ndarray, ids: pa.Array, n: int) -> pa.Table:
    """One row per (request, labelled model): correct or not, and its output tokens if known."""
    rid, mod, cor, tok = [], [], [], []
    for m, (c, t) in p.labels.items():
        rid += ids.to_pylist()
        mod += [m] * n
        cor.append(c[keep])
        tok.append(t[keep])
    tok_all = np.concatenate(tok)
    return pa.table(
        {
            "request_id": pa.array(rid, pa.string()),
            "model": pa.array(mod, pa.string()),
            "correct": pa.array(np.concatenate(cor)),
            "completion_tokens": pa.array(np.where(tok_all >= 0, tok_all, 0), pa.int32(), mask=tok_all < 0),
        }
    )
