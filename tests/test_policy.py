"""Scorer and policy: DESIGN §3 with issue 2's exact semantics, on one request and on a table."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sophia.routing import features, policy
from tests.helpers import reference_config

CFG = reference_config()


def decide(text: str, max_tokens: int | None = None, cfg=CFG, **state):
    f = features.extract([{"role": "user", "content": text}], max_tokens, cfg.scorer, cfg.routing.default_max_tokens)
    return policy.decide(f, cfg, policy.RuntimeState(**state))


def test_reference_hello():
    d = decide("Hello!", 100)
    assert (d.tier, d.endpoint, d.model, d.reason) == (
        "serverless",
        "serverless",
        "llama-4-scout-17b-16e-instruct",
        "cost-optimized",
    )
    assert d.complexity == 0
    # 6 characters -> 2 estimated tokens at $0.08/M, 100 tokens at $0.30/M
    assert d.estimated_cost_usd == pytest.approx((2 * 0.08 + 100 * 0.30) / 1e6, abs=1e-12)


def test_reference_complex_goes_dedicated():
    text = "Please analyze the data, process the records and remember the context of this session. " * 15
    d = decide(text, 2000)
    assert d.complexity == 1.0  # capped
    assert (d.tier, d.endpoint, d.reason) == ("dedicated", "sophia-ai-core", "high-complexity")


@pytest.mark.parametrize(
    "chars,expected",
    [(1000, 0.0), (1001, 0.1), (5000, 0.1), (5001, 0.2), (10000, 0.2), (10001, 0.3)],
)
def test_length_band_edges(chars, expected):
    assert decide("x" * chars, 10).breakdown["length"] == expected


def test_length_counts_all_messages_joined_by_newlines():
    msgs = [{"role": "user", "content": "x" * 500}, {"role": "assistant", "content": "y" * 500}]
    f = features.extract(msgs, 10, CFG.scorer, 512)
    assert f.prompt_chars == 1001  # 500 + newline + 500
    assert policy.decide(f, CFG).breakdown["length"] == 0.1


def test_keywords_are_substrings_counted_once():
    d = decide("PROCESSING and processing and reprocess", 10)
    assert d.breakdown["keywords:analysis"] == 0.1
    d = decide("analyzed streaming sessions", 10)
    assert d.breakdown["keywords:analysis"] == 0.1
    assert d.breakdown["keywords:context"] == 0.4


def test_point_seven_is_not_greater_than_point_seven():
    # 0.1 (length) + 0.2 (analyze, process) + 0.4 (remember, context) = exactly 0.7
    text = "analyze process remember context " + "x" * 1000
    d = decide(text, 10)
    assert d.complexity == 0.7
    assert d.tier == "serverless" and d.reason == "cost-optimized"
    # one more keyword tips it over
    d = decide(text + " generate", 10)
    assert d.complexity == 0.8 and d.reason == "high-complexity"


def test_max_tokens_edge_and_default():
    assert decide("hi", 1000).breakdown["max_tokens"] == 0
    assert decide("hi", 1001).breakdown["max_tokens"] == 0.3
    assert decide("hi").features.max_tokens == 512


def test_estimated_tokens_round_up():
    assert features.estimate_tokens(0) == 0
    assert features.estimate_tokens(1) == 1
    assert features.estimate_tokens(4) == 1
    assert features.estimate_tokens(5) == 2


def test_cost_rule_fires_with_an_expensive_primary():
    models = tuple(
        replace(m, output_per_mtok=500.0) if m.name == CFG.routing.serverless_model else m for m in CFG.models
    )
    cfg = replace(CFG, models=models)
    d = decide("Hello!", 300, cfg)  # 300 x $500/M = $0.15 > $0.10
    assert (d.tier, d.endpoint, d.reason) == ("dedicated", "sophia-data-pipeline", "cost-optimization")
    d = decide("Hello!", 200, cfg)  # exactly $0.10 of output plus 2 input tokens
    assert d.estimated_cost_usd > 0.10 and d.reason == "cost-optimization"
    d = decide("Hello!", 199, cfg)
    assert d.reason == "cost-optimized"


def test_cost_threshold_is_exact():
    # exactly $0.10 is not greater than $0.10
    cfg = replace(
        CFG,
        models=tuple(
            replace(m, input_per_mtok=0.0, output_per_mtok=500.0) if m.name == CFG.routing.serverless_model else m
            for m in CFG.models
        ),
    )
    assert decide("hi", 200, cfg).reason == "cost-optimized"
    assert decide("hi", 201, cfg).reason == "cost-optimization"


def test_runtime_state_forced_budget_health():
    assert decide("hi", 10, force_tier="dedicated").endpoint == "sophia-ai-core"
    d = decide("hi", 10, force_model="llama-4-maverick-17b-128e-instruct-fp8")
    assert (d.tier, d.model, d.reason) == ("serverless", "llama-4-maverick-17b-128e-instruct-fp8", "forced")
    d = decide("hi", 10, budget_action="downgrade")
    assert (d.model, d.reason) == ("llama3.1-8b-instruct", "budget")
    d = decide("hi", 10, budget_action="dedicated-only")
    assert d.tier == "dedicated" and all(CFG.endpoint(e).tier == "dedicated" for e, _ in d.chain)
    assert decide("hi", 10, budget_action="block").refused
    d = decide("hi", 10, unhealthy=frozenset({"serverless"}))
    assert (d.endpoint, d.reason) == ("sophia-ai-core", "failover")


def test_failover_order():
    text = "analyze process generate training remember context"
    d = decide(text, 10)
    assert [e for e, _ in d.chain] == ["sophia-ai-core", "sophia-data-pipeline", "sophia-production", "serverless"]
    assert d.chain[-1][1] == CFG.routing.premium_model
    assert [e for e, _ in decide("hi", 10).chain][:2] == ["serverless", "sophia-ai-core"]


def test_table_matches_single_requests():
    rng = np.random.default_rng(3)
    texts, mts = [], []
    words = ["analyze", "process", "remember", "context", "stream", "hello", "data"]
    for _ in range(400):
        n = int(rng.integers(0, 12_000))
        texts.append(" ".join(rng.choice(words, size=int(rng.integers(0, 5)))) + "z" * n)
        mts.append(int(rng.choice([50, 512, 1000, 1001, 4000])))
    fs = [
        features.extract([{"role": "user", "content": t}], m, CFG.scorer, 512) for t, m in zip(texts, mts, strict=False)
    ]
    counts = policy.group_counts_from_keywords([f.keywords for f in fs], CFG.scorer)
    out = policy.decide_table(
        np.array([f.prompt_chars for f in fs]), np.array([f.est_prompt_tokens for f in fs]), np.array(mts), counts, CFG
    )
    singles = [policy.decide(f, CFG) for f in fs]
    assert list(out["tier"]) == [d.tier for d in singles]
    assert list(out["reason"]) == [d.reason for d in singles]
    assert list(out["endpoint"]) == [d.endpoint for d in singles]
    assert np.allclose(out["complexity"], [d.complexity for d in singles])
    assert {d.reason for d in singles} >= {"cost-optimized", "high-complexity"}


def test_bad_requests_are_refused_clearly():
    with pytest.raises(features.RequestError, match="non-empty list"):
        features.extract([], 10, CFG.scorer, 512)
    with pytest.raises(features.RequestError, match="max_tokens"):
        features.extract([{"role": "user", "content": "x"}], 0, CFG.scorer, 512)
    with pytest.raises(features.RequestError, match="content must be a string"):
        features.extract([{"role": "user", "content": 3}], 10, CFG.scorer, 512)


def test_max_tokens_has_an_upper_bound():
    with pytest.raises(features.RequestError, match="from 1 to 1,000,000"):
        features.extract([{"role": "user", "content": "x"}], 99_999_999_999, CFG.scorer, 512)


def test_a_forced_model_of_another_tier_is_a_clear_error():
    with pytest.raises(features.RequestError, match="served by the dedicated tier, not serverless"):
        decide("hi", 10, force_tier="serverless", force_model="llama-3.3-70b-instruct")
