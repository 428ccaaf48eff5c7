"""Importers: every format, bad rows with line numbers, idempotence, and the real traces."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from sophia.ingest import importers
from sophia.log.db import Database
from tests.helpers import reference_config

CFG = reference_config()
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real data folder {DATA} is absent")


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "imp.duckdb")
    yield d
    d.close()


def rows(db, sql):
    with db.cursor() as cur:
        return cur.execute(sql).fetchall()


def test_azure_with_bad_rows(tmp_path, db):
    p = tmp_path / "trace.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "not-a-time,10,10\n"
        "2023-11-16 18:15:47.0,-5,10\n"
        "2023-11-16 18:15:48.0,12\n"
        "2023-11-16 18:15:49.0,1200,1.5\n"
        "2023-11-16 18:15:50.0,4000,2000\n"
    )
    r = importers.import_file(db, CFG, p, "azure")
    assert (r.imported, r.skipped, r.source) == (2, 4, "trace-csv")
    assert [ln for ln, _ in r.problems] == [3, 4, 5, 6]
    reasons = dict(r.problems)
    assert "not an ISO 8601 time" in reasons[3] and "ContextTokens '-5'" in reasons[4]
    assert "2 fields where the header has 3" in reasons[5] and "GeneratedTokens '1.5'" in reasons[6]
    got = rows(
        db,
        "SELECT ts, prompt_tokens, completion_tokens, prompt_chars, max_tokens, keywords, source "
        "FROM requests ORDER BY ts",
    )
    assert got[0][0] == datetime(2023, 11, 16, 18, 15, 46, 680590)
    assert got[0][1:] == (374, 44, 4 * 374, 44, [], "trace-csv")
    assert got[1][1:3] == (4000, 2000)
    # token-only: 16,000 chars (+0.3) and max_tokens 2,000 (+0.3) = 0.6 -> serverless under default
    assert rows(db, "SELECT tier, complexity FROM requests WHERE prompt_tokens = 4000") == [("serverless", 0.6)]


def test_second_import_adds_nothing(tmp_path, db):
    p = tmp_path / "t.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,2\n")
    assert importers.import_file(db, CFG, p, "azure").imported == 1
    again = importers.import_file(db, CFG, p, "azure")
    assert again.already and "already imported" in again.summary()
    assert rows(db, "SELECT count(*) FROM requests") == [(1,)]
    assert rows(db, "SELECT rows_imported, rows_skipped FROM imports") == [(1, 0)]


@pytest.mark.parametrize(
    "content,needle",
    [
        ("", "is empty"),
        ("   \n\n", "is empty"),
        ("a,b,c\n1,2,3\n", "does not fit --format azure"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nx,y,z\n", "no row of"),
    ],
)
def test_wrong_or_empty_files(tmp_path, db, content, needle):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(importers.ImportFailed, match=needle):
        importers.import_file(db, CFG, p, "azure")
    assert rows(db, "SELECT count(*) FROM requests") == [(0,)]


def test_non_utf8_and_huge_field(tmp_path, db):
    p = tmp_path / "mixed.csv"
    huge = "x" * (importers.MAX_FIELD + 10)
    p.write_bytes(b"t,p,c,text\n0,10,5,hello\n1,10,5,caf\xe9\n2,10,5," + huge.encode() + b"\n3,10,5,analyze this\n")
    r = importers.import_file(db, CFG, p, "csv", mapping=importers.Mapping("t", "s", "p", "c", prompt_col="text"))
    assert r.imported == 2
    reasons = dict(r.problems)
    assert reasons[3] == "not UTF-8 text"
    assert any("field larger than field limit" in v for v in reasons.values())
    got = rows(db, "SELECT prompt_chars, keywords FROM requests ORDER BY ts")
    assert got == [(5, []), (12, ["analyze"])]  # rows with text are scored like live requests


def test_csv_numeric_offsets_from_start(tmp_path, db):
    p = tmp_path / "offsets.csv"
    p.write_text("ms,in,out,lat,model\n0,100,10,250.5,a\n1500,200,20,300,b\n")
    start = datetime(2026, 3, 1, 12, 0, 0)
    m = importers.Mapping("ms", "ms", "in", "out", model_col="model", latency_col="lat", start=start)
    importers.import_file(db, CFG, p, "csv", source="mine", mapping=m)
    assert rows(db, "SELECT ts, latency_ms, source FROM requests ORDER BY ts") == [
        (start, 250.5, "mine"),
        (datetime(2026, 3, 1, 12, 0, 1, 500000), 300.0, "mine"),
    ]


def test_jsonl_mapping_and_bad_lines(tmp_path, db):
    p = tmp_path / "t.jsonl"
    p.write_text(
        '{"t": "2026-01-01T00:00:00Z", "p": 10, "c": 3}\n[1,2]\n{oops\n'
        '{"t": "2026-01-01T00:00:01Z", "p": "x", "c": 1}\n'
    )
    r = importers.import_file(db, CFG, p, "jsonl", mapping=importers.Mapping("t", "iso", "p", "c"))
    assert r.imported == 1
    assert [ln for ln, _ in r.problems] == [2, 3, 4]
    other = tmp_path / "t2.jsonl"
    other.write_text("{}\n")
    with pytest.raises(importers.ImportFailed, match="needs --ts-col"):
        importers.import_file(db, CFG, other, "jsonl", mapping=importers.Mapping(None))


def test_openai_format(tmp_path, db):
    p = tmp_path / "chats.jsonl"
    lines = [
        {
            "messages": [{"role": "user", "content": "Please analyze the session context"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 40},
            "model": "gpt-x",
            "created": 1767225600,
        },
        {"messages": [{"role": "user", "content": "hi"}], "choices": [{"message": {"content": "hello there"}}]},
        {"nothing": 1},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = importers.import_file(db, CFG, p, "openai")
    assert (r.imported, [ln for ln, _ in r.problems]) == (2, [3])
    got = rows(
        db,
        "SELECT ts, prompt_tokens, completion_tokens, keywords, complexity FROM requests ORDER BY prompt_tokens DESC",
    )
    assert got[0] == (datetime(2026, 1, 1), 9, 40, ["analyze", "context", "session"], 0.5)
    assert got[1][1:3] == (1, 3)  # estimated from the text: 2 chars -> 1 token, 11 chars -> 3


def test_labels_format(tmp_path, db):
    p = tmp_path / "labels.csv"
    p.write_text(
        "prompt,weak,strong,weak_response,strong_response\n"
        '"What is 2+2?",True,True,4,The answer is 4\n'
        '"multi\nline",False,True,x,yyyy yyyy\n'
        "bad,maybe,True,,\n"
    )
    r = importers.import_file(db, CFG, p, "labels")
    assert r.imported == 2 and r.labelled_models == ["weak", "strong"]
    assert r.problems == [(5, "weak 'maybe' is not True or False")]
    assert rows(db, "SELECT model, count(*), sum(correct::INT) FROM request_labels GROUP BY 1 ORDER BY 1") == [
        ("strong", 2, 2),
        ("weak", 2, 1),
    ]


@needs_data
def test_real_azure_traces(db):
    expect = {}
    for name in ("azure_llm_2023_code", "azure_llm_2023_conv"):
        path = DATA / "traces" / f"{name}.csv"
        n = ptok = ctok = 0
        with open(path) as f:
            next(f)
            for line in f:
                _, a, b = line.strip().split(",")
                n, ptok, ctok = n + 1, ptok + int(a), ctok + int(b)
        expect[f"{name}-csv"] = (n, ptok, ctok)
        r = importers.import_file(db, CFG, path, "azure")
        assert (r.imported, r.skipped) == (n, 0)
    got = {
        s: (c, p, q)
        for s, c, p, q in rows(
            db, "SELECT source, count(*), sum(prompt_tokens), sum(completion_tokens) FROM requests GROUP BY 1"
        )
    }
    assert got == expect
    assert expect["azure_llm_2023_conv-csv"][0] == 19_366 and expect["azure_llm_2023_code-csv"][0] == 8_819


def test_labels_without_quotes_take_the_fast_reader(tmp_path, db):
    p = tmp_path / "plain.csv"
    p.write_text("prompt,a,b\nwhat is one plus one,True,False\nname a colour,False,True\n")
    r = importers.import_file(db, CFG, p, "labels")
    assert (r.imported, r.skipped) == (2, 0)
    assert rows(db, "SELECT model, sum(correct::INT) FROM request_labels GROUP BY 1 ORDER BY 1") == [("a", 1), ("b", 1)]
