"""The Cost simulator page: runs on request and keeps its result, inputs in the main area with ranges,
work refused before it starts, captions that say what was selected, tables for people, errors once."""

from __future__ import annotations

import math
import re
import tracemalloc

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from sophia.ingest import demo
from sophia.log.db import Database
from sophia.sim import limits
from sophia.ui import sim_form
from tests.helpers import ROOT, reference, reference_config, write_toml

APP = str(ROOT / "app.py")


@pytest.fixture
def page(tmp_path, monkeypatch):
    """The app on the reference deployment with 3,000 demo requests over two days, opened at the simulator."""
    cfg_path = write_toml(tmp_path / "sophia.toml", reference())
    db_path = tmp_path / "page.duckdb"
    db = Database(db_path)
    demo.write(db, demo.generate(reference_config(), 3000, 2, seed=1))
    db.close()
    monkeypatch.setenv("SOPHIA_CONFIG", str(cfg_path))
    monkeypatch.setenv("SOPHIA_DB", str(db_path))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/simulator.py").run()
    assert not at.exception, [e.value for e in at.exception]
    yield at
    st.cache_data.clear()
    st.cache_resource.clear()


def _texts(at: AppTest) -> str:
    return "\n".join(
        str(e.value)
        for kind in ("markdown", "caption", "info", "warning", "error", "success")
        for e in getattr(at, kind)
    )


