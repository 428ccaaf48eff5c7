"""RouteLLM's call-performance thresholds CPT(50%) and CPT(80%) on the tuning curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sophia.analysis import replay
from sophia.ingest import importers
from sophia.log.db import Database
from tests.helpers import reference_config

CFG = reference_config()
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real data folder {DATA} is absent")


def by_hand(share, quality, weak: float, strong: float, level: float) -> float | None:
    """An independent CPT: walk a fine grid of shares over the anchored, interpolated curve."""
    s = np.r_[0.0, share, 1.0]
    q = np.r_[weak, quality, strong]
    order = np.lexsort((q, s))
    grid = np.linspace(0, 1, 200_001)
    qs = np.interp(grid, s[order], q[order])
    hit = np.nonzero(qs >= weak + (strong - weak) * level / 100 - 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else None


def test_a_hand_built_curve_has_the_cpts_it_was_built_with():
    # Quality climbs from 0.2 to 0.6 at 40% of calls on the strong tier, then to 1.0 at 100%.
    share, quality = np.array([0.4]), np.array([0.6])
    assert replay.cpt(share, quality, 0.2, 1.0, 50) == pytest.approx(0.4)
    # 80% of the gap is quality 0.84: 0.24 of the last segment's 0.4 rise, over its 0.6 of share.
    assert replay.cpt(share, quality, 0.2, 1.0, 80) == pytest.approx(0.4 + 0.6 * 0.24 / 0.4)
    assert replay.cpt(share, quality, 0.2, 1.0, 25) == pytest.approx(0.2)


def test_no_gap_no_cpt_and_a_curve_that_never_gets_there():
    assert replay.cpt(np.array([0.5]), np.array([0.5]), 0.5, 0.5, 50) is None
    # A curve that stays low until the all-strong end reaches 80% only on its last segment.
    assert replay.cpt(np.array([0.9]), np.array([0.1]), 0.0, 1.0, 80) == pytest.approx(0.9 + 0.1 * 0.7 / 0.9)
    assert replay.cpt(np.array([]), np.array([]), 1.0, 0.5, 50) is None  # the strong tier is worse


@needs_data
def test_cpt_on_the_gsm8k_labels_equals_an_independent_computation(tmp_path):
    db = Database(tmp_path / "g.duckdb")
    contaminated = {
        json.loads(line)["eval_prompt"]
        for line in (DATA / "labels" / "routellm_gsm8k_contaminated.jsonl").read_text().splitlines()
        if line.strip()
    }
    importers.import_file(
        db, CFG, DATA / "labels" / "routellm_gsm8k_responses.csv", "labels", exclude_prompts=contaminated
    )
    with db.cursor() as cur:
        t = replay.load(cur, None)
    tiers = replay.label_tiers(t)
    sw = replay.sweep(t, CFG, tiers=tiers)
    c = replay.curve(t, sw, tiers)
    for name, pts in (("policy", c.points), ("random", c.random), ("oracle", c.oracle)):
        for x in replay.CPT_LEVELS:
            mine = c.cpt[name][x]
            hand = by_hand(pts["share"].to_numpy(), pts["quality"].to_numpy(), c.weak, c.strong, x)
            assert mine == pytest.approx(hand, abs=2e-5), (name, x)
    # Random needs about X% of calls for X% of the gap; the oracle needs fewer than the policy.
    assert c.cpt["random"][50] == pytest.approx(0.5, abs=0.05)
    assert c.cpt["oracle"][80] <= c.cpt["policy"][80]
    db.close()


@needs_data
def test_replay_sweep_json_has_the_cpts(tmp_path):
    from tests.helpers import reference, run_cli, write_toml

    db, cfg = str(tmp_path / "g.duckdb"), str(write_toml(tmp_path / "sophia.toml", reference()))
    labels = DATA / "labels" / "routellm_gsm8k_responses.csv"
    r = run_cli("import", str(labels), "--format", "labels", "--db", db, "--config", cfg)
    assert r.returncode == 0, r.stderr
    r = run_cli("replay", "--sweep", "--json", "--db", db, "--config", cfg)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for key in ("cpt_50", "cpt_80", "random_cpt_50", "random_cpt_80", "oracle_cpt_50", "oracle_cpt_80"):
        assert key in data and (data[key] is None or 0 <= data[key] <= 1), key
    text = run_cli("replay", "--sweep", "--db", db, "--config", cfg).stdout
    assert "strong-tier calls needed (CPT): 50% of the gap: policy" in text
