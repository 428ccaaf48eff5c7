"""The request log: batching, read-your-writes, crashes, migrations, several processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import duckdb
import pytest

from sophia.log import inbox, migrations
from sophia.log.db import Database, DatabaseBusy
from sophia.log.writer import Writer
from tests.helpers import ROOT, WRITER_CHILD, record, run_cli


def count(db: Database) -> int:
    with db.cursor() as cur:
        return cur.execute("SELECT count(*) FROM requests").fetchone()[0]


def test_eight_threads_thousand_records_each(tmp_path):
    db = Database(tmp_path / "log.duckdb")
    w = Writer(db, 0.02)

    def work(t):
        for i in range(1000):
            w.put(record(i, f"thread-{t}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    with db.cursor() as cur:
        assert cur.execute("SELECT count(*), count(DISTINCT request_id) FROM requests").fetchone() == (8000, 8000)
        per = dict(cur.execute("SELECT source, count(*) FROM requests GROUP BY 1").fetchall())
    assert per == {f"thread-{t}": 1000 for t in range(8)}
    db.close()


def test_read_your_writes(tmp_path, reference_toml):
    from sophia.runtime import Runtime

    rt = Runtime.open(str(reference_toml), str(tmp_path / "r.duckdb"))
    rt.writer.put(record(1))
    with rt.reader() as cur:
        assert cur.execute("SELECT count(*) FROM requests").fetchone()[0] == 1
    rt.close()


def test_a_runtime_whose_log_file_is_replaced_by_a_new_one_keeps_its_settings_and_budgets(tmp_path, reference_toml):
    from sophia.runtime import Runtime

    path = tmp_path / "r.duckdb"
    rt = Runtime.open(str(reference_toml), str(path))
    try:
        budgets = [b.name for b in rt.guard.budgets]
        rt.db.close()
        path.unlink()
        rt.db = Database(path)  # what the next acquire finds at the path: an empty log
        rt.router.writer.db = rt.writer.db = rt.db
        assert rt.refresh_settings() and rt.refresh_budgets()  # no traceback every refresh
        assert rt.refresh_settings() is False and rt.refresh_budgets() is False
        assert [b.name for b in rt.guard.budgets] == budgets
        with rt.reader() as cur:
            assert cur.execute("SELECT count(*) FROM settings_versions").fetchone()[0] == 1
            assert cur.execute("SELECT count(*) FROM budget_versions").fetchone()[0] == 1
    finally:
        rt.close()


def test_file_is_released_when_idle(tmp_path):
    db = Database(tmp_path / "idle.duckdb", idle_s=0.05)
    assert count(db) == 0
    assert db.is_open
    deadline = time.monotonic() + 5
    while db.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not db.is_open
    # another "process" (a second connection here) can now open it
    con = duckdb.connect(str(tmp_path / "idle.duckdb"))
    con.close()
    db.close()


def test_records_go_to_inbox_while_another_process_holds_the_file(tmp_path):
    path = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(path)!r}); print('held', flush=True); "
            "time.sleep(1.5); c.close()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    db = Database(path)
    w = Writer(db, 0.02)
    for i in range(300):
        w.put(record(i))
    w.flush()
    assert w.spilled == 300 and w.written == 0
    assert inbox.pending(db.inbox)
    with pytest.raises(DatabaseBusy, match="in use by another process"):
        db.acquire(wait_s=0.2)
    holder.wait()
    assert count(db) == 300  # ingested once the file was free
    assert not inbox.pending(db.inbox)
    assert count(db) == 300  # and only once
    w.close()
    db.close()


def test_ingest_is_idempotent(tmp_path):
    from sophia.log import schema

    db = Database(tmp_path / "i.duckdb")
    rows = [record(i) for i in range(50)]
    table = schema.to_arrow(rows)
    with db.cursor() as cur:
        cur.register("t", table)
        cur.execute("INSERT INTO requests BY NAME SELECT * FROM t")
        # a crash after the insert but before the segment was removed: the same rows come back
        inbox.write_segment(db.inbox, table)
        assert inbox.ingest(cur, db.inbox) == 0
        assert cur.execute("SELECT count(*) FROM requests").fetchone()[0] == 50
    db.close()


def test_a_segment_holding_a_request_twice_or_one_without_an_id_stores_each_request_once(tmp_path, caplog):
    from sophia.log import schema

    db = Database(tmp_path / "d.duckdb")
    rows = [record(i) for i in range(3)]
    twice = dict(rows[1])
    no_id = {**record(9), "request_id": None}
    with db.cursor():
        pass
    inbox.write_segment(db.inbox, schema.to_arrow([*rows, twice, no_id]))
    with db.cursor() as cur:  # the next use ingests the segment
        assert cur.execute("SELECT count(*), count(DISTINCT request_id) FROM requests").fetchone() == (3, 3)
        assert cur.execute("SELECT count(*) FROM requests WHERE request_id IS NULL").fetchone()[0] == 0
    assert "1 records without a request id were not logged" in caplog.text
    db.close()


def test_migrations_run_twice_change_nothing(tmp_path):
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    first = migrations.apply(con)
    assert first == [m.__name__ for m in migrations.MIGRATIONS]
    tables = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY ALL"
    ).fetchall()
    assert migrations.apply(con) == []
    assert (
        con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY ALL").fetchall()
        == tables
    )
    assert con.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(migrations.MIGRATIONS)
    con.close()


def test_a_log_with_32_bit_token_columns_is_widened_and_keeps_its_rows(tmp_path):
    from sophia.log import schema

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    con.execute(schema.create_requests_sql().replace("BIGINT", "INTEGER"))  # as logs were created before m011
    for m in migrations.MIGRATIONS[:-1]:
        m(con)
        con.execute("INSERT INTO _migrations VALUES (?, now()::TIMESTAMP)", [m.__name__])
    con.execute("INSERT INTO requests (request_id, ts, completion_tokens) VALUES ('old', TIMESTAMP '2026-01-01', 7)")
    assert migrations.apply(con) == ["m011_wide_usage"]
    con.execute(
        "INSERT INTO requests (request_id, ts, completion_tokens) VALUES ('big', TIMESTAMP '2026-01-02', ?)",
        [3 * 10**9],
    )
    assert con.execute("SELECT request_id, completion_tokens FROM requests ORDER BY ts").fetchall() == [
        ("old", 7),
        ("big", 3 * 10**9),
    ]
    con.close()


def test_a_file_with_another_programs_requests_table_is_refused_untouched(tmp_path):
    from sophia.log.db import DatabaseError

    path = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE requests (id INTEGER, body VARCHAR)")
    con.close()
    with pytest.raises(DatabaseError, match="its `requests` table is not a Sophia request log"):
        with Database(path).cursor():
            pass
    con = duckdb.connect(str(path))
    tables = con.execute("SELECT table_name, column_name FROM information_schema.columns ORDER BY ALL").fetchall()
    assert tables == [("requests", "body"), ("requests", "id")]  # nothing added, no _migrations
    con.close()


def test_a_database_file_deleted_while_open_is_noticed_and_the_next_records_land_in_a_new_one(tmp_path, caplog):
    path = tmp_path / "gone.duckdb"
    db = Database(path, idle_s=60, max_hold_s=60)  # held all along: nothing would reopen it
    w = Writer(db, flush_interval_s=0.01)
    try:
        for i in range(5):
            w.put(record(i))
        assert w.flush()
        assert db.is_open
        path.unlink()
        for i in range(5, 12):
            w.put(record(i))
        assert w.flush()
        assert "was deleted or replaced while open" in caplog.text
        with db.cursor() as cur:
            assert cur.execute("SELECT count(*) FROM requests").fetchone()[0] == 7
        assert path.exists()
    finally:
        w.close()
        db.close()
    con = duckdb.connect(str(path))
    assert con.execute("SELECT count(*) FROM requests").fetchone()[0] == 7  # on disk, at the path
    con.close()


@pytest.mark.slow
def test_sigkill_mid_write_loses_at_most_the_unflushed(tmp_path):
    path = str(tmp_path / "crash.duckdb")
    code = WRITER_CHILD.format(root=str(ROOT), path=path, n=1_000_000, source="crash", pace=0.0, confirm=True)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    confirmed = 0
    for line in child.stdout:
        confirmed = int(line)
        if confirmed >= 5000:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    db = Database(path)
    n = count(db)  # opens cleanly
    assert n >= confirmed
    with db.cursor() as cur:
        assert cur.execute("SELECT count(DISTINCT request_id) FROM requests").fetchone()[0] == n
    db.close()


@pytest.mark.slow
def test_two_writers_and_a_reader_share_the_file(tmp_path):
    path = str(tmp_path / "shared.duckdb")
    first = Database(path)
    assert count(first) == 0  # creates the file
    first.close()
    env = {**os.environ, "SOPHIA_DB": path}
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER_CHILD.format(root=str(ROOT), path=path, n=10_000, source=f"w{k}", pace=0.1, confirm=False),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    reader_runs, errors = 0, []
    while any(w.poll() is None for w in writers) or reader_runs < 2:
        r = run_cli("stats", "--json", env=env, timeout=60)
        reader_runs += 1
        if r.returncode != 0 or "lock" in r.stderr.lower():
            errors.append(r.stderr)
    outs = [w.communicate() for w in writers]
    assert all(w.returncode == 0 for w in writers), outs
    assert not any("lock" in err.lower() for _, err in outs), outs
    assert errors == []
    db = Database(path)
    with db.cursor() as cur:
        assert dict(cur.execute("SELECT source, count(*) FROM requests GROUP BY 1").fetchall()) == {
            "w0": 10_000,
            "w1": 10_000,
        }
        assert cur.execute("SELECT count(DISTINCT request_id) FROM requests").fetchone()[0] == 20_000
    db.close()


def test_a_failing_write_keeps_the_records_and_retries(tmp_path, monkeypatch):
    from sophia.log import writer as writer_mod

    db = Database(tmp_path / "full.duckdb")
    w = Writer(db, 0.01)
    calls = {"n": 0}
    real = writer_mod.Writer._write

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real(self, batch)

    monkeypatch.setattr(writer_mod.Writer, "_write", flaky)
    w.put(record(1))
    assert w.flush(10)
    assert count(db) == 1 and calls["n"] >= 2
    assert any("No space left" in e for e in w.errors)
    w.close()
    db.close()
