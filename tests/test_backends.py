"""Backends: OpenAIBackend against a real HTTP server on 127.0.0.1, and the simulated backend."""

from __future__ import annotations

import time

import pytest

from sophia.config import Endpoint, FailoverSettings, Simulation
from sophia.routing.backends.base import BackendError, Usage
from sophia.routing.backends.openai import OpenAIBackend
from sophia.routing.backends.simulated import SimulatedBackend
from sophia.routing.features import estimate_tokens, prompt_text
from tests.fakeopenai import DEFAULT_REPLY, FakeOpenAI, closed_port_url
from tests.helpers import drain

MODEL = "llama-4-scout-17b-16e-instruct"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there, who are you?"}]
# The fake's usage rule: characters of all contents // 4 + 1; words of the reply.
PROMPT_TOKENS = (len("Be brief.") + len("Hello there, who are you?")) // 4 + 1
REPLY_WORDS = len(DEFAULT_REPLY.split())


def backend(url: str, timeout_s: float = 5.0, api_key: str | None = None) -> OpenAIBackend:
    ep = Endpoint(name="serverless", tier="serverless", kind="openai", models=(MODEL,), base_url=url)
    return OpenAIBackend(ep, api_key, FailoverSettings(timeout_s=timeout_s, connect_timeout_s=1.0))


@pytest.fixture
def be(fake):
    b = backend(fake.base_url)
    yield b
    b.close()


# --- OpenAIBackend: replies ---------------------------------------------------------------


def counts(usage: Usage | None) -> tuple[int, int] | None:
    """(prompt, completion) tokens: the upstream's own usage object rides along in `details`."""
    return None if usage is None else (usage.prompt_tokens, usage.completion_tokens)


def test_plain_reply_with_usage(fake, be):
    reply = be.complete(MODEL, MESSAGES, 64)
    assert reply.text == DEFAULT_REPLY
    assert counts(reply.usage) == (PROMPT_TOKENS, REPLY_WORDS)
    assert reply.usage.details["total_tokens"] == PROMPT_TOKENS + REPLY_WORDS  # passed on as sent
    [choice] = reply.choices
    assert choice["message"]["content"] == DEFAULT_REPLY and choice["finish_reason"] == "stop"
    [body] = fake.requests
    assert body == {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}


def test_client_body_is_forwarded_with_the_routed_model(fake, be):
    sent = {"model": "sophia", "messages": MESSAGES, "temperature": 0.3, "user": "u1", "max_tokens": 9}
    be.complete(MODEL, MESSAGES, 9, sent)
    list(be.stream(MODEL, MESSAGES, 9, {**sent, "stream": True}))
    plain, streamed = fake.requests
    assert plain == {**sent, "model": MODEL}
    assert streamed == {**sent, "model": MODEL, "stream": True, "stream_options": {"include_usage": True}}
    assert sent["model"] == "sophia"  # the client's dict is not changed


def test_plain_reply_without_usage(fake, be):
    fake.mode = "no_usage"
    reply = be.complete(MODEL, MESSAGES, 64)
    assert (reply.text, reply.usage) == (DEFAULT_REPLY, None)


def test_streamed_reply_with_usage_asks_for_it(fake, be):
    fake.reply = "one two three four five six seven"
    chunks, err = drain(be.stream(MODEL, MESSAGES, 32))
    assert err is None
    assert "".join(c.text for c in chunks) == "one two three four five six seven"
    assert len([c for c in chunks if c.text]) == 7  # one event per word, as sent
    usages = [counts(c.usage) for c in chunks if c.usage is not None]
    assert usages == [(PROMPT_TOKENS, 7)]
    assert counts(chunks[-1].usage) == (PROMPT_TOKENS, 7)  # usage comes last
    [body] = fake.requests
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 32 and body["model"] == MODEL


def test_streamed_reply_without_usage(fake, be):
    fake.mode = "no_usage"
    chunks, err = drain(be.stream(MODEL, MESSAGES, 32))
    assert err is None
    assert "".join(c.text for c in chunks) == DEFAULT_REPLY
    assert all(c.usage is None for c in chunks)
    assert fake.requests[0]["stream_options"] == {"include_usage": True}


def test_api_key_is_sent_as_bearer_and_never_in_errors(fake):
    secret = "sk-test-0123456789abcdef"
    b = backend(fake.base_url, api_key=secret)
    try:
        b.complete(MODEL, MESSAGES, 8)
        assert fake.headers[0].get("Authorization") == f"Bearer {secret}"
        fake.mode = "http500"
        with pytest.raises(BackendError) as ei:
            b.complete(MODEL, MESSAGES, 8)
        assert secret not in str(ei.value)
    finally:
        b.close()
    fake.mode = "ok"
    nokey = backend(fake.base_url)
    try:
        nokey.complete(MODEL, MESSAGES, 8)
        assert "Authorization" not in fake.headers[-1]
    finally:
        nokey.close()


