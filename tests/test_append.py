"""The one append path: every way into the log stores a request id once, whenever it comes again."""

from __future__ import annotations

from sophia.log import schema
from sophia.log.append import append
from sophia.log.db import Database
from sophia.log.writer import Writer
from tests.helpers import read_rows, record


def _count(db: Database) -> int:
    with db.cursor() as cur:
        return cur.execute("SELECT count(*) FROM requests").fetchone()[0]


def test_a_batch_appended_twice_is_stored_once(tmp_path):
    db = Database(str(tmp_path / "log.duckdb"))
    batch = schema.to_arrow([record(i) for i in range(100)])
    with db.cursor() as cur:
        assert append(cur, batch) == 100
        assert append(cur, batch) == 0
    assert _count(db) == 100


def test_only_the_repeated_ids_of_an_overlapping_batch_are_skipped(tmp_path):
    db = Database(str(tmp_path / "log.duckdb"))
    first = [record(i) for i in range(50)]
    later = [record(i) for i in range(25, 75)]  # the same times as half of the first batch, new ids
    with db.cursor() as cur:
        append(cur, schema.to_arrow(first))
        # 25 repeated (same id, same time), 50 new ones interleaved in time with the logged rows
        assert append(cur, schema.to_arrow(first[25:] + later)) == 50
        # A batch older than everything logged goes in whole; repeated, it adds nothing.
        old = schema.to_arrow([{**record(0), "ts": record(0)["ts"].replace(year=2020)} for _ in range(10)])
        assert append(cur, old) == 10 and append(cur, old) == 0
    assert _count(db) == 110


def test_the_writer_stores_a_record_put_twice_once(tmp_path):
    db = Database(str(tmp_path / "log.duckdb"))
    writer = Writer(db, 0.01)
    rec = record(1)
    writer.put(rec)
    assert writer.flush(10)
    writer.put(dict(rec))  # a retry of the same request
    rows = read_rows(writer, db)
    writer.close()
    assert [r["request_id"] for r in rows] == [rec["request_id"]]
