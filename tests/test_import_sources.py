"""Import sources one per file, the format checked first, traces moved in time, demo traffic
idempotent per seed, and the import/demo/replay/export options (ranges, --out, a closed pipe)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sophia import cli
from sophia.ingest import demo, importers
from sophia.log.db import Database
from tests.helpers import ROOT, reference_config

CFG = reference_config()
MAP_MS = importers.Mapping("t", "ms", "p", "c")
MAP_ISO = importers.Mapping("t", "iso", "p", "c")
FLAGS = ["--ts-col", "t", "--prompt-tokens-col", "p", "--completion-tokens-col", "c"]


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "src.duckdb")
    yield d
    d.close()


def rows(db: Database, sql: str) -> list[tuple]:
    with db.cursor() as cur:
        return cur.execute(sql).fetchall()


def numeric_csv(path: Path, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("t,p,c\n0,10,5\n1000,20,6\n" + extra)
    return path


def iso_jsonl(path: Path, times=("2023-01-01T00:00:00Z", "2023-01-02T06:00:00Z")) -> Path:
    path.write_text("".join(json.dumps({"t": t, "p": 10, "c": 3}) + "\n" for t in times))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# --- 1. one source per file ---------------------------------------------------------------


def test_each_file_is_its_own_source(tmp_path, db):
    a = importers.import_file(db, CFG, numeric_csv(tmp_path / "calls.csv"), "csv", mapping=MAP_MS)
    b = importers.import_file(db, CFG, iso_jsonl(tmp_path / "calls.jsonl"), "jsonl", mapping=MAP_ISO)
    assert (a.source, b.source) == ("calls-csv", "calls-jsonl")
    # Another file of the same name takes the next free number; importing it again keeps it.
    other = numeric_csv(tmp_path / "b" / "calls.csv", "2000,1,1\n")
    third = numeric_csv(tmp_path / "c" / "calls.csv", "3000,1,1\n")
    assert importers.import_file(db, CFG, other, "csv", mapping=MAP_MS).source == "calls-csv-2"
    assert importers.import_file(db, CFG, third, "csv", mapping=MAP_MS).source == "calls-csv-3"
    again = importers.import_file(db, CFG, other, "csv", mapping=MAP_MS)
    assert again.already and again.source == "calls-csv-2" and "nothing added" in again.summary()
    # A name without an extension takes the format.
    bare = tmp_path / "d" / "calls"
    bare.parent.mkdir()
    bare.write_text("t,p,c\n5,1,1\n")
    assert importers.import_file(db, CFG, bare, "csv", mapping=MAP_MS).source == "calls-csv-4"
    assert importers.default_source(Path("x/Trace.CSV"), "azure") == "Trace-csv"
    assert rows(db, "SELECT source, count(*) FROM requests GROUP BY 1 ORDER BY 1") == [
        ("calls-csv", 2),
        ("calls-csv-2", 3),
        ("calls-csv-3", 3),
        ("calls-csv-4", 1),
        ("calls-jsonl", 2),
    ]


def test_a_source_held_by_another_file_is_refused(tmp_path, db):
    importers.import_file(db, CFG, numeric_csv(tmp_path / "a.csv"), "csv", source="mine", mapping=MAP_MS)
    with pytest.raises(importers.ImportFailed, match="'mine' already holds another imported file.*'b-csv'"):
        importers.import_file(db, CFG, numeric_csv(tmp_path / "b.csv", "9,1,1\n"), "csv", source="mine", mapping=MAP_MS)
    assert rows(db, "SELECT count(*) FROM requests") == [(2,)]


# --- 2. the format is checked first -------------------------------------------------------


def test_wrong_format_on_reimport_is_an_error_not_already_imported(tmp_path, capsys):
    path, dbp = numeric_csv(tmp_path / "calls.csv"), str(tmp_path / "w.duckdb")
    assert cli.main(["import", str(path), "--format", "csv", "--ts-unit", "ms", *FLAGS, "--db", dbp]) == 0
    capsys.readouterr()
    assert cli.main(["import", str(path), "--format", "jsonl", *FLAGS, "--db", dbp]) == 2
    err = one_line_error(capsys)
    assert str(path) in err and "--format jsonl" in err and "already imported" not in err
    assert "looks like a CSV file with columns t, p, c; try --format csv" in err


@pytest.mark.parametrize(
    "name,content,fmt,looks",
    [
        ("a.jsonl", '{"t": 1, "p": 2, "c": 3}\n', "csv", "JSON lines with keys t, p, c; try --format jsonl"),
        ("a.csv", "t,p,c\n1,2,3\n", "openai", "a CSV file with columns t, p, c; try --format csv"),
        ("a.csv", "t,p,c\n1,2,3\n", "azure", "a CSV file with columns t, p, c"),
        ("a.csv", "prompt,only\nhi,True\n", "labels", "a CSV file with columns prompt, only"),
        ("a.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n', "csv", "try --format openai"),
        ("a.json", '[{"t": 1}]\n', "jsonl", "one JSON document, not one object a line"),
        ("a.bin", "t,p\x00\x01,c\n", "csv", "a binary file"),
        ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-01-01,1,1\n", "labels", "try --format azure"),
    ],
)
def test_wrong_format_first_time_is_one_line_before_any_work(tmp_path, capsys, name, content, fmt, looks):
    path, dbp = tmp_path / name, tmp_path / "never.duckdb"
    path.write_text(content)
    assert cli.main(["import", str(path), "--format", fmt, *FLAGS, "--db", str(dbp)]) == 2
    err = one_line_error(capsys)
    assert str(path) in err and f"--format {fmt}" in err and looks in err
    assert not dbp.exists()  # nothing was opened, let alone written


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path, db):
    p = tmp_path / "excel.csv"
    p.write_bytes(b"\xef\xbb\xbfTIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,2\n")
    assert importers.import_file(db, CFG, p, "azure").imported == 1


# --- 3. moving a trace in time ------------------------------------------------------------


def test_shift_to_moves_iso_and_numeric_traces(tmp_path, db):
    to = datetime(2026, 3, 1, 12, 0, 0)
    importers.import_file(db, CFG, iso_jsonl(tmp_path / "iso.jsonl"), "jsonl", mapping=MAP_ISO, shift_to=to)
    assert rows(db, "SELECT ts FROM requests WHERE source = 'iso-jsonl' ORDER BY ts") == [
        (to - timedelta(days=1, hours=6),),
        (to,),
    ]
    importers.import_file(db, CFG, numeric_csv(tmp_path / "num.csv"), "csv", mapping=MAP_MS, shift_to=to)
    assert rows(db, "SELECT ts FROM requests WHERE source = 'num-csv' ORDER BY ts") == [
        (to - timedelta(seconds=1),),
        (to,),
    ]
    # --start puts the first request of an ISO trace at that time too.
    start = datetime(2025, 6, 1)
    m = importers.Mapping("t", "iso", "p", "c", start=start)
    importers.import_file(
        db, CFG, iso_jsonl(tmp_path / "st.jsonl", ("2023-05-05T10:00:00", "2023-05-05T10:00:30")), "jsonl", mapping=m
    )
    assert rows(db, "SELECT ts FROM requests WHERE source = 'st-jsonl' ORDER BY ts") == [
        (start,),
        (start + timedelta(seconds=30),),
    ]
    with pytest.raises(importers.ImportFailed, match="not both"):
        importers.import_file(db, CFG, tmp_path / "st.jsonl", "jsonl", mapping=m, shift_to=to)


def test_shift_to_now_from_the_command_line(tmp_path, capsys):
    path, dbp = iso_jsonl(tmp_path / "old.jsonl"), tmp_path / "now.duckdb"
    before = datetime.now(UTC).replace(tzinfo=None)
    assert cli.main(["import", str(path), "--format", "jsonl", *FLAGS, "--shift-to", "now", "--db", str(dbp)]) == 0
    after = datetime.now(UTC).replace(tzinfo=None)
    d = Database(dbp)
    try:
        ((first, last),) = rows(d, "SELECT min(ts), max(ts) FROM requests")
    finally:
        d.close()
    assert before <= last <= after and last - first == timedelta(days=1, hours=6)
    with pytest.raises(SystemExit):
        cli.main(["import", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--shift-to TIME move the whole trace (numeric or ISO times) so that its last request is at TIME" in text


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--shift-to", "yesterday"], "'yesterday' is not `now` or an ISO 8601 time"),
        (["--shift-to", "2999-01-01T00:00:00Z"], "expected a time from 1970-01-01 up to now"),
        (["--shift-to", "1969-12-31"], "expected a time from 1970-01-01 up to now"),
        (["--shift-to", "now", "--start", "2026-01-01"], "not allowed with argument"),
    ],
)
def test_bad_instants_are_one_line(tmp_path, capsys, extra, needle):
    path, dbp = iso_jsonl(tmp_path / "t.jsonl"), tmp_path / "never.duckdb"
    assert cli.main(["import", str(path), "--format", "jsonl", *FLAGS, *extra, "--db", str(dbp)]) == 2
    assert needle in one_line_error(capsys)
    assert not dbp.exists()


# --- 4. demo traffic is idempotent per seed -----------------------------------------------


def test_the_same_seed_adds_nothing_another_seed_adds(db):
    first = demo.generate(CFG, 300, 2, seed=7, end=datetime(2026, 1, 1))
    later = demo.generate(CFG, 300, 2, seed=7, end=datetime(2026, 1, 5))  # run another day
    assert first["request_id"].to_pylist() == later["request_id"].to_pylist()
    assert demo.write(db, first) == 300
    assert demo.write(db, later) == 0
    assert demo.write(db, demo.generate(CFG, 500, 2, seed=7)) == 200  # only the seed's requests not yet logged
    assert demo.write(db, demo.generate(CFG, 300, 2, seed=8)) == 300
    assert rows(db, "SELECT count(*), count(DISTINCT request_id) FROM requests") == [(800, 800)]
    assert "already in" in demo.summary(0, 300, 7, 2, "x.duckdb") and "nothing added" in demo.summary(0, 300, 7, 2, "x")
    assert "200 of seed 7's requests were already" in demo.summary(100, 300, 7, 2, "x")


def test_demo_in_parts_is_bounded_and_the_same_traffic_as_one_part(tmp_path):
    end = datetime(2026, 5, 1)
    parts = list(demo.batches(CFG, 250, 2, seed=4, end=end, size=100))
    assert [p.num_rows for p in parts] == [100, 100, 50]
    whole = demo.generate(CFG, 250, 2, seed=4, end=end)
    # The first part is the one-part run's first rows; every id is the one-part run's id of its row.
    assert parts[0].to_pylist() == demo.generate(CFG, 100, 2, seed=4, end=end).to_pylist()
    ids = [i for p in parts for i in p["request_id"].to_pylist()]
    assert ids == whole["request_id"].to_pylist() and len(set(ids)) == 250
    assert all(p["ts"].to_pylist() == sorted(p["ts"].to_pylist()) for p in parts)
    # Written twice, the seed's parts add nothing the second time.
    db = Database(tmp_path / "parts.duckdb")
    assert sum(demo.write(db, p) for p in demo.batches(CFG, 250, 2, seed=4, end=end, size=100)) == 250
    assert sum(demo.write(db, p) for p in demo.batches(CFG, 250, 2, seed=4, end=end, size=100)) == 0
    db.close()


def test_demo_twice_on_the_command_line(tmp_path, capsys):
    dbp = str(tmp_path / "demo.duckdb")
    for _ in range(2):
        assert cli.main(["demo", "--requests", "150", "--days", "1", "--seed", "3", "--db", dbp]) == 0
    out = capsys.readouterr().out
    assert "wrote 150 demo requests" in out
    assert cli.main(["stats", "--db", dbp, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_requests"] == 150


# --- 5. --out and a closed pipe -----------------------------------------------------------


@pytest.mark.parametrize("what", ["requests", "spend"])
def test_export_into_a_missing_folder(tmp_path, capsys, what):
    target = tmp_path / "no" / "such" / "out.csv"
    assert cli.main(["export", what, "--out", str(target), "--db", str(tmp_path / "none.duckdb")]) == 2
    err = one_line_error(capsys)
    assert f"the folder {target.parent} does not exist; create it first" in err
    assert not target.parent.exists()  # it is not created
    assert cli.main(["export", what, "--out", str(tmp_path), "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "is a folder: give a file name" in one_line_error(capsys)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipe") / "pipe.duckdb"
    d = Database(path)
    demo.write(d, demo.generate(CFG, 400, 2, seed=1))
    d.close()
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["export", "requests"],
        ["export", "spend", "--by", "day"],
        ["replay", "--json"],
        ["replay", "--sweep"],
        ["import", "{csv}", "--format", "csv", "--ts-unit", "ms", *FLAGS, "--json"],
    ],
)
def test_a_closed_pipe_ends_quietly(tmp_path, demo_db, args):
    args = [str(numeric_csv(tmp_path / "p.csv")) if a == "{csv}" else a for a in args]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write meets a closed pipe
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sophia.cli", *args, "--db", str(demo_db)],
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write)
    _, err = proc.communicate(timeout=120)
    assert err.decode() == "" and proc.returncode == 141


# --- 6. every numeric option has a range, checked first -----------------------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["demo", "--requests", "0"], "from 1 to 10,000,000"),
        (["demo", "--requests", "10000001"], "from 1 to 10,000,000"),
        (["demo", "--requests", "many"], "not a whole number"),
        (["demo", "--days", "0"], "from 1 to 3,650"),
        (["demo", "--days", "3651"], "from 1 to 3,650"),
        (["demo", "--seed", "-1"], "from 0 to 4,294,967,295"),
        (["demo", "--seed", "4294967296"], "from 0 to 4,294,967,295"),
        (["replay", "--cost-threshold", "inf"], "expected a finite number"),
        (["replay", "--cost-threshold", "nan"], "expected a finite number"),
        (["replay", "--cost-threshold", "-1"], "expected USD from 0 to 10,000"),
        (["replay", "--cost-threshold", "10001"], "expected USD from 0 to 10,000"),
        (["replay", "--complexity-threshold", "inf"], "expected a number from 0 to 1"),
        (["replay", "--complexity-threshold", "1.5"], "expected a number from 0 to 1"),
    ],
)
def test_numeric_options_out_of_range(tmp_path, capsys, args, needle):
    dbp = tmp_path / "never.duckdb"
    assert cli.main([*args, "--db", str(dbp)]) == 2
    err = one_line_error(capsys)
    assert needle in err and f"argument {args[1]}" in err
    assert not dbp.exists()


@pytest.mark.parametrize(
    "command,documented",
    [
        ("demo", ["1 to 10,000,000", "1 to 3,650", "0 to 4,294,967,295"]),
        ("replay", ["0 to 1", "0 to 10,000"]),
    ],
)
def test_ranges_are_in_the_help(capsys, command, documented):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for d in documented:
        assert d in text