# --- OpenAIBackend: errors ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "mode,status,retryable,detail",
    [
        ("http500", 500, True, "simulated internal error"),
        ("http429", 429, True, "simulated rate limit"),
        ("http400", 400, False, "simulated bad request"),
    ],
)
def test_http_status_errors(fake, be, stream, mode, status, retryable, detail):
    fake.mode = mode
    with pytest.raises(BackendError) as ei:
        if stream:
            list(be.stream(MODEL, MESSAGES, 16))
        else:
            be.complete(MODEL, MESSAGES, 16)
    e = ei.value
    assert (e.kind, e.status, e.retryable) == ("http_status", status, retryable)
    assert f"HTTP {status}" in str(e) and detail in str(e)  # the server's message, not raw JSON
    assert "serverless" in str(e)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("mode", ["slow", "hang"])
def test_timeout(fake, stream, mode):
    fake.mode, fake.delay_s = mode, 2.0
    b = backend(fake.base_url, timeout_s=0.3)
    t0 = time.monotonic()
    try:
        with pytest.raises(BackendError) as ei:
            if stream:
                list(b.stream(MODEL, MESSAGES, 16))
            else:
                b.complete(MODEL, MESSAGES, 16)
    finally:
        b.close()
    elapsed = time.monotonic() - t0
    assert ei.value.kind == "timeout"
    assert ei.value.status is None
    assert ei.value.retryable is False  # fail over at once rather than wait timeout_s again
    assert 0.25 <= elapsed < 1.5


def test_slow_but_within_timeout_succeeds(fake):
    fake.mode, fake.delay_s = "slow", 0.2
    b = backend(fake.base_url, timeout_s=2.0)
    try:
        assert b.complete(MODEL, MESSAGES, 16).text == DEFAULT_REPLY
    finally:
        b.close()


def test_cut_stream_after_some_text(fake, be):
    fake.mode = "cut"
    fake.reply = "a b c d e f g h"
    chunks, err = drain(be.stream(MODEL, MESSAGES, 16))
    assert err is not None and err.kind == "cut_stream" and err.retryable is True
    assert "".join(c.text for c in chunks) == "a b c d"  # half the words arrived before the cut
    assert all(c.usage is None for c in chunks)


def test_cut_plain_reply(fake, be):
    fake.mode = "cut"
    with pytest.raises(BackendError) as ei:
        be.complete(MODEL, MESSAGES, 16)
    assert ei.value.kind == "cut_stream" and ei.value.status is None


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_malformed_json(fake, be, stream):
    fake.mode = "malformed"
    with pytest.raises(BackendError) as ei:
        if stream:
            list(be.stream(MODEL, MESSAGES, 16))
        else:
            be.complete(MODEL, MESSAGES, 16)
    assert ei.value.kind == "malformed"
    assert ei.value.retryable is False
    assert "not" in str(ei.value) and "serverless" in str(ei.value)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_connection_refused(stream):
    b = backend(closed_port_url())
    t0 = time.monotonic()
    try:
        with pytest.raises(BackendError) as ei:
            if stream:
                list(b.stream(MODEL, MESSAGES, 16))
            else:
                b.complete(MODEL, MESSAGES, 16)
        assert b.check() is False
    finally:
        b.close()
    assert ei.value.kind == "connect"
    assert ei.value.retryable is True
    assert "cannot be reached" in str(ei.value)
    assert time.monotonic() - t0 < 1.0


def test_fail_times_then_ok(fake, be):
    fake.mode, fake.fail_times = "http500", 2
    for _ in range(2):
        with pytest.raises(BackendError):
            be.complete(MODEL, MESSAGES, 8)
    assert be.complete(MODEL, MESSAGES, 8).text == DEFAULT_REPLY
    assert len(fake.requests) == 3


def test_check(fake, be):
    assert be.check() is True
    fake.mode = "http500"
    assert be.check() is False
    fake.mode = "http429"  # rate-limited is up, not down
    assert be.check() is True
    assert fake.model_requests == 3


# --- SimulatedBackend ---------------------------------------------------------------------


def sim(seed=7, sleeps=None, **kw) -> SimulatedBackend:
    ep = Endpoint(
        name="sim",
        tier="dedicated",
        kind="simulated",
        models=("m",),
        hourly_usd=1.0,
        throughput_tps=100.0,
        simulation=Simulation(seed=seed, **kw),
    )
    return SimulatedBackend(ep, sleep=(sleeps.append if sleeps is not None else (lambda s: None)))


