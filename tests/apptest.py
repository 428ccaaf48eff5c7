"""Driving the Streamlit app server-side through AppTest (no browser): open pages, read what they say.

The `app_env` fixture (tests/conftest.py) gives each test its own database and configuration and
fresh Streamlit caches, so the app opens a new runtime for it.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from sophia import config
from sophia.ingest import demo
from sophia.log.db import Database
from tests.helpers import ROOT, frame

APP = str(ROOT / "app.py")
HOME = "pages/chat.py"  # the page app.py opens first

rows = frame  # the log as a DataFrame (the app must have let go of the file: close_app())


def seed(db_path: Path, cfg_path: Path, n: int = 2000, days: int = 14, seed_: int = 3) -> None:
    """Demo traffic into the log, as `sophia demo` in another process would write it (its fleet
    charged over its span)."""
    cfg = config.load(cfg_path)
    db = Database(db_path)
    demo.write(db, demo.generate(cfg, n, days, seed_), cfg=cfg)
    db.close()


def clear_caches() -> None:
    """Fresh Streamlit caches; clearing the resources closes the app's runtime (flushes, releases the file)."""
    st.cache_data.clear()
    st.cache_resource.clear()


def close_app() -> None:
    """Release the app's runtime so the test can open the file (and see every record)."""
    st.cache_resource.clear()


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def run_page(page: str) -> AppTest:
    at = app().run()
    if page != HOME:
        at.switch_page(page).run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest) -> str:
    """Everything the page says in text elements, joined (to search in)."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


BADGE = re.compile(r":[a-z]+-badge\[(?::material/[a-z_]+: )?(.*?)\]")


def badges(at: AppTest, where=None) -> list[str]:
    """The labels of st.badge elements (AppTest sees them as markdown)."""
    block = where if where is not None else at
    return [m.group(1) for e in block.markdown for m in BADGE.finditer(str(e.value))]


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")
