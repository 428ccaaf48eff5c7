"""sophia.log.export: the request log as CSV, batch by batch, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import duckdb
import pytest

from sophia import config
from sophia.log import analytics, export, migrations, schema
from sophia.log.filters import Filters
from tests.helpers import reference, reference_config
from tests.test_analytics import handmade

DANGEROUS = ["=1+1", "+SUM(A1:A9)", "-2+3", "@cmd", "\tTAB", "\rCR", '=HYPERLINK("http://x","y")']
HARMLESS = ["a=b", "1+1", "hello@example", " =leading space", "", "plain"]
UNICODE = [
    "héllo wörld",
    "日本語のプロンプト",
    "emoji 🚀🔥",
    "مرحبا",
    'quote " comma , newline\nend',
    "zero\u200bwidth",
]


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "e.duckdb"))
    migrations.apply(c)
    rows = []
    texts = DANGEROUS + HARMLESS + UNICODE
    for i, t in enumerate(texts):
        rows.append(
            handmade(
                i,
                prompt_text=t,
                response_text=t[::-1],
                error=t if i % 2 else None,
                source="api" if i % 3 == 0 else "playground",
                api_key_id=f"key-{i}",
                keywords=["analyze", "stream"] if i == 0 else [],
                failover_path=["serverless", "sophia-ai-core"] if i == 1 else ["serverless"],
            )
        )
    c.register("_r", schema.to_arrow(rows))
    c.execute("INSERT INTO requests BY NAME SELECT * FROM _r")
    c.unregister("_r")
    yield c
    c.close()


def parse(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_columns_are_the_log_without_secrets(con):
    data = export.csv_bytes(con, Filters())
    header = next(csv.reader(io.StringIO(data.decode())))
    assert header == [n for n in schema.NAMES if n != "api_key_id"]
    assert tuple(header) == export.COLUMNS
    assert b"key-" not in data


def test_rows_are_the_filtered_selection(con):
    f = Filters(source=("api",))
    got = parse(export.csv_bytes(con, f))
    want = con.execute("SELECT request_id FROM requests WHERE source = 'api'").fetchall()
    assert sorted(r["request_id"] for r in got) == sorted(r[0] for r in want)
    assert len(got) == analytics.count(con, f)
    assert {r["source"] for r in got} == {"api"}
    # No filter: everything; a filter that matches nothing: just the header.
    assert len(parse(export.csv_bytes(con, Filters()))) == len(DANGEROUS + HARMLESS + UNICODE)
    empty = export.csv_bytes(con, Filters(source=("nobody",)))
    assert parse(empty) == [] and empty.decode().startswith('"request_id","ts"')


@pytest.mark.parametrize("text", DANGEROUS)
def test_formula_cells_are_made_inert(con, text):
    rows = {r["prompt_text"].lstrip("'"): r for r in parse(export.csv_bytes(con, Filters()))}
    row = rows[text]
    assert row["prompt_text"] == "'" + text
    for col, value in row.items():  # no cell of any row starts like a formula
        assert not value.startswith(export.FORMULA_START), (col, value)


@pytest.mark.parametrize("text", HARMLESS)
def test_harmless_cells_are_left_alone(con, text):
    rows = parse(export.csv_bytes(con, Filters()))
    assert text in {r["prompt_text"] for r in rows}


@pytest.mark.parametrize("text", UNICODE)
def test_unicode_and_csv_specials_round_trip(con, text):
    rows = parse(export.csv_bytes(con, Filters(), bom=True))
    assert text in {r["prompt_text"] for r in rows}
    assert text[::-1] in {r["response_text"] for r in rows}


def test_bom_numbers_lists_and_timestamps(con):
    data = export.csv_bytes(con, Filters(), bom=True)
    assert data.startswith(export.BOM)
    rows = {r["request_id"]: r for r in parse(data)}
    r0 = rows["hand0000"]
    assert r0["keywords"] == "analyze;stream"
    assert rows["hand0001"]["failover_path"] == "serverless > sophia-ai-core"
    assert datetime.strptime(r0["ts"], "%Y-%m-%dT%H:%M:%S.%fZ") == handmade(0)["ts"]
    assert float(r0["metered_cost_usd"]) == pytest.approx(0.0000068)
    assert r0["usage_estimated"] == "false" and int(r0["prompt_tokens"]) == 10


def test_batches_give_the_same_file(con):
    one = export.csv_bytes(con, Filters(), batch_rows=100_000)
    chunks = list(export.csv_chunks(con, Filters(), batch_rows=3))
    assert len(chunks) >= 5  # a chunk per batch: memory bounded by the batch, not the selection
    assert b"".join(chunks) == one
    assert sum(c.count(b"request_id") for c in chunks) == 1  # one header


def test_configured_api_keys_never_reach_the_file(con, monkeypatch):
    secret = "sk-live-abcdefghijklmnop0123"
    con.execute("UPDATE requests SET prompt_text = 'my key is ' || ? WHERE request_id = 'hand0007'", [secret])
    data = reference()
    data["endpoints"][0]["api_key_env"] = "SOPHIA_EXPORT_TEST_KEY"  # the serverless endpoint
    cfg = config.parse(data)
    monkeypatch.setenv("SOPHIA_EXPORT_TEST_KEY", secret)
    secrets = export.secret_values(cfg)
    assert secrets == [secret]
    data = export.csv_bytes(con, Filters(), secrets=secrets)
    assert secret.encode() not in data and b"my key is [secret]" in data
    # Streamlit secrets count as well when the environment has none.
    monkeypatch.delenv("SOPHIA_EXPORT_TEST_KEY")
    assert export.secret_values(cfg, {"SOPHIA_EXPORT_TEST_KEY": secret}) == [secret]


def test_the_caller_cursor_stays_usable(con):
    gen = export.csv_chunks(con, Filters(), batch_rows=2)
    next(gen)
    assert con.execute("SELECT count(*) FROM requests").fetchone()[0] > 0  # mid-export
    rest = b"".join(gen)
    assert rest


def test_inert_frame_for_the_table():
    import pandas as pd

    df = pd.DataFrame({"error": ["=cmd|' /C calc'!A0", "fine", None], "n": [-1, 2, 3]})
    out = export.inert_frame(df)
    assert list(out.error[:2]) == ["'=cmd|' /C calc'!A0", "fine"] and pd.isna(out.error[2])
    assert list(out.n) == [-1, 2, 3]  # numbers are not text
    assert df.error[0].startswith("=")  # the input is not changed


def test_neutralize_and_file_name():
    assert export.neutralize("=1") == "'=1" and export.neutralize("a=1") == "a=1"
    assert export.neutralize(None) is None and export.neutralize("") == ""
    assert export.file_name(Filters(), datetime(2026, 1, 2, 3, 4, 5)) == "sophia-requests-20260102-030405.csv"


@pytest.mark.slow
def test_large_selection_streams(tmp_path):
    """Many rows: chunks arrive batch by batch and add up to every row."""
    from sophia.ingest import demo
    from sophia.log.db import Database

    cfg = reference_config()
    db = Database(tmp_path / "big.duckdb")
    demo.write(db, demo.generate(cfg, 60_000, 5, seed=2, end=datetime(2026, 1, 1) + timedelta(days=5)))
    db.close()
    c = duckdb.connect(str(tmp_path / "big.duckdb"))
    n_lines, n_chunks = 0, 0
    for chunk in export.csv_chunks(c, Filters(), batch_rows=10_000):
        n_chunks += 1
        n_lines += chunk.count(b"\n")
    c.close()
    assert n_chunks >= 6 and n_lines == 60_001
