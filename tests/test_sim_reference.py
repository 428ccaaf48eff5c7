"""The seed's results table explained: its assumptions, the simulator's figures for them, its contradictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sophia import config
from sophia.money import pricing
from sophia.sim import reference
from sophia.ui import sim_plan_view
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
CFG = config.load(ROOT / "sophia.example.toml")


@pytest.fixture(scope="module")
def explained() -> dict:
    return reference.explain(CFG, seconds=10)


def test_the_complex_curl_example_scores_half_and_stays_serverless(explained):
    c = explained["curl"]
    assert c["complex_score"] == pytest.approx(0.5)
    assert c["complex_breakdown"] == {"keywords:analysis": 0.2, "max_tokens": 0.3}
    assert c["complex_tier"] == "serverless"


def test_the_cost_rule_needs_more_output_tokens_than_the_context_window(explained):
    c = explained["curl"]
    out = pricing.price_of(CFG, CFG.routing.serverless_model).output_per_mtok
    assert c["output_tokens_for_cost_rule"] == 333_334 and out == 0.30
    assert c["primary_context_window"] == 131_072
    assert c["cost_rule_reachable"] is False


def test_contradictions_are_computed(explained):
    first = explained["contradictions"][0]
    assert first["implies"] == pytest.approx(0.03 * 500 * 30 * 86_400)  # about $38.9M a month
    values = {a["assumption"]: a["value"] for a in explained["assumptions"]}
    assert values["After: the GPUs' month, busy or idle"] == pytest.approx(2.88 * 720)
    assert values["After: most output tokens per request the GPUs produce at the after rate"] == pytest.approx(7.0)


def test_the_page_shows_readable_tables(explained):
    a = sim_plan_view.assumptions_table(explained)
    assert list(a.columns) == ["Assumption", "Value"] and a["Value"].map(type).eq(str).all()
    c = sim_plan_view.contradictions_table(explained)
    assert "$0.03 a request at 500 req/s" in c["Claim"].tolist()
    assert "never fires through the API" in sim_plan_view.curl_caption(explained)


def test_cli_reference_text_and_json(tmp_path):
    args = ("simulate", "--reference", "--config", str(ROOT / "sophia.example.toml"), "--db", str(tmp_path / "x.db"))
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    assert "it never fires through the API" in out.stdout and "scores 0.5" in out.stdout
    js = run_cli(*args, "--json")
    assert js.returncode == 0, js.stderr
    d = json.loads(js.stdout)
    assert d["curl"]["complex_score"] == 0.5 and len(d["simulated"]) == 3
