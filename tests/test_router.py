"""Router: real OpenAIBackends against fake servers on 127.0.0.1, one record per request.

Every endpoint of the reference deployment gets its own FakeOpenAI, answering with its own
text, so a test can fail one endpoint and see exactly who served the request.
"""

from __future__ import annotations

import math
import time

import pytest

from sophia.config import Endpoint, Simulation
from sophia.money import pricing
from sophia.routing.backends.simulated import SimulatedBackend
from sophia.routing.result import ChatRequest
from sophia.routing.router import Router
from tests.fakeopenai import FakeOpenAI, closed_port_url
from tests.helpers import DEDICATED_MODEL, DEDICATED_NAMES, make_config, read_rows

SCOUT = "llama-4-scout-17b-16e-instruct"
MAVERICK = "llama-4-maverick-17b-128e-instruct-fp8"
CORE, PIPELINE, PRODUCTION = DEDICATED_NAMES
NAMES = ("serverless",) + DEDICATED_NAMES
REPLIES = {
    "serverless": "Serverless says hello to you.",  # 5 words
    CORE: "Core GPU answer here.",  # 4 words
    PIPELINE: "Pipeline GPU answer.",  # 3 words
    PRODUCTION: "Production backup answer is here now.",  # 6 words
}
# Scores 0.1 (analyze) + 4 x 0.2 (remember, context, session, stream) > 0.7: high-complexity.
HIGH = "Please analyze this, remember the context of our session and stream it."
BULK_MAX_TOKENS = 400_000  # 400k x $0.30/M > $0.10: cost-optimization (bulk endpoint)


def req(text: str = "Hello!", max_tokens: int = 100, rid: str | None = None, **kw) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": text}], max_tokens=max_tokens, request_id=rid, source="api", **kw
    )


def det(text: str = "Hello!", max_tokens: int = 100, rid: str | None = None, **kw) -> ChatRequest:
    """A client's request at temperature 0: deterministic, so the response cache keeps it."""
    msgs = [{"role": "user", "content": text}]
    body = {"model": "sophia", "messages": msgs, "temperature": 0, "max_tokens": max_tokens}
    return ChatRequest(messages=msgs, max_tokens=max_tokens, request_id=rid, source="api", body=body, **kw)


def joined(handle) -> str:
    """A stream's text (choice 0), read to the end."""
    return "".join(handle.texts())


def fake_prompt_tokens(text: str) -> int:
    return len(text) // 4 + 1  # the fake's usage rule


def words(text: str) -> int:
    return len(text.split())


def metered(cfg, model: str, p: int, c: int) -> float:
    price = pricing.price_of(cfg, model)
    return round((p * price.input_per_mtok + c * price.output_per_mtok) / 1_000_000, 9)


def amortized(cfg, endpoint: str, p: int, c: int) -> float:
    ep = cfg.endpoint(endpoint)
    secs = c / ep.throughput_tps + p / ep.prefill_tps
    return round(secs * ep.hourly_usd / 3600, 9)


@pytest.fixture
def fleet():
    fakes = {n: FakeOpenAI(reply=REPLIES[n]).start() for n in NAMES}
    yield fakes
    for f in fakes.values():
        f.stop()
    for n, f in fakes.items():
        assert f.errors == [], (n, f.errors)


def calls(fleet) -> dict[str, int]:
    return {n: len(f.requests) for n, f in fleet.items()}


@pytest.fixture
def make_router(fleet, log, clock):
    db, writer = log
    made: list[Router] = []

    def make(*, serverless_url: str | None = None, sleep=None, backends=None, clock_=None, **overrides) -> Router:
        cfg = make_config(
            serverless_url or fleet["serverless"].base_url, [fleet[n].base_url for n in DEDICATED_NAMES], **overrides
        )
        r = Router(cfg, writer, backends, clock=clock_ or clock, sleep=sleep or (lambda s: None))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def rows(log):
    db, writer = log
    return lambda: read_rows(writer, db)


def only(rows_list: list[dict]) -> dict:
    assert len(rows_list) == 1, f"expected exactly one record, got {len(rows_list)}"
    return rows_list[0]


# --- decisions and the failover order ----------------------------------------------------