def run_many(b: SimulatedBackend, n: int = 20) -> list:
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"question {i}"}]
        try:
            out.append(("c", b.complete("m", msgs, 200)))
        except BackendError as e:
            out.append(("e", e.kind))
        chunks, err = drain(b.stream("m", msgs, 200))
        out.append(("s", tuple(chunks), err.kind if err else None))
    return out


def test_simulated_is_deterministic_under_a_seed():
    kw = {"error_rate": 0.2, "cut_rate": 0.2, "slow_rate": 0.2}
    a, b, c = run_many(sim(1, **kw)), run_many(sim(1, **kw)), run_many(sim(2, **kw))
    assert a == b
    assert a != c
    assert {x[0] for x in a} == {"c", "e", "s"}  # the mix really has replies and faults


def test_simulated_reply_and_usage():
    sleeps: list[float] = []
    b = sim(sleeps=sleeps, ttft_ms=100, tpot_ms=10, reply_tokens=40)
    msgs = [{"role": "user", "content": "x" * 101}]
    reply = b.complete("m", msgs, 1000)
    usage = reply.usage
    assert reply.text and reply.choices[0]["finish_reason"] == "stop"
    assert estimate_tokens(len(prompt_text(msgs))) == 26
    assert usage.prompt_tokens == 26
    assert 20 <= usage.completion_tokens <= 60  # about reply_tokens
    assert sleeps == [pytest.approx((100 + 10 * usage.completion_tokens) / 1000)]  # TTFT + tokens x TPOT
    capped = b.complete("m", msgs, 5)
    assert capped.usage.completion_tokens == 5 and capped.choices[0]["finish_reason"] == "length"


def test_simulated_stream_reports_usage_last():
    b = sim(reply_tokens=30)
    chunks, err = drain(b.stream("m", [{"role": "user", "content": "hi"}], 100))
    assert err is None
    assert "".join(c.text for c in chunks)
    last = chunks[-1].usage
    assert last is not None and last.prompt_tokens == 1 and 15 <= last.completion_tokens <= 45
    assert all(c.usage is None for c in chunks[:-1])


def test_simulated_without_usage():
    b = sim(report_usage=False)
    chunks, err = drain(b.stream("m", [{"role": "user", "content": "hi"}], 100))
    assert err is None and "".join(c.text for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_simulated_error_rate_one_always_fails():
    b = sim(error_rate=1.0)
    for i in range(20):
        msgs = [{"role": "user", "content": str(i)}]
        with pytest.raises(BackendError) as ei:
            b.complete("m", msgs, 50)
        assert (ei.value.kind, ei.value.status, ei.value.retryable) == ("http_status", 503, True)
        chunks, err = drain(b.stream("m", msgs, 50))
        assert chunks == [] and err is not None and err.status == 503
    assert b.check() is False
    assert sim().check() is True


def test_simulated_cut_rate_one_always_cuts():
    b = sim(cut_rate=1.0, reply_tokens=40)
    for i in range(20):
        chunks, err = drain(b.stream("m", [{"role": "user", "content": str(i)}], 200))
        assert err is not None and err.kind == "cut_stream"
        assert chunks and all(c.usage is None for c in chunks)
        assert "".join(c.text for c in chunks)  # some text arrived before the cut


def test_simulated_faults_at_configured_rates():
    b = sim(seed=3, error_rate=0.3)
    n, fails = 2000, 0
    for _ in range(n):
        try:
            b.complete("m", [{"role": "user", "content": "q"}], 10)
        except BackendError:
            fails += 1
    assert 0.25 < fails / n < 0.35
    s = sim(seed=3, cut_rate=0.5, reply_tokens=20)
    cuts = sum(drain(s.stream("m", [{"role": "user", "content": "q"}], 50))[1] is not None for _ in range(1000))
    assert 0.44 < cuts / 1000 < 0.56


def test_simulated_slow_replies_take_slow_factor_longer():
    fast_s: list[float] = []
    slow_s: list[float] = []
    sim(seed=5, sleeps=fast_s, ttft_ms=50, tpot_ms=5).complete("m", [{"role": "user", "content": "q"}], 30)
    sim(seed=5, sleeps=slow_s, ttft_ms=50, tpot_ms=5, slow_rate=1.0, slow_factor=10).complete(
        "m", [{"role": "user", "content": "q"}], 30
    )
    assert slow_s[0] == pytest.approx(fast_s[0] * 10)


def test_fake_server_stops_cleanly_with_a_hung_client():
    f = FakeOpenAI(mode="hang").start()
    b = backend(f.base_url, timeout_s=0.2)
    with pytest.raises(BackendError):
        b.complete(MODEL, MESSAGES, 8)
    t0 = time.monotonic()
    f.stop()
    b.close()
    assert time.monotonic() - t0 < 1.0
    assert f.errors == []
