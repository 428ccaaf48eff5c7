"""Shared fixtures, and a test environment of its own: the suite never touches the developer's
sophia.toml or data/sophia.duckdb.

Before anything is collected, SOPHIA_CONFIG and SOPHIA_DB point at a fresh temporary directory
(one per process: each xdist worker has its own), holding the reference deployment written from
data (tests/helpers.py). The CLI, the app and every subprocess a test starts inherit them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sophia.log.db import Database
from sophia.log.writer import Writer
from tests import helpers
from tests.fakeopenai import FakeOpenAI

_SANDBOX: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SANDBOX
    _SANDBOX = Path(tempfile.mkdtemp(prefix="sophia-tests-"))
    os.environ["SOPHIA_CONFIG"] = str(helpers.write_toml(_SANDBOX / "sophia.toml", helpers.reference()))
    os.environ["SOPHIA_DB"] = str(_SANDBOX / "data" / "sophia.duckdb")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SANDBOX is not None:
        shutil.rmtree(_SANDBOX, ignore_errors=True)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
def clock() -> helpers.FakeClock:
    return helpers.FakeClock()


@pytest.fixture
def log(tmp_path):
    """(db, writer) on a fresh DuckDB file; everything is flushed and closed afterwards."""
    db = Database(tmp_path / "t.duckdb")
    writer = Writer(db, flush_interval_s=0.01)
    yield db, writer
    writer.close()
    db.close()
    assert not writer.errors, writer.errors


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """Point the app at a fresh database and a fast configuration; caches cleared around the test."""
    from tests.apptest import clear_caches  # Streamlit only where the app is tested

    cfg_path = helpers.write_toml(tmp_path / "sophia.toml", helpers.fast_config())
    db_path = tmp_path / "app.duckdb"
    monkeypatch.setenv("SOPHIA_CONFIG", str(cfg_path))
    monkeypatch.setenv("SOPHIA_DB", str(db_path))
    clear_caches()
    yield {"config": cfg_path, "db": db_path, "tmp": tmp_path}
    clear_caches()


@pytest.fixture
def reference_toml(tmp_path) -> Path:
    """The reference deployment written to a file of this test's own."""
    return helpers.write_toml(tmp_path / "sophia.toml", helpers.reference())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Files with slow tests first (whole files, in their own order), so that with -n the long
    # tests start early and the quick ones fill the gaps at the end instead of one worker idling.
    heavy = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in heavy)
