"""Replay: the live policy over the log, reproducing decisions, costing, sweeping, judging quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sophia.analysis import replay
from sophia.ingest import demo, importers
from sophia.log import versions
from sophia.log.db import Database
from sophia.log.writer import Writer
from sophia.routing.result import ChatRequest
from sophia.routing.router import Router
from tests.helpers import reference_config

CFG = reference_config()
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real data folder {DATA} is absent")


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "replay.duckdb")
    yield d
    d.close()


def load(db, sources=None):
    with db.cursor() as cur:
        return replay.load(cur, sources)


def test_replay_reproduces_demo_decisions(db):
    demo.write(db, demo.generate(CFG, 5000, 3, seed=2))
    t = load(db)
    r = replay.replay(t, CFG)
    assert r.requests == 5000
    assert r.runtime_only > 0  # demo traffic has failovers
    assert r.changed_decisions == 0
    with db.cursor() as cur:
        recorded = [
            row[0] for row in cur.execute("SELECT policy_reason FROM requests ORDER BY ts, request_id").fetchall()
        ]
    assert [replay.policy.POLICY_REASONS[c] for c in r.code] == recorded
    # other settings change decisions, and the count says so
    moved = replay.replay(t, CFG.with_routing(complexity_threshold=0.2))
    assert moved.changed_decisions > 0
    assert moved.by_tier["dedicated"] > r.by_tier.get("dedicated", 0)


def test_replay_reproduces_live_routing(db):
    w = Writer(db, 0.01)
    with db.cursor() as cur:
        version = versions.ensure(cur, CFG)
    router = Router(CFG, w, sleep=lambda s: None, policy_version=version)
    prompts = [
        "hi",
        "Please analyze and process this long session context " * 40,
        "x" * 6000,
        "remember the stream context",
        "generate training data " * 100,
    ]
    for i, text in enumerate(prompts * 4):
        router.chat(
            ChatRequest([{"role": "user", "content": f"{i} {text}"}], max_tokens=[64, 2048][i % 2], source="playground")
        )
    w.close()
    t = load(db, ["playground"])
    r = replay.replay(t, CFG)
    assert r.requests == 20 and r.changed_decisions == 0
    with db.cursor() as cur:
        tiers = [
            row[0]
            for row in cur.execute(
                "SELECT tier FROM requests WHERE reason NOT IN ('failover', 'cache') ORDER BY ts, request_id"
            ).fetchall()
        ]
    assert {"serverless", "dedicated"} <= set(tiers)


def test_metered_cost_equals_independent_computation(tmp_path, db):
    p = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    pt, ct = rng.integers(1, 3000, 200), rng.integers(1, 900, 200)
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        + "".join(
            f"2024-01-01 00:{i // 60:02d}:{i % 60:02d},{a},{b}\n" for i, (a, b) in enumerate(zip(pt, ct, strict=False))
        )
    )
    importers.import_file(db, CFG, p, "azure")
    t = load(db)
    r = replay.replay(t, CFG)  # all serverless on the primary model
    assert r.by_tier == {"serverless": 200}
    expected = sum(int(a) * 0.08 + int(b) * 0.30 for a, b in zip(pt, ct, strict=False)) / 1e6
    assert r.metered_cost_usd == pytest.approx(expected, abs=1e-8)
    # everything dedicated (cost threshold 0): no metered cost, a GPU-time share instead
    d = replay.replay(t, CFG.with_routing(cost_threshold_usd=0.0))
    assert d.by_tier == {"dedicated": 200} and d.metered_cost_usd == 0 and d.amortized_cost_usd > 0
    assert d.fixed_cost_usd == pytest.approx(r.fixed_cost_usd)


def test_sweep_is_monotonic_and_has_101_points(db):
    demo.write(db, demo.generate(CFG, 3000, 2, seed=4))
    t = load(db)
    sw = replay.sweep(t, CFG)
    assert len(sw) == 101
    assert (np.diff(sw["dedicated_share"]) <= 0).all()
    assert sw["dedicated_share"].iloc[0] > sw["dedicated_share"].iloc[-1]
    one = replay.replay(t, CFG.with_routing(complexity_threshold=0.35))
    row = sw[np.isclose(sw["threshold"], 0.35)].iloc[0]
    assert row["dedicated"] == one.by_tier.get("dedicated", 0)
    assert row["metered_cost_usd"] == pytest.approx(one.metered_cost_usd, abs=1e-9)
    assert replay.threshold_for_share(sw, row["dedicated_share"]) == pytest.approx(0.35, abs=0.051)


@needs_data
def test_labelled_gsm8k_quality_and_curves(db):
    contaminated = {
        json.loads(line)["eval_prompt"]
        for line in (DATA / "labels" / "routellm_gsm8k_contaminated.jsonl").read_text().splitlines()
        if line.strip()
    }
    r = importers.import_file(
        db, CFG, DATA / "labels" / "routellm_gsm8k_responses.csv", "labels", exclude_prompts=contaminated
    )
    assert r.imported == 1319 - len(contaminated)
    t = load(db)
    tiers = replay.label_tiers(t)
    assert tiers == {"serverless": "mistralai/Mixtral-8x7B-Instruct-v0.1", "dedicated": "gpt-4-1106-preview"}
    weak = t.labels[tiers["serverless"]][t.labelled].mean()
    strong = t.labels[tiers["dedicated"]][t.labelled].mean()
    none = replay.replay(t, CFG.with_routing(complexity_threshold=1.0, cost_threshold_usd=1e6))
    every = replay.replay(t, CFG.with_routing(cost_threshold_usd=0.0))
    assert none.dedicated_share == 0 and none.quality == weak
    assert every.dedicated_share == 1 and every.quality == strong
    sw = replay.sweep(t, CFG, tiers=tiers)
    c = replay.curve(t, sw, tiers)
    assert c.random_apgr == pytest.approx(0.5, abs=0.02)
    assert c.oracle_apgr >= c.apgr
    oracle_q = np.interp(sw["dedicated_share"], c.oracle["share"], c.oracle["quality"])
    assert (sw["quality"].to_numpy() <= oracle_q + 1e-12).all()
    assert replay.threshold_for_quality(sw, 0.99) is None