def test_decisions_and_failover_chains_follow_design(make_router):
    r = make_router()
    d = r.decide(req("Hello!", 100))
    assert (d.tier, d.endpoint, d.model, d.reason) == ("serverless", "serverless", SCOUT, "cost-optimized")
    assert [e for e, _ in d.chain] == ["serverless", CORE, PIPELINE, PRODUCTION]
    d = r.decide(req(HIGH, 100))
    assert (d.tier, d.endpoint, d.reason, d.complexity) == ("dedicated", CORE, "high-complexity", 0.9)
    assert list(d.chain) == [
        (CORE, DEDICATED_MODEL),
        (PIPELINE, DEDICATED_MODEL),
        (PRODUCTION, DEDICATED_MODEL),
        ("serverless", MAVERICK),
    ]
    d = r.decide(req("Summarise the log.", BULK_MAX_TOKENS))
    assert (d.tier, d.endpoint, d.reason) == ("dedicated", PIPELINE, "cost-optimization")
    assert [e for e, _ in d.chain] == [PIPELINE, PRODUCTION, CORE, "serverless"]


# --- replies --------------------------------------------------------------------------------


def test_plain_reply_is_recorded_once_with_metered_cost(make_router, fleet, rows):
    r = make_router(clock_=time.monotonic)
    res = r.chat(req("Hello!", 100, rid="plain-1"))
    assert res.ok and res.text == REPLIES["serverless"]
    row = only(rows())
    assert row["request_id"] == "plain-1" and row["source"] == "api"
    assert (row["status"], row["tier"], row["endpoint"], row["model"]) == ("ok", "serverless", "serverless", SCOUT)
    assert (row["reason"], row["policy_reason"]) == ("cost-optimized", "cost-optimized")
    assert row["attempts"] == 1 and row["failover_path"] == ["serverless"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (2, 5, False)
    # (2 x $0.08 + 5 x $0.30) / 1M, from the config's catalog
    assert row["metered_cost_usd"] == pytest.approx(1.66e-6, abs=1e-15)
    assert row["metered_cost_usd"] == metered(r.cfg, SCOUT, 2, 5)
    assert row["amortized_cost_usd"] == 0.0
    assert row["streamed"] is False and row["cached"] is False and row["simulated"] is False
    assert row["error"] is None and row["error_kind"] is None
    assert row["latency_ms"] > 0 and row["ttft_ms"] > 0
    assert row["prompt_text"] is None and row["response_text"] is None  # privacy: off
    assert fleet["serverless"].requests == [
        {"model": SCOUT, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 100}
    ]
    assert row["operation"] == "chat" and row["finish_reason"] == "stop"
    assert (row["tool_calls"], row["choices"], row["uses_tools"], row["images"]) == (0, 1, False, 0)
    assert (row["cached_prompt_tokens"], row["reasoning_tokens"], row["response_format"]) == (0, 0, None)
    assert calls(fleet) == {"serverless": 1, CORE: 0, PIPELINE: 0, PRODUCTION: 0}


def test_streamed_reply_with_usage(make_router, fleet, rows):
    r = make_router()
    handle = r.stream(req("Hello!", 100, rid="s-1"))
    pieces = list(handle.texts())
    assert "".join(pieces) == REPLIES["serverless"] and len(pieces) == 5
    assert handle.result is not None and handle.result.status == "ok"
    row = only(rows())
    assert row["streamed"] is True and row["status"] == "ok"
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (2, 5, False)
    assert row["metered_cost_usd"] == metered(r.cfg, SCOUT, 2, 5)
    assert row["ttft_ms"] is not None
    body = fleet["serverless"].requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert row["finish_reason"] == "stop"  # the upstream's own, from its finish chunk
    assert handle.result.choices[0]["message"]["content"] == REPLIES["serverless"]  # assembled from the deltas


def test_streamed_chunks_carry_the_upstream_choices(make_router, fleet):
    r = make_router()
    handle = r.stream(req("Hello!", 100))
    chunks = list(handle)
    texts = [c.text for c in chunks if c.text]
    assert "".join(texts) == REPLIES["serverless"]
    ends = [ch for c in chunks for ch in (c.choices or ()) if ch.get("finish_reason")]
    assert [(e["index"], e["finish_reason"]) for e in ends] == [(0, "stop")]
    assert handle.result.completion_tokens == 5 and not handle.result.usage_estimated  # the usage chunk's


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_reply_without_usage_is_estimated_and_flagged(make_router, fleet, rows, stream):
    fleet["serverless"].mode = "no_usage"
    r = make_router()
    text = "Hello! " * 10  # 70 characters
    if stream:
        assert joined(r.stream(req(text, 100))) == REPLIES["serverless"]
    else:
        assert r.chat(req(text, 100)).text == REPLIES["serverless"]
    row = only(rows())
    p, c = math.ceil(70 / 4), math.ceil(len(REPLIES["serverless"]) / 4)  # ceil(chars / 4) until a tokenizer
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (p, c, True)
    assert (p, c) == (18, 8)
    assert row["metered_cost_usd"] == metered(r.cfg, SCOUT, 18, 8) > 0
    assert row["status"] == "ok" and row["streamed"] is stream


# --- failover from serverless, for every failure kind -------------------------------------

FAILURES = [
    # (mode, calls on serverless (1 + retries when retryable), error kind)
    pytest.param("http500", 2, "http_status", id="http500"),
    pytest.param("http429", 2, "http_status", id="http429"),
    pytest.param("http400", 1, "http_status", id="http400"),
    pytest.param("malformed", 1, "malformed", id="malformed"),
    pytest.param("hang", 1, "timeout", id="timeout-hang"),
    pytest.param("slow", 1, "timeout", id="timeout-slow"),
    pytest.param("refused", 2, "connect", id="connection-refused"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("mode,serverless_calls,cause", FAILURES)
def test_serverless_failure_fails_over_to_ai_core(make_router, fleet, rows, mode, serverless_calls, cause, stream):
    sl = fleet["serverless"]
    url = None
    if mode == "refused":
        url = closed_port_url()
    else:
        sl.mode = mode
    r = make_router(serverless_url=url, failover={"timeout_s": 0.3})
    t0 = time.monotonic()
    if stream:
        handle = r.stream(req("Hello!", 100, rid="f-1"))
        text = joined(handle)
        res = handle.result
    else:
        res = r.chat(req("Hello!", 100, rid="f-1"))
        text = res.text
    assert time.monotonic() - t0 < 1.5
    assert text == REPLIES[CORE] and res.ok
    row = only(rows())
    assert (row["status"], row["tier"], row["endpoint"], row["model"]) == ("ok", "dedicated", CORE, DEDICATED_MODEL)
    assert (row["reason"], row["policy_reason"]) == ("failover", "cost-optimized")
    assert row["failover_path"] == ["serverless", CORE]
    assert row["attempts"] == serverless_calls + 1
    assert row["error"] is None and row["error_kind"] is None
    assert row["failover_cause"] == cause  # why it left serverless, kept once served
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (2, 4, False)
    assert row["metered_cost_usd"] == 0.0
    assert row["amortized_cost_usd"] == amortized(r.cfg, CORE, 2, 4) > 0
    assert row["amortized_cost_usd"] == pricing.amortized_cost(2, 4, r.cfg.endpoint(CORE))
    expected_sl = 0 if mode == "refused" else serverless_calls
    assert calls(fleet) == {"serverless": expected_sl, CORE: 1, PIPELINE: 0, PRODUCTION: 0}
    assert fleet[CORE].requests[0]["model"] == DEDICATED_MODEL


def test_cut_plain_reply_before_any_text_is_retried_then_fails_over(make_router, fleet, rows):
    fleet["serverless"].mode = "cut"
    r = make_router()
    res = r.chat(req("Hello!", 100))
    assert res.ok and res.text == REPLIES[CORE]
    row = only(rows())
    assert row["attempts"] == 3 and row["failover_path"] == ["serverless", CORE] and row["reason"] == "failover"
    assert calls(fleet)["serverless"] == 2


def test_dedicated_failure_goes_to_next_dedicated(make_router, fleet, rows):
    fleet[CORE].mode = "http500"
    r = make_router()
    res = r.chat(req(HIGH, 100, rid="d-1"))
    assert res.text == REPLIES[PIPELINE]
    row = only(rows())
    assert (row["endpoint"], row["tier"], row["reason"], row["policy_reason"]) == (
        PIPELINE,
        "dedicated",
        "failover",
        "high-complexity",
    )
    assert row["failover_path"] == [CORE, PIPELINE] and row["attempts"] == 3
    p, c = fake_prompt_tokens(HIGH), words(REPLIES[PIPELINE])
    assert row["amortized_cost_usd"] == amortized(r.cfg, PIPELINE, p, c)
    assert row["amortized_cost_usd"] != amortized(r.cfg, CORE, p, c)  # priced at the endpoint that served
    assert calls(fleet) == {"serverless": 0, CORE: 2, PIPELINE: 1, PRODUCTION: 0}


def test_bulk_endpoint_failure_goes_to_production(make_router, fleet, rows):
    fleet[PIPELINE].mode = "malformed"
    r = make_router()
    res = r.chat(req("Summarise the log.", BULK_MAX_TOKENS))
    assert res.text == REPLIES[PRODUCTION]
    row = only(rows())
    assert row["failover_path"] == [PIPELINE, PRODUCTION] and row["policy_reason"] == "cost-optimization"
    assert row["reason"] == "failover" and row["attempts"] == 2


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_all_dedicated_fail_then_serverless_premium(make_router, fleet, rows, stream):
    for n in DEDICATED_NAMES:
        fleet[n].mode = "http500"
    r = make_router()
    if stream:
        handle = r.stream(req(HIGH, 100))
        assert joined(handle) == REPLIES["serverless"]
    else:
        assert r.chat(req(HIGH, 100)).text == REPLIES["serverless"]
    row = only(rows())
    assert row["failover_path"] == [CORE, PIPELINE, PRODUCTION, "serverless"]
    assert row["attempts"] == 7
    assert (row["tier"], row["endpoint"], row["model"], row["reason"]) == (
        "serverless",
        "serverless",
        MAVERICK,
        "failover",
    )
    p, c = fake_prompt_tokens(HIGH), 5
    assert row["metered_cost_usd"] == metered(r.cfg, MAVERICK, p, c)  # premium prices, not the primary's
    assert row["metered_cost_usd"] != metered(r.cfg, SCOUT, p, c)
    assert row["amortized_cost_usd"] == 0.0
    assert [b["model"] for b in fleet["serverless"].requests] == [MAVERICK]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_every_endpoint_failing_is_a_clear_error(make_router, fleet, rows, stream):
    for f in fleet.values():
        f.mode = "http500"
    r = make_router()
    if stream:
        handle = r.stream(req("Hello!", 100, rid="e-1"))
        assert list(handle) == []
        res = handle.result
    else:
        res = r.chat(req("Hello!", 100, rid="e-1"))
    assert res.status == "error" and not res.ok
    row = only(rows())
    assert (row["status"], row["error_kind"]) == ("error", "http_status")
    assert row["error"].startswith(
        "every endpoint failed (serverless → sophia-ai-core → sophia-data-pipeline → sophia-production)"
    )
    assert "HTTP 500" in row["error"]
    assert row["failover_path"] == list(NAMES) and row["attempts"] == 8
    assert (row["prompt_tokens"], row["completion_tokens"]) == (0, 0)
    assert (row["metered_cost_usd"], row["amortized_cost_usd"]) == (0.0, 0.0)
    assert row["response_text"] is None
    assert calls(fleet) == dict.fromkeys(NAMES, 2)


# --- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["http429", "http500"])
def test_retries_hit_the_same_endpoint_before_failing_over(make_router, fleet, rows, mode):
    sleeps: list[float] = []
    fleet["serverless"].mode, fleet["serverless"].fail_times = mode, 2
    r = make_router(sleep=sleeps.append, failover={"max_retries": 2, "retry_backoff_s": 0.2, "failure_threshold": 10})
    res = r.chat(req("Hello!", 100))
    assert res.text == REPLIES["serverless"]
    row = only(rows())
    assert row["attempts"] == 3 and row["failover_path"] == ["serverless"] and row["reason"] == "cost-optimized"
    assert row["failover_cause"] is None  # retried and served where it was sent: no failover
    assert sleeps == [0.2, 0.4]  # exponential backoff, through the injected sleep
    assert calls(fleet) == {"serverless": 3, CORE: 0, PIPELINE: 0, PRODUCTION: 0}


def test_retries_exhausted_then_failover(make_router, fleet, rows):
    sleeps: list[float] = []
    fleet["serverless"].mode, fleet["serverless"].fail_times = "http429", 3
    r = make_router(sleep=sleeps.append, failover={"max_retries": 2, "retry_backoff_s": 0.2, "failure_threshold": 10})
    assert r.chat(req("Hello!", 100)).text == REPLIES[CORE]
    row = only(rows())
    assert row["attempts"] == 4 and row["failover_path"] == ["serverless", CORE]
    assert sleeps == [0.2, 0.4]
    assert calls(fleet)["serverless"] == 3


def test_no_retries_when_max_retries_is_zero(make_router, fleet, rows):
    sleeps: list[float] = []
    fleet["serverless"].mode = "http500"
    r = make_router(sleep=sleeps.append, failover={"max_retries": 0})
    assert r.chat(req("Hello!", 100)).text == REPLIES[CORE]
    assert only(rows())["attempts"] == 2
    assert sleeps == [] and calls(fleet)["serverless"] == 1


def test_no_retry_into_cool_down(make_router, fleet, rows):
    """A failure that puts the endpoint in cool-down ends its retries: it fails over at once."""
    fleet["serverless"].mode = "http500"
    r = make_router(failover={"max_retries": 2, "failure_threshold": 1})
    assert r.chat(req("Hello!", 100)).text == REPLIES[CORE]
    assert only(rows())["attempts"] == 2
    assert calls(fleet)["serverless"] == 1


# --- health: cool-down and re-admission ---------------------------------------------------


def test_failing_endpoint_cools_down_and_is_readmitted_after_cooldown(make_router, fleet, rows, clock):
    sl = fleet["serverless"]
    sl.mode = "http500"
    r = make_router(failover={"max_retries": 0, "failure_threshold": 2, "cooldown_s": 30})
    for i in range(2):
        assert r.chat(req("Hello!", 100, rid=f"h-{i}")).text == REPLIES[CORE]
    assert r.health.state("serverless") == "cooling-down"
    assert len(sl.requests) == 2

    d = r.decide(req("Hello!", 100))
    assert (d.reason, d.tier, d.endpoint) == ("failover", "dedicated", CORE)
    assert "serverless" not in [e for e, _ in d.chain]
    res = r.chat(req("Hello!", 100, rid="h-2"))
    assert res.text == REPLIES[CORE] and len(sl.requests) == 2  # skipped without being called
    clock.advance(29.9)
    assert r.chat(req("Hello!", 100, rid="h-3")).text == REPLIES[CORE]
    assert len(sl.requests) == 2

    clock.advance(0.2)  # cool-down over: tried again
    sl.mode = "ok"
    assert r.decide(req("Hello!", 100)).reason == "cost-optimized"
    assert r.chat(req("Hello!", 100, rid="h-4")).text == REPLIES["serverless"]
    assert len(sl.requests) == 3 and r.health.state("serverless") == "healthy"

    by_id = {row["request_id"]: row for row in rows()}
    assert sorted(by_id) == ["h-0", "h-1", "h-2", "h-3", "h-4"]
    assert by_id["h-1"]["failover_path"] == ["serverless", CORE] and by_id["h-1"]["attempts"] == 2
    for rid in ("h-2", "h-3"):
        assert by_id[rid]["failover_path"] == [CORE] and by_id[rid]["attempts"] == 1
        assert (by_id[rid]["reason"], by_id[rid]["policy_reason"]) == ("failover", "cost-optimized")
    assert by_id["h-4"]["failover_path"] == ["serverless"] and by_id["h-4"]["reason"] == "cost-optimized"


def test_one_failure_after_cooldown_sends_it_straight_back(make_router, fleet, clock):
    sl = fleet["serverless"]
    sl.mode = "http500"
    r = make_router(failover={"max_retries": 0, "failure_threshold": 3, "cooldown_s": 10})
    for _ in range(3):
        r.chat(req("Hello!", 100))
    assert r.health.state("serverless") == "cooling-down"
    clock.advance(11)
    assert r.health.state("serverless") == "probing"
    r.chat(req("Hello!", 100))  # half-open: one more failure
    assert len(sl.requests) == 4
    assert r.health.state("serverless") == "cooling-down"
    r.chat(req("Hello!", 100))
    assert len(sl.requests) == 4


def test_check_readmits_a_recovered_endpoint(make_router, fleet, clock):
    sl = fleet["serverless"]
    sl.mode = "http500"
    r = make_router(failover={"max_retries": 0, "failure_threshold": 1, "cooldown_s": 30})
    r.chat(req("Hello!", 100))
    assert r.health.state("serverless") == "cooling-down"
    assert r.check() == {"serverless": False}  # only endpoints due for a check are probed
    assert r.health.state("serverless") == "cooling-down"
    assert sl.model_requests == 1 and fleet[CORE].model_requests == 0
    sl.mode = "ok"
    assert r.check() == {"serverless": True}
    assert r.health.state("serverless") == "healthy"  # no clock advance needed
    assert r.decide(req("Hello!", 100)).reason == "cost-optimized"
    assert r.chat(req("Hello!", 100)).text == REPLIES["serverless"]
    assert r.check() == {}


def test_client_errors_do_not_cool_an_endpoint_down(make_router, fleet, rows):
    sl = fleet["serverless"]
    sl.mode = "http400"
    r = make_router(failover={"max_retries": 1, "failure_threshold": 2})
    for _ in range(3):
        assert r.chat(req("Hello!", 100)).text == REPLIES[CORE]
    assert len(sl.requests) == 3  # never retried (not retryable), never skipped
    assert r.health.state("serverless") == "healthy"
    assert [row["attempts"] for row in rows()] == [2, 2, 2]


# --- cache --------------------------------------------------------------------------------


def test_repeated_request_is_served_from_cache_and_recorded(make_router, fleet, rows, clock):
    r = make_router(cache={"enabled": True, "ttl_s": 60})
    first = r.chat(det("Hello!", 100, rid="c-1"))
    second = r.chat(det("Hello!", 100, rid="c-2"))
    assert first.cached is False and second.cached is True
    assert second.text == first.text == REPLIES["serverless"]
    assert (second.reason, second.status) == ("cache", "ok")
    assert second.choices == first.choices  # the whole reply, as the upstream sent it
    handle = r.stream(det("Hello!", 100, rid="c-3"))
    assert list(handle.texts()) == [REPLIES["serverless"]] and handle.result.cached is True
    assert calls(fleet)["serverless"] == 1  # no upstream call for the hits

    by_id = {row["request_id"]: row for row in rows()}
    assert sorted(by_id) == ["c-1", "c-2", "c-3"]
    for rid in ("c-2", "c-3"):
        hit = by_id[rid]
        assert (hit["cached"], hit["reason"], hit["status"], hit["attempts"]) == (True, "cache", "ok", 0)
        assert (hit["tier"], hit["endpoint"], hit["model"]) == ("serverless", "serverless", SCOUT)
        assert (hit["prompt_tokens"], hit["completion_tokens"], hit["usage_estimated"]) == (2, 5, False)
        assert (hit["metered_cost_usd"], hit["amortized_cost_usd"]) == (0.0, 0.0)  # nothing was called
        assert hit["policy_reason"] == "cost-optimized"
    assert by_id["c-1"]["cached"] is False and by_id["c-1"]["metered_cost_usd"] > 0

    assert r.chat(det("Hello!", 200)).cached is False  # another max_tokens is another request
    clock.advance(61)  # past the TTL
    assert r.chat(det("Hello!", 100)).cached is False
    assert calls(fleet)["serverless"] == 3


def test_a_sampled_request_is_not_cached_unless_configured(make_router, fleet, rows):
    r = make_router(cache={"enabled": True})
    assert [r.chat(req("Hello!", 100)).cached for _ in range(2)] == [False, False]  # no temperature: sampled
    hot = dict(det("Hello!", 100).body, temperature=0.7)
    assert [r.chat(req("Hello!", 100, body=hot)).cached for _ in range(2)] == [False, False]
    seeded = dict(hot, seed=1)  # a seed makes it deterministic
    assert [r.chat(req("Hello!", 100, body=seeded)).cached for _ in range(2)] == [False, True]
    assert calls(fleet)["serverless"] == 5
    sampled = make_router(cache={"enabled": True, "sampled": True})
    assert [sampled.chat(req("Hello!", 100)).cached for _ in range(2)] == [False, True]


def test_cache_modes_refresh_and_off(make_router, fleet):
    r = make_router(cache={"enabled": True})
    assert r.chat(det("Hello!", 100)).cached is False
    assert r.chat(det("Hello!", 100, cache="off")).cached is False  # not read
    assert r.chat(det("Hello!", 100, cache="refresh")).cached is False  # not read, but written
    assert r.chat(det("Hello!", 100)).cached is True
    assert calls(fleet)["serverless"] == 3


def test_errors_are_not_cached(make_router, fleet, rows):
    for f in fleet.values():
        f.mode = "http500"
    r = make_router(cache={"enabled": True}, failover={"max_retries": 0, "failure_threshold": 100})
    assert r.chat(req("Hello!", 100)).status == "error"
    for f in fleet.values():
        f.mode = "ok"
    res = r.chat(req("Hello!", 100))
    assert res.ok and res.cached is False and res.text == REPLIES["serverless"]
    assert [row["status"] for row in rows()] == ["error", "ok"]


def test_cache_hit_of_a_simulated_reply_is_labelled_simulated(make_router, fleet, rows):
    ep = Endpoint(
        name="serverless",
        tier="serverless",
        kind="simulated",
        models=(SCOUT,),
        simulation=Simulation(ttft_ms=0, tpot_ms=0),
    )
    r0 = make_router(cache={"enabled": True})
    backends = dict(r0.backends, serverless=SimulatedBackend(ep, sleep=lambda s: None))
    r = make_router(cache={"enabled": True}, backends=backends)
    a, b = r.chat(det("Hello!", 100)), r.chat(det("Hello!", 100))
    assert (a.cached, b.cached) == (False, True)
    assert [(row["cached"], row["simulated"]) for row in rows()] == [(False, True), (True, True)]


# --- streams that end early ------------------------------------------------------------------


def test_consumer_closing_the_stream_is_recorded_as_cancelled(make_router, fleet, rows):
    fleet["serverless"].reply = " ".join(f"word{i}" for i in range(40))
    r = make_router(privacy={"store_prompts": "on"})
    handle = r.stream(req("Hello!", 100, rid="x-1"))
    it = iter(handle)
    got = next(it).text + next(it).text + next(it).text
    assert got == "word0 word1 word2"
    it.close()
    res = handle.result
    assert res is not None and res.status == "cancelled"
    row = only(rows())
    assert (row["status"], row["error_kind"]) == ("cancelled", "cancelled")
    assert row["response_text"] == "word0 word1 word2" and row["prompt_text"] == "Hello!"
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (2, math.ceil(17 / 4), True)
    assert row["metered_cost_usd"] == metered(r.cfg, SCOUT, 2, 5) > 0
    assert row["attempts"] == 1 and row["failover_path"] == ["serverless"] and row["streamed"] is True
    assert calls(fleet) == {"serverless": 1, CORE: 0, PIPELINE: 0, PRODUCTION: 0}


def test_cut_stream_after_text_is_an_error_with_estimated_usage(make_router, fleet, rows):
    sl = fleet["serverless"]
    sl.mode, sl.reply = "cut", "alpha beta gamma delta epsilon zeta"
    r = make_router(privacy={"store_prompts": "on"})
    handle = r.stream(req("Hello!", 100, rid="cut-1"))
    assert list(handle.texts()) == ["alpha", " beta", " gamma"]  # delivered before the cut
    assert handle.result.status == "error" and handle.result.error_kind == "cut_stream"
    row = only(rows())
    assert (row["status"], row["error_kind"]) == ("error", "cut_stream")
    assert "dropped the connection" in row["error"]
    assert row["attempts"] == 1 and row["failover_path"] == ["serverless"]  # text went out: no retry, no failover
    assert (row["tier"], row["endpoint"], row["reason"]) == ("serverless", "serverless", "cost-optimized")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (2, 4, True)  # ceil(16/4)
    assert row["metered_cost_usd"] == metered(r.cfg, SCOUT, 2, 4)
    assert row["response_text"] == "alpha beta gamma"
    assert calls(fleet) == {"serverless": 1, CORE: 0, PIPELINE: 0, PRODUCTION: 0}


# --- one record per request, whatever happened ------------------------------------------------


def test_exactly_one_record_per_request_across_outcomes(make_router, fleet, rows):
    r = make_router(cache={"enabled": True})
    r.chat(det("Hello!", 100, rid="m-ok"))
    r.chat(det("Hello!", 100, rid="m-cache"))
    fleet["serverless"].mode = "http500"
    r.chat(req("Hi there", 100, rid="m-failover"))
    h = r.stream(req(HIGH, 100, rid="m-cancel"))
    it = iter(h)
    next(it)
    it.close()
    for f in fleet.values():
        f.mode = "http500"
    r.chat(req("Bye", 100, rid="m-error"))
    got = [(row["request_id"], row["status"], row["reason"]) for row in rows()]
    assert sorted(got) == [
        ("m-cache", "ok", "cache"),
        ("m-cancel", "cancelled", "high-complexity"),
        ("m-error", "error", "failover"),
        ("m-failover", "ok", "failover"),
        ("m-ok", "ok", "cost-optimized"),
    ]


# --- records whatever the consumer does -------------------------------------------------


def test_stream_closed_before_first_byte_is_recorded_once(make_router, fleet, rows):
    router = make_router()
    handle = router.stream(req("never read"))
    handle.close()
    handle.close()  # closing twice records once
    row = only(rows())
    assert (row["status"], row["attempts"], row["error_kind"]) == ("cancelled", 0, "cancelled")
    assert calls(fleet) == {n: 0 for n in fleet}
    assert handle.result is not None and handle.result.status == "cancelled"


def test_session_settings_are_not_recorded_as_a_policy_version(make_router, rows):
    router = make_router()
    router.policy_version = 7
    router.chat(req("a"))
    router.chat(req("b"), cfg=router.cfg.with_routing(complexity_threshold=0.1))
    got = sorted((r["policy_version"] is None) for r in rows())
    assert got == [False, True]


def test_cache_does_not_cross_settings(make_router, fleet, rows):
    router = make_router(cache={"enabled": True, "sampled": True})
    router.chat(req("same"))
    router.chat(req("same"), cfg=router.cfg.with_routing(complexity_threshold=0.1))
    router.chat(req("same"))
    assert [r["cached"] for r in sorted(rows(), key=lambda r: r["ts"])] == [False, False, True]


def test_a_stream_iterated_but_never_advanced_is_recorded(make_router, rows):
    router = make_router()
    handle = router.stream(req("taken, never read"))
    iter(handle)
    handle.close()
    row = only(rows())
    assert row["status"] == "cancelled" and row["attempts"] == 0


def test_an_upstream_echoing_the_key_never_reaches_an_error():
    import httpx

    from sophia.routing.backends import openai as backends

    secret = "gsk_live_0123456789abcdefSECRET"
    body = {"error": {"message": f"Invalid API Key: {secret} (also sk-other-abcdef0123456789)"}}
    resp = httpx.Response(401, json=body)
    err = backends._status_error("serverless", resp, secret)
    assert secret not in str(err) and "sk-other-abcdef0123456789" not in str(err)
    assert str(err).startswith("serverless answered HTTP 401: Invalid API Key: [secret]")


def test_a_key_echoed_cut_short_or_in_pieces_leaks_no_part_of_it():
    from sophia.routing.backends.openai import PIECE, scrub

    key = "Zq8xW3kP0aLm5vB7nC2dE9fG4hJ1tY6u"  # no known prefix: the pattern redaction cannot see it
    for echoed in (key[:20] + "****", "..." + key[-8:], key[5:17], f"{key[:10]} and {key[-10:]}"):
        out = scrub(f"Incorrect API key provided: {echoed}.", key)
        assert not any(key[i : i + PIECE] in out for i in range(len(key) - PIECE + 1)), out
        assert out.startswith("Incorrect API key provided: ") and "[secret]" in out
    assert scrub("the model is overloaded, try again", key) == "the model is overloaded, try again"


# --- usage far past the request's bound --------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_usage_past_32_bits_is_recorded_costed_as_reported_and_flagged(make_router, fleet, rows, stream):
    huge = 3_000_000_000  # past 2^31 - 1: a 32-bit column dropped this row
    fleet["serverless"].usage_extra = {"completion_tokens": huge}
    r = make_router()
    if stream:
        handle = r.stream(req("Hello!", 100))
        list(handle)
        res = handle.result
    else:
        res = r.chat(req("Hello!", 100))
    assert res.ok and res.completion_tokens == huge
    row = only(rows())
    assert row["completion_tokens"] == huge
    assert row["metered_cost_usd"] == metered(r.cfg, SCOUT, 2, huge) > 100  # costed as reported
    assert row["usage_anomaly"] == "completion_tokens 3,000,000,000 > 4 x max_tokens 100"


def test_usage_within_bounds_is_not_an_anomaly():
    from sophia.routing.anomaly import usage_anomaly
    from sophia.routing.features import Features

    f = Features(prompt_chars=40, est_prompt_tokens=10, max_tokens=100, n_messages=1, keywords=())
    assert usage_anomaly(10, 400, f) is None and usage_anomaly(10, 800, f, choices=2) is None
    assert usage_anomaly(10, 401, f) == "completion_tokens 401 > 4 x max_tokens 100"
    assert usage_anomaly(2_041, 5, f) == "prompt_tokens 2,041 > 4 x the estimate 10 + 2,000"
