"""RouteLLM's call-performance thresholds CPT(50%) and CPT(80%) on the tuning curve."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sophia.analysis import replay, tuning
from sophia.ingest import importers
from sophia.log.db import Database
from tests.helpers import reference_config

CFG = reference_config()
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real data folder {DATA} is absent")


def by_hand(share, quality, weak: float, strong: float, level: float) -> float | None:
    """An independent CPT: walk a fine grid of shares over the curve's own interpolated points."""
    s, q = np.asarray(share, dtype=float), np.asarray(quality, dtype=float)
    order = np.lexsort((q, s))
    s, q = s[order], q[order]
    grid = np.linspace(s[0], s[-1], 400_001)
    qs = np.interp(grid, s, q)
    hit = np.nonzero(qs >= weak + (strong - weak) * level / 100 - 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else None


def test_a_hand_built_curve_has_the_cpts_it_was_built_with():
    # Quality climbs from 0.2 at no strong calls to 0.6 at 40% of them, then to 1.0 at 100%.
    share, quality = np.array([0.0, 0.4, 1.0]), np.array([0.2, 0.6, 1.0])
    assert replay.cpt(share, quality, 0.2, 1.0, 50) == pytest.approx(0.4)
    # 80% of the gap is quality 0.84: 0.24 of the last segment's 0.4 rise, over its 0.6 of share.
    assert replay.cpt(share, quality, 0.2, 1.0, 80) == pytest.approx(0.4 + 0.6 * 0.24 / 0.4)
    assert replay.cpt(share, quality, 0.2, 1.0, 25) == pytest.approx(0.2)
    assert replay.gap_reached(share, quality, 0.2, 1.0) == pytest.approx(1.0)


def test_cpt_reads_the_curves_own_points_never_an_invented_all_strong_end():
    # A policy that never sends more than 40% of calls to the strong tier, recovering half the gap.
    share, quality = np.array([0.0, 0.4]), np.array([0.2, 0.6])
    assert replay.cpt(share, quality, 0.2, 1.0, 50) == pytest.approx(0.4)
    assert replay.cpt(share, quality, 0.2, 1.0, 80) is None  # joined to (1, strong) it would read 0.76
    assert replay.gap_reached(share, quality, 0.2, 1.0) == pytest.approx(0.5)


def test_no_gap_no_cpt_and_a_curve_that_never_gets_there():
    assert replay.cpt(np.array([0.5]), np.array([0.5]), 0.5, 0.5, 50) is None
    assert replay.gap_reached(np.array([0.5]), np.array([0.5]), 0.5, 0.5) is None
    assert replay.cpt(np.array([0.0, 0.9]), np.array([0.0, 0.1]), 0.0, 1.0, 50) is None
    assert replay.cpt(np.array([]), np.array([]), 1.0, 0.5, 50) is None  # the strong tier is worse
    assert replay.cpt(np.array([]), np.array([]), 0.0, 1.0, 50) is None  # no points at all


def _gsm8k(tmp_path):
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
    db.close()
    return t


# A scorer that reads the prompt's length alone: longer GSM8K questions are harder ones.
LENGTH_SCORER = tuning.propose(
    replace(
        CFG,
        scorer=replace(
            CFG.scorer,
            keyword_groups=(),
            max_tokens_weight=0.0,
            length_bands=tuple((c, c / 1000) for c in range(1000, 0, -50)),
        ),
    ),
    0.5,
    CFG.routing.cost_threshold_usd,
)


@needs_data
def test_cpt_on_the_gsm8k_labels_equals_an_independent_computation(tmp_path):
    t = _gsm8k(tmp_path)
    tiers = replay.label_tiers(t)
    for cfg in (CFG, LENGTH_SCORER):
        c = replay.curve(t, replay.sweep(t, cfg, tiers=tiers), tiers)
        for name, pts in (("policy", c.points), ("oracle", c.oracle)):
            for x in replay.CPT_LEVELS:
                hand = by_hand(pts["share"], pts["quality"], c.weak, c.strong, x)
                mine = c.cpt[name][x]
                assert (mine is None) == (hand is None), (name, x, mine, hand)
                if hand is not None:
                    assert mine == pytest.approx(hand, abs=1e-5), (name, x)
        # A random split needs X% of the calls for X% of the gap, by definition.
        assert c.cpt["random"] == {50: 0.5, 80: 0.8}
        assert c.cpt["oracle"][80] < 0.8
    # The keyword scorer scores almost every GSM8K question 0: no threshold gets to half the gap.
    kw = replay.curve(t, replay.sweep(t, CFG, tiers=tiers), tiers)
    assert kw.cpt["policy"] == {50: None, 80: None}
    assert kw.points["share"].max() < 0.05 and kw.policy_gap_reached < 0.05
    # The length scorer reaches both levels on its own points.
    ln = replay.curve(t, replay.sweep(t, LENGTH_SCORER, tiers=tiers), tiers)
    assert ln.cpt["policy"][50] is not None and ln.cpt["policy"][80] is not None
    assert ln.cpt["policy"][50] < ln.cpt["policy"][80] <= 1.0


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
    assert "strong-tier calls needed (CPT): 50% of the gap: policy never, random 50.0%" in text
    assert "no threshold reaches 50% of the gap: the best recovers" in text
    assert data["policy_gap_reached"] < 0.05


def test_the_tuning_cards_say_never_when_the_sweep_does_not_reach_a_level():
    from sophia.ui import metrics

    pts = pd.DataFrame({"threshold": [0.0, 0.5], "share": [0.0, 0.4], "quality": [0.2, 0.6]})
    grid = pd.DataFrame({"share": [0.0, 1.0], "quality": [0.2, 1.0]})
    cv = replay.Curve(
        0.2,
        1.0,
        pts,
        grid,
        grid,
        0.4,
        0.5,
        0.9,
        {"policy": {50: 0.4, 80: None}, "random": {50: 0.5, 80: 0.8}, "oracle": {50: 0.1, 80: 0.2}},
        0.5,
    )
    cards = {m.label: m for m in metrics._gap(cv)}
    assert cards["CPT(50%)"].value == "40.0%"
    assert cards["CPT(50%)"].delta == "-10.0 pts vs random"
    assert cards["CPT(80%)"].value == "never"
    assert "the best recovers 50.0%" in cards["CPT(80%)"].help
    assert cards["Gap recovered (APGR)"].delta == "-0.10 vs random"