def _run(at: AppTest) -> AppTest:
    at.button(key="sim_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


# --- runs on request, keeps its result ------------------------------------------------------------


def test_the_page_opens_without_simulating(page):
    at = page
    assert not at.metric, [m.label for m in at.metric]  # no simulation ran
    assert "sim_result" not in at.session_state
    assert any("press **Run simulation**" in str(i.value) for i in at.info)
    assert at.button(key="sim_run").label == "Run simulation"


def test_a_run_is_kept_and_reused_for_the_same_inputs(page):
    at = _run(page)
    first = at.session_state["sim_result"]["report"]
    assert [m.value for m in at.metric if m.label == "Monthly cost"]
    at.run()  # any rerun (a tab, a download) shows the kept result without simulating
    assert at.session_state["sim_result"]["report"] is first
    _run(at)  # the same inputs: the same result
    assert at.session_state["sim_result"]["report"] is first
    assert "result kept" in _texts(at)
    at.number_input(key="sim_gpus").set_value(3)
    _run(at)
    assert at.session_state["sim_result"]["report"] is not first
    assert at.session_state["sim_result"]["report"].des.gpus == 3


def test_changed_inputs_are_flagged_until_run(page):
    at = _run(page)
    at.selectbox(key="sim_gpu_preset").select_index(1).run()  # a preset fills the fields at once
    assert "inputs have changed since this run" in _texts(at)
    _run(at)
    assert "inputs have changed" not in _texts(at)


# --- the layout -----------------------------------------------------------------------------------


def test_the_inputs_are_in_the_main_area_not_the_sidebar(page):
    at = page
    side = at.sidebar
    keys = [w.key for kind in ("number_input", "selectbox", "button", "checkbox", "radio") for w in getattr(side, kind)]
    assert not [k for k in keys if k and k.startswith("sim_")], keys
    main = at.main
    assert main.number_input(key="sim_scale") is not None and main.button(key="sim_run") is not None
    assert [t.label for t in at.tabs][:4] == [
        ":material/ssid_chart: Traffic",
        ":material/dns: Fleet",
        ":material/cloud: Serverless & costs",
        ":material/rule: Policy & target",
    ]


# --- ranges and work ------------------------------------------------------------------------------


def _too_big(key: str):
    r = limits.RANGES[sim_form.FIELDS[key].range]
    return int(r.hi) * 10 + 1 if r.whole else r.hi * 10 + 1


def test_every_numeric_field_out_of_range_is_refused_with_its_range(page):
    at = page
    at.radio(key="sim_mode").set_value(sim_form.SYNTHETIC)  # the profile's volume fields count then
    for key, f in sim_form.FIELDS.items():
        before = at.number_input(key=key).value
        at.number_input(key=key).set_value(_too_big(key))
        _run(at)
        said = _errors(at)
        allowed = limits.RANGES[f.range].allowed()
        assert len(said) == 1 and f"{f.label} must be {allowed}" in said[0], (key, said)
        assert "sim_result" not in at.session_state or at.session_state["sim_result"]["error"]
        at.number_input(key=key).set_value(before)
    _run(at)
    assert not _errors(at), _errors(at)


def test_a_million_times_the_traffic_is_refused_at_once(page):
    at = page
    at.number_input(key="sim_scale").set_value(1_000_000.0)
    _run(at)
    assert _errors(at) == [
        "**The simulation cannot run with these inputs.** Scale (× arrival rate) must be a number from 0.001 to "
        "10,000 (got 1,000,000): 1 keeps the traffic as recorded, 2 doubles its rate"
    ]


def test_max_concurrency_zero_is_refused(page):
    at = page
    at.number_input(key="sim_conc").set_value(0)
    _run(at)
    assert len(_errors(at)) == 1
    assert "Max concurrency must be a whole number from 1 to 4,096 (got 0)" in _errors(at)[0]


def test_too_many_requests_are_refused_before_any_is_made(page):
    """900 × 3,000 logged requests is more than fits in the memory budget: refused, with next to no memory used."""
    at = page
    at.number_input(key="sim_scale").set_value(900.0)
    tracemalloc.start()
    try:
        _run(at)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    said = _errors(at)
    assert len(said) == 1 and f"at most {limits.MAX_REQUESTS:,} fit in 1 GB" in said[0], said
    assert "lower Scale (× arrival rate)" in said[0]
    assert peak < 100e6, peak  # 2.7M requests would take ~1 GB


# --- what the results say -------------------------------------------------------------------------


def test_the_headline_describes_the_selection(page):
    at = _run(page)
    head = next(str(c.value) for c in at.caption if "requests over" in str(c.value))
    assert "(all sources, last 7 days)" in head and "whole log" not in head
    at.selectbox(key="sim_range").set_value("All time")
    at.multiselect(key="sim_sources").set_value(["demo"])
    _run(at)
    head = next(str(c.value) for c in at.caption if "requests over" in str(c.value))
    assert "(demo, the whole log)" in head


def _cells(df) -> list:
    return [v for col in df.columns for v in df[col]] + list(df.index if df.index.name else [])


def test_tables_have_labels_units_and_no_none(page):
    at = page
    at.checkbox(key="sim_be").check()
    at.checkbox(key="sim_opt").check()
    _run(at)
    at.button(key="sim_ref").click().run()
    at.button(key="sim_save").click().run()
    assert not at.exception and not _errors(at), _errors(at)
    frames = [d.value for d in at.dataframe]
    assert len(frames) >= 7  # latency, comparison, break-even, optimizer, reference ×2, scenarios
    for df in frames:
        assert not [c for c in df.columns if "_" in str(c)], list(df.columns)
        for v in _cells(df):
            assert v is not None and not (isinstance(v, float) and math.isnan(v)), df
            assert str(v) not in ("None", "nan", "NaN"), df
    texts = _texts(at)
    assert not re.search(r"\{'|\{\"", texts), "a raw dict is printed"


def test_the_break_even_table_has_every_baseline(page):
    at = page
    at.checkbox(key="sim_be").check()
    _run(at)
    table = next(d.value for d in at.dataframe if "Curves" in d.value.columns)
    assert list(table["Curves"]) == [
        "all-serverless vs dedicated-only",
        "all-serverless vs hybrid",
        "dedicated-only vs hybrid",
    ]
    for verdict in table["Verdict"]:
        assert "cheaper" in verdict or "same cost" in verdict or "not comparable" in verdict, verdict


def _shown(at: AppTest, text: str) -> int:
    """How many elements say `text`: text elements and the labels of status boxes and expanders."""
    labels = [str(getattr(e, "label", "")) for kind in ("expander", "status") for e in at.get(kind)]
    return sum(text in t for t in [*_texts(at).split("\n"), *labels])


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("sim_gpus", 0, "needs at least one GPU"),  # found while building the run
        ("sim_wait", -5.0, "Wait before overflow (ms) must be a number from 0 to 600,000 (got -5)"),
    ],
)
def test_an_error_is_shown_once(page, key, value, said):
    at = page
    at.selectbox(key="sim_policy").set_value("dedicated")
    at.number_input(key=key).set_value(value)
    _run(at)
    assert len(_errors(at)) == 1, _errors(at)
    assert said in _errors(at)[0]
    assert _shown(at, "cannot run") == 1
