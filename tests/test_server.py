"""`sophia serve` as a real subprocess on a free loopback port, the official `openai` client in
front of it and real OpenAI-compatible servers (tests/fakeopenai.py) behind it.

The log is read after the server has stopped on SIGTERM, so every check of it also checks that
a graceful shutdown flushed every record. Expected routing and costs are computed here from the
fake's token counting and the configuration's prices, not by sophia.money.pricing.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import openai
import pytest

from sophia import config as config_mod
from sophia.config.apikeys import hash_key, new_key
from tests.fakeopenai import FakeOpenAI, closed_port_url, completion_tokens_of, prompt_tokens_of
from tests.helpers import (
    DEDICATED_MODEL,
    DEDICATED_NAMES,
    ROOT,
    SERVERLESS_MODELS,
    Server,
    config_dict,
    free_port,
    hello,
    log_rows,
    reference,
    run_cli,
    simulate,
    write_toml,
)

PRIMARY, PREMIUM = SERVERLESS_MODELS[0], SERVERLESS_MODELS[1]


# --- helpers: what a routed request must look like ----------------------------------------------


def chars(messages) -> int:
    return sum(len(m["content"]) for m in messages)


@dataclass
class Expected:
    """What one routed request must look like in the log."""

    tier: str
    endpoint: str
    model: str
    reason: str
    status: str = "ok"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    streamed: bool = False
    api_key_id: str | None = None


@dataclass
class Env:
    server: Server
    cfg: config_mod.Config
    fakes: dict[str, FakeOpenAI]
    keys: dict[str, str]
    ledger: dict[str, Expected] = field(default_factory=dict)

    def price(self, model: str) -> tuple[float, float]:
        m = next(m for m in self.cfg.models if m.name == model)
        return m.input_per_mtok, m.output_per_mtok

    def cost(self, endpoint: str, model: str, p: int, c: int) -> float:
        ep = self.cfg.endpoint(endpoint)
        if ep.tier == "serverless":
            i, o = self.price(model)
            return round((p * i + c * o) / 1e6, 9)
        secs = c / ep.throughput_tps + (p / ep.prefill_tps if ep.prefill_tps else 0)
        return round(secs * ep.hourly_usd / 3600, 9)

    def expect_ok(
        self,
        request_id: str,
        messages,
        endpoint: str,
        model: str,
        reason: str,
        key: str = "team-a",
        streamed: bool = False,
    ) -> Expected:
        p = prompt_tokens_of({"messages": messages})
        c = completion_tokens_of(self.fakes[endpoint].reply)
        e = Expected(
            self.cfg.endpoint(endpoint).tier,
            endpoint,
            model,
            reason,
            "ok",
            p,
            c,
            self.cost(endpoint, model, p, c),
            streamed,
            key,
        )
        self.ledger[request_id] = e
        return e


KEY_A, KEY_B = new_key(), new_key()
SERVER_SECTION = {
    "api_keys": [
        {"id": "team-a", "sha256": hash_key(KEY_A)},
        {"id": "team-b", "sha256": hash_key(KEY_B), "rate_limit_per_minute": 2},
    ],
    "rate_limit_per_minute": 10_000,
    "max_body_bytes": 65_536,
    "max_tokens_limit": 100_000,
    "app_url": "http://localhost:8599",
    "refresh_interval_s": 0,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("serve")
    fakes = {name: FakeOpenAI().start() for name in ("serverless", *DEDICATED_NAMES)}
    try:
        data = config_dict(fakes["serverless"].base_url, [fakes[n].base_url for n in DEDICATED_NAMES])
        data["server"] = SERVER_SECTION
        cfg_path = tmp / "sophia.toml"
        write_toml(cfg_path, data)
        server = Server(cfg_path, tmp / "log.duckdb")
        try:
            yield Env(server, config_mod.load(cfg_path), fakes, {"team-a": KEY_A, "team-b": KEY_B})
        finally:
            server.kill()
    finally:
        for f in fakes.values():
            f.stop()
        assert all(not f.errors for f in fakes.values())


def raw_create(client: openai.OpenAI, **kw):
    """A chat completion with its HTTP response: (parsed completion, headers)."""
    raw = client.chat.completions.with_raw_response.create(**kw)
    return raw.parse(), raw.headers


# --- the OpenAI API through the official client ------------------------------------------------


def test_plain_completion(env: Env):
    client = env.server.client(KEY_A)
    msgs = [{"role": "system", "content": "Be brief."}, *hello()]
    env.fakes["serverless"].reply = "Hello there, friend."
    done, headers = raw_create(client, model="sophia-auto", messages=msgs, max_tokens=50)
    rid = headers["x-request-id"]
    exp = env.expect_ok(rid, msgs, "serverless", PRIMARY, "cost-optimized")
    assert done.choices[0].message.content == "Hello there, friend."
    assert done.choices[0].message.role == "assistant" and done.choices[0].finish_reason == "stop"
    assert done.model == PRIMARY and done.id == f"chatcmpl-{rid}"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (exp.prompt_tokens, exp.completion_tokens)
    assert headers["x-sophia-tier"] == "serverless" and headers["x-sophia-endpoint"] == "serverless"
    assert headers["x-sophia-model"] == PRIMARY and headers["x-sophia-reason"] == "cost-optimized"
    assert float(headers["x-sophia-complexity"]) == 0.0
    assert float(headers["x-sophia-cost-usd"]) == pytest.approx(exp.cost, abs=1e-12)
    assert done.model_extra["sophia"]["cost_usd"] == pytest.approx(exp.cost, abs=1e-12)
    # What the upstream received: the client's body, with the routed model.
    sent = env.fakes["serverless"].requests[-1]
    assert sent == {"model": PRIMARY, "messages": msgs, "max_tokens": 50}
    assert "x-sophia-ignored-params" not in headers
    # Every other field is forwarded as sent, and nothing is reported ignored.
    extra = {"temperature": 0.2, "seed": 7, "top_p": 0.9, "user": "u-1", "stop": ["\n\n"]}
    done, headers = raw_create(client, model="sophia-auto", messages=msgs, **extra)
    env.expect_ok(headers["x-request-id"], msgs, "serverless", PRIMARY, "cost-optimized")
    assert "x-sophia-ignored-params" not in headers
    sent = env.fakes["serverless"].requests[-1]
    assert sent == {"model": PRIMARY, "messages": msgs, **extra}


def test_stream_with_usage(env: Env):
    client = env.server.client(KEY_A)
    env.fakes["serverless"].reply = "One two three four five six."
    msgs = hello("Count to six.")
    raw = client.chat.completions.with_raw_response.create(
        model="sophia-auto", messages=msgs, stream=True, stream_options={"include_usage": True}
    )
    headers = raw.headers
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-sophia-tier"] == "serverless" and headers["x-sophia-reason"] == "cost-optimized"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three four five six."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"  # the upstream's own
    assert sum(c.choices[0].finish_reason is not None for c in chunks if c.choices) == 1
    sent = env.fakes["serverless"].requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    last = chunks[-1]
    exp = env.expect_ok(headers["x-request-id"], msgs, "serverless", PRIMARY, "cost-optimized", streamed=True)
    assert last.choices == [] and last.usage.completion_tokens == exp.completion_tokens
    assert last.usage.prompt_tokens == exp.prompt_tokens
    assert last.usage.model_extra["cost_usd"] == pytest.approx(exp.cost, abs=1e-12)
    assert last.usage.model_extra["estimated"] is False
    assert all(c.id == f"chatcmpl-{headers['x-request-id']}" for c in chunks)
    # Without include_usage: no usage chunk; the routing and cost ride on the final chunk.
    raw = client.chat.completions.with_raw_response.create(model="sophia-auto", messages=msgs, stream=True)
    chunks = list(raw.parse())
    env.expect_ok(raw.headers["x-request-id"], msgs, "serverless", PRIMARY, "cost-optimized", streamed=True)
    assert all(c.usage is None for c in chunks)
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].model_extra["sophia"]["cost_usd"] > 0
    # Sophia asks the upstream for usage even when the client does not (for the record and the cost).
    assert env.fakes["serverless"].requests[-1]["stream_options"] == {"include_usage": True}


def test_high_complexity_goes_to_a_dedicated_gpu(env: Env):
    client = env.server.client(KEY_A)
    env.fakes["sophia-ai-core"].reply = "A long analysis follows."
    msgs = hello("Analyze this session and remember the context of the stream, then generate a plan.")
    done, headers = raw_create(client, model="sophia-auto", messages=msgs, max_tokens=2000)
    exp = env.expect_ok(headers["x-request-id"], msgs, "sophia-ai-core", DEDICATED_MODEL, "high-complexity")
    assert headers["x-sophia-tier"] == "dedicated" and headers["x-sophia-endpoint"] == "sophia-ai-core"
    assert float(headers["x-sophia-complexity"]) == 1.0
    assert float(headers["x-sophia-cost-usd"]) == pytest.approx(exp.cost, abs=1e-12) and exp.cost > 0
    assert done.model == DEDICATED_MODEL


def test_forced_models(env: Env):
    client = env.server.client(KEY_A)
    msgs = hello()
    env.fakes["serverless"].reply = "Premium hello."
    done, headers = raw_create(client, model=PREMIUM, messages=msgs)
    env.expect_ok(headers["x-request-id"], msgs, "serverless", PREMIUM, "forced")
    assert (headers["x-sophia-model"], headers["x-sophia-reason"], done.model) == (PREMIUM, "forced", PREMIUM)
    assert env.fakes["serverless"].requests[-1]["model"] == PREMIUM
    env.fakes["sophia-ai-core"].reply = "Dedicated hello."
    done, headers = raw_create(client, model=DEDICATED_MODEL, messages=msgs)
    env.expect_ok(headers["x-request-id"], msgs, "sophia-ai-core", DEDICATED_MODEL, "forced")
    assert headers["x-sophia-tier"] == "dedicated" and headers["x-sophia-reason"] == "forced"


def test_models_list(env: Env):
    client = env.server.client(KEY_A)
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "sophia-auto"
    assert set(ids) == {"sophia-auto", *SERVERLESS_MODELS, DEDICATED_MODEL}
    assert client.models.retrieve(PREMIUM).id == PREMIUM
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nothing")


# --- bad input, access, limits -----------------------------------------------------------------


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) >= {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": hello(), "max_tokens": 0}, "max_tokens"),
        ({"messages": hello(), "max_tokens": 10**9}, "max_tokens"),
        ({"messages": hello(), "max_tokens": "ten"}, "max_tokens"),
        ({"messages": hello(), "temperature": 7}, "temperature"),
        ({"messages": hello(), "n": 0}, "n"),
        ({"messages": hello(), "n": 129}, "n"),
        ({"messages": hello(), "n": "2"}, "n"),
        ({"messages": [{"role": "tool", "content": "r"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"messages": hello(), "stream": "yes"}, "stream"),
    ],
)
def test_bad_requests_are_400_in_the_openai_format(env: Env, kwargs, param):
    client = env.server.client(KEY_A)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="sophia-auto", **kwargs)
    err = error_of(e.value)
    assert err["type"] == "invalid_request_error" and err["param"] == param


def test_malformed_json_and_oversized_bodies(env: Env):
    url = env.server.url + "/v1/chat/completions"
    auth = {"authorization": f"Bearer {KEY_A}"}
    for body in (b"{not json", b"", b"[1, 2]", b'{"model": "sophia-auto", "messages": NaN}', b"\xff\xfe"):
        r = httpx.post(url, content=body, headers=auth)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"
    client = env.server.client(KEY_A)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="sophia-auto", messages=hello("x" * 70_000))
    assert e.value.status_code == 413 and error_of(e.value)["code"] == "request_too_large"
    # Chunked (no Content-Length): counted as it arrives.
    r = httpx.post(url, content=iter([b'{"model": "sophia-auto", "messages": "', b"y" * 70_000, b'"}']), headers=auth)
    assert r.status_code == 413


def test_unknown_model_is_404(env: Env):
    client = env.server.client(KEY_A)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=hello())
    err = error_of(e.value)
    assert err["code"] == "model_not_found" and err["param"] == "model"


def test_keys_are_required_and_checked(env: Env):
    for key in (None, "sk-wrong", KEY_A + "x"):
        client = env.server.client(key)
        with pytest.raises(openai.AuthenticationError) as e:
            client.chat.completions.create(model="sophia-auto", messages=hello())
        assert error_of(e.value)["code"] in ("missing_api_key", "invalid_api_key")
        assert KEY_A not in e.value.response.text
    r = httpx.get(env.server.url + "/stats")
    assert r.status_code == 401
    r = httpx.post(env.server.url + "/chat", json={"messages": hello()})
    assert r.status_code == 401


def test_rate_limit_per_key(env: Env):
    client = env.server.client(KEY_B)
    env.fakes["serverless"].reply = "Limited hello."
    for _ in range(2):
        done, headers = raw_create(client, model="sophia-auto", messages=hello())
        env.expect_ok(headers["x-request-id"], hello(), "serverless", PRIMARY, "cost-optimized", key="team-b")
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="sophia-auto", messages=hello())
    retry = int(e.value.response.headers["retry-after"])
    assert 1 <= retry <= 30
    assert error_of(e.value)["code"] == "rate_limit_exceeded"
    # The other key is not limited by team-b's spending.
    done, headers = raw_create(env.server.client(KEY_A), model="sophia-auto", messages=hello())
    env.expect_ok(headers["x-request-id"], hello(), "serverless", PRIMARY, "cost-optimized")


# --- the reference endpoints -----------------------------------------------------------------


def test_reference_chat(env: Env):
    env.fakes["serverless"].reply = "Reference hello."
    msgs = hello("What is the capital of France?")
    r = httpx.post(
        env.server.url + "/chat",
        json={"messages": msgs, "max_tokens": 40},
        headers={"authorization": f"Bearer {KEY_A}"},
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"response", "routing", "timestamp"}
    exp = env.expect_ok(body["request_id"], msgs, "serverless", PRIMARY, "cost-optimized")
    assert body["response"]["choices"][0]["message"]["content"] == "Reference hello."
    routing = body["routing"]
    assert (routing["endpoint"], routing["server"], routing["model"], routing["reason"]) == (
        "serverless",
        "serverless",
        PRIMARY,
        "cost-optimized",
    )
    assert routing["cost"] == pytest.approx(exp.cost, abs=1e-12)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", body["timestamp"])
    r = httpx.post(
        env.server.url + "/chat",
        json={"messages": msgs, "temperature": 1},
        headers={"authorization": f"Bearer {KEY_A}"},
    )
    assert r.status_code == 400


def test_dashboard_docs_and_unknown_paths(env: Env):
    r = httpx.get(env.server.url + "/dashboard")
    assert r.status_code == 307 and r.headers["location"] == "http://localhost:8599"
    assert httpx.get(env.server.url + "/docs").status_code == 200
    spec = httpx.get(env.server.url + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/chat", "/health", "/stats", "/dashboard"} <= set(spec["paths"])
    assert "ChatCompletionRequest" in spec["components"]["schemas"]
    r = httpx.get(env.server.url + "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.get(env.server.url + "/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_health_names_every_endpoint(env: Env):
    r = httpx.get(env.server.url + "/health")
    assert r.status_code == 200
    body = r.json()
    assert set(body["endpoints"]) == {"serverless", *DEDICATED_NAMES}
    assert body["tiers"]["serverless"]["available"] and body["tiers"]["dedicated"]["available"]
    assert "last_error" not in body["endpoints"]["serverless"]  # details only for key holders
    r = httpx.get(env.server.url + "/health?probe=true", headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 200 and all(e["probe"] == "ok" for e in r.json()["endpoints"].values())


# --- the same database, other processes ----------------------------------------------------------


@pytest.mark.slow
def test_cli_and_app_read_the_log_while_the_server_works(env: Env, monkeypatch):
    client = env.server.client(KEY_A)
    env.fakes["serverless"].reply = "Busy hello."
    stop = threading.Event()
    sent: list[str] = []
    errors: list[BaseException] = []

    def traffic():
        try:
            while not stop.is_set():
                _, headers = raw_create(client, model="sophia-auto", messages=hello())
                sent.append(headers["x-request-id"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        totals = []
        for _ in range(2):
            out = run_cli("stats", "--json", "--config", str(env.server.cfg), "--db", str(env.server.db), timeout=60)
            assert out.returncode == 0, out.stderr
            assert "lock" not in out.stderr.lower()
            totals.append(json.loads(out.stdout)["total_requests"])
        assert totals == sorted(totals) and totals[-1] > 0
        pages = app_pages_render(env, monkeypatch)
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors
    assert len(sent) > 5
    for rid in sent:
        env.expect_ok(rid, hello(), "serverless", PRIMARY, "cost-optimized")
    assert pages in (None, 2)


def app_pages_render(env: Env, monkeypatch) -> int | None:
    """The app's read-only pages render against the same file, without a lock error."""
    if not (ROOT / "app.py").exists():
        return None
    from tests.apptest import app, clear_caches

    monkeypatch.setenv("SOPHIA_CONFIG", str(env.server.cfg))
    monkeypatch.setenv("SOPHIA_DB", str(env.server.db))
    clear_caches()
    rendered = 0
    try:
        for page in ("pages/overview.py", "pages/request_log.py"):
            if not (ROOT / page).exists():
                continue
            at = app().run()
            at.switch_page(page).run()
            assert not at.exception, [e.value for e in at.exception]
            said = " ".join(str(e.value) for kind in ("error", "warning") for e in getattr(at, kind))
            assert "lock" not in said.lower(), said
            rendered += 1
    finally:
        clear_caches()  # the app's runtime lets go of the file
    return rendered


# --- last: /stats, then a graceful shutdown with a request in flight, then the log ----------------


def _scrape(env: Env, key: str | None = KEY_A) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(env.server.url + "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (smp.name, tuple(sorted(smp.labels.items()))): smp.value
        for fam in text_string_to_metric_families(r.text)
        for smp in fam.samples
    }


def _total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_metrics_count_what_was_routed(env: Env):
    assert httpx.get(env.server.url + "/metrics").status_code == 401  # keys configured: behind them too
    before = _scrape(env)
    client = env.server.client(KEY_A)
    env.fakes["serverless"].reply = "Metrics, counted."
    rids = []
    for i in range(3):
        msgs = hello(f"metrics {i}")
        _, headers = raw_create(client, model="sophia-auto", messages=msgs, max_tokens=40)
        rids.append(headers["x-request-id"])
        env.expect_ok(headers["x-request-id"], msgs, "serverless", PRIMARY, "cost-optimized")
    after = _scrape(env)

    def delta(name: str, **labels: str) -> float:
        return _total(after, name, **labels) - _total(before, name, **labels)

    ok = {"tier": "serverless", "model": PRIMARY, "reason": "cost-optimized", "status": "ok"}
    assert delta("sophia_requests_total", **ok) == 3
    led = [env.ledger[r] for r in rids]
    assert delta("sophia_tokens_total", tier="serverless", kind="prompt") == sum(e.prompt_tokens for e in led)
    assert delta("sophia_tokens_total", tier="serverless", kind="completion") == sum(e.completion_tokens for e in led)
    assert delta("sophia_metered_cost_usd_total", tier="serverless") == pytest.approx(sum(e.cost for e in led))
    # The gateway's own time is a histogram of its own, one observation a request, under a second.
    assert delta("sophia_gateway_overhead_seconds_count") == 3
    assert delta("sophia_gateway_overhead_seconds_bucket", le="1.0") == 3
    assert delta("sophia_request_latency_seconds_count", tier="serverless") == 3
    assert ("sophia_in_flight_requests", ()) in after and ("sophia_queued_requests", ()) in after


def test_stats_then_graceful_shutdown_then_one_record_per_request(env: Env):
    client = env.server.client(KEY_A)
    if not env.ledger:  # run on its own: make some traffic
        done, headers = raw_create(client, model="sophia-auto", messages=hello())
        env.expect_ok(headers["x-request-id"], hello(), "serverless", PRIMARY, "cost-optimized")
    # /stats against figures computed here from the ledger
    r = httpx.get(env.server.url + "/stats", headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 200
    s = r.json()
    led = list(env.ledger.values())
    n = len(led)
    sl = sum(e.tier == "serverless" for e in led)
    total = sum(e.cost for e in led)
    i, o = env.price(PREMIUM)
    baseline = sum((e.prompt_tokens * i + e.completion_tokens * o) / 1e6 for e in led)
    assert (s["total_requests"], s["serverless_requests"], s["dedicated_requests"]) == (n, sl, n - sl)
    assert s["serverless_percentage"] == pytest.approx(round(100 * sl / n, 2))
    assert s["total_cost_usd"] == pytest.approx(total, abs=1e-6)
    assert s["average_cost_per_request"] == pytest.approx(total / n, abs=1e-8)
    assert s["all_premium_usd"] == pytest.approx(baseline, abs=1e-6)
    # Savings: all on the serverless primary model minus the actual total (metered + GPU-hours
    # while the fleet ran: from the first live request, the server's, to the last).
    i, o = env.price(PRIMARY)
    primary = sum((e.prompt_tokens * i + e.completion_tokens * o) / 1e6 for e in led)
    metered = sum(e.cost for e in led if e.tier == "serverless")
    first, last = datetime.fromisoformat(s["first_request"]), datetime.fromisoformat(s["last_request"])
    hours = ((last - first).total_seconds() + 1e-6) / 3600
    fixed = sum(e.hourly_usd for e in env.cfg.endpoints if e.tier == "dedicated") * hours
    assert s["fixed_cost_usd"] == pytest.approx(fixed, abs=1e-5)
    assert s["actual_total_usd"] == pytest.approx(metered + s["fixed_cost_usd"], abs=1e-6)
    assert s["cost_savings"] == s["cost_savings_usd"] == pytest.approx(primary - metered - fixed, abs=1e-5)
    by_key = {k["api_key_id"]: k["requests"] for k in s["by_api_key"]}
    assert by_key == {k: sum(e.api_key_id == k for e in led) for k in {e.api_key_id for e in led}}

    # A request in flight when SIGTERM arrives finishes, and is recorded.
    fake = env.fakes["serverless"]
    fake.mode, fake.delay_s, fake.reply = "slow", 1.0, "Slow hello."
    result: dict = {}

    def slow():
        result["r"] = raw_create(client, model="sophia-auto", messages=hello("slow"))

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 5
    while len(fake.requests) == 0 or fake.requests[-1]["messages"][0]["content"] != "slow":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    rc = env.server.stop(signal.SIGTERM)
    t.join(10)
    fake.mode = "ok"
    assert rc == 0, env.server.output
    done, headers = result["r"]
    assert done.choices[0].message.content == "Slow hello."
    env.expect_ok(headers["x-request-id"], hello("slow"), "serverless", PRIMARY, "cost-optimized")

    rows = log_rows(env.server.db)
    assert set(rows) == set(env.ledger), "the log holds exactly the routed requests"
    for rid, e in env.ledger.items():
        row = rows[rid]
        got = (
            row["tier"],
            row["endpoint"],
            row["model"],
            row["reason"],
            row["status"],
            row["source"],
            row["api_key_id"],
            row["streamed"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["usage_estimated"],
        )
        assert got == (
            e.tier,
            e.endpoint,
            e.model,
            e.reason,
            e.status,
            "api",
            e.api_key_id,
            e.streamed,
            e.prompt_tokens,
            e.completion_tokens,
            False,
        ), rid
        assert row["metered_cost_usd"] + row["amortized_cost_usd"] == pytest.approx(e.cost, abs=1e-12), rid
        if e.tier == "dedicated":
            assert row["metered_cost_usd"] == 0 and row["amortized_cost_usd"] > 0
    # No key ever reaches the log.
    text = json.dumps([{k: str(v) for k, v in r.items()} for r in rows.values()])
    assert KEY_A not in text and KEY_B not in text


# --- failures upstream and /health turning 503 ---------------------------------------------------


@pytest.mark.slow
def test_upstream_failures_and_health_down(tmp_path, request):
    fakes = {name: FakeOpenAI().start() for name in ("serverless", *DEDICATED_NAMES)}
    try:
        data = config_dict(fakes["serverless"].base_url, [fakes[n].base_url for n in DEDICATED_NAMES])
        data["failover"].update({"max_retries": 0, "retry_backoff_s": 0, "failure_threshold": 2, "cooldown_s": 120})
        data["server"] = {"refresh_interval_s": 0}
        cfg = tmp_path / "sophia.toml"
        write_toml(cfg, data)
        server = Server(cfg, tmp_path / "log.duckdb")
        request.addfinalizer(server.kill)
        client = server.client(None)  # no keys: loopback only
        assert httpx.get(server.url + "/health").status_code == 200
        ok, headers = raw_create(client, model="sophia-auto", messages=hello())
        ids = {headers["x-request-id"]: "ok"}
        for f in fakes.values():
            f.mode = "http500"
        for _ in range(2):  # every endpoint fails twice: all cool down
            with pytest.raises(openai.APIStatusError) as e:
                client.chat.completions.create(model="sophia-auto", messages=hello())
            assert e.value.status_code == 502
            err = error_of(e.value)
            assert err["code"] == "upstream_error" and "every endpoint failed" in err["message"]
            assert e.value.response.headers["x-should-retry"] == "false"
            assert e.value.response.headers["x-sophia-endpoint"] == DEDICATED_NAMES[-1]
            ids[e.value.response.headers["x-request-id"]] = "error"
        with pytest.raises(openai.APIStatusError) as e:  # a stream that fails before its first byte
            client.chat.completions.create(model="sophia-auto", messages=hello(), stream=True)
        assert e.value.status_code == 502
        ids[e.value.response.headers["x-request-id"]] = "error"
        r = httpx.get(server.url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "down"
        assert all(ep["state"] == "cooling-down" for ep in r.json()["endpoints"].values())
        for f in fakes.values():
            f.mode = "ok"
        r = httpx.get(server.url + "/health?probe=1")  # a probe re-admits the endpoints that answer
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert server.stop(signal.SIGINT) == 0
        rows = log_rows(server.db)
        assert {k: r["status"] for k, r in rows.items()} == ids
    finally:
        for f in fakes.values():
            f.stop()


# --- a client that disconnects mid-stream (simulated endpoints stream slowly) ------------------------


@pytest.mark.slow
def test_disconnect_mid_stream_is_recorded_with_the_tokens_received(tmp_path, request):
    data = simulate(reference(), ttft_ms=20, tpot_ms=40, error_rate=0.0, reply_tokens=400)
    data["server"] = {"refresh_interval_s": 0}
    cfg = write_toml(tmp_path / "sophia.toml", data)
    server = Server(cfg, tmp_path / "log.duckdb")
    request.addfinalizer(server.kill)
    try:
        client = server.client(None)
        stream = client.chat.completions.create(
            model="sophia-auto", messages=hello(), stream=True, stream_options={"include_usage": True}
        )
        got = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got += chunk.choices[0].delta.content
                if len(got.split()) >= 8:
                    break
        rid = chunk.id.removeprefix("chatcmpl-")
        stream.close()  # the client goes away mid-stream
        # A simulated reply says so in the headers.
        _, headers = raw_create(client, model="sophia-auto", messages=hello(), max_tokens=5)
        assert headers["x-sophia-simulated"] == "true"
        time.sleep(0.5)
    finally:
        assert server.stop() == 0
    row = log_rows(server.db)[rid]
    assert row["status"] == "cancelled" and row["streamed"]
    words = len(got.split())
    assert words <= row["completion_tokens"] < 300  # what it got (and what was in flight), not the whole reply
    assert row["usage_estimated"] and row["metered_cost_usd"] > 0
    cfgo = config_mod.load(cfg)
    price = next(m for m in cfgo.models if m.name == PRIMARY)
    assert row["metered_cost_usd"] == pytest.approx(
        round(
            (row["prompt_tokens"] * price.input_per_mtok + row["completion_tokens"] * price.output_per_mtok) / 1e6, 9
        ),
        abs=1e-12,
    )


# --- refusing to start ---------------------------------------------------------------------------


def run_serve(tmp_path: Path, server: dict | None, *args: str) -> subprocess.CompletedProcess:
    data = config_dict(closed_port_url())
    if server is not None:
        data["server"] = server
    cfg = tmp_path / "sophia.toml"
    write_toml(cfg, data)
    return run_cli("serve", "--config", str(cfg), "--db", str(tmp_path / "x.duckdb"), *args, timeout=60)


def one_line_error(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    line = [x for x in out.stderr.splitlines() if x.startswith("sophia: error:")]
    assert len(line) == 1, out.stderr
    for w in words:
        assert w in line[0], line[0]


@pytest.mark.slow
def test_refuses_to_listen_beyond_loopback_without_keys(tmp_path):
    out = run_serve(tmp_path, None, "--host", "0.0.0.0", "--port", str(free_port()))
    one_line_error(out, "0.0.0.0", "api_keys")


@pytest.mark.slow
def test_bad_server_settings_and_busy_port_are_one_line(tmp_path):
    out = run_serve(tmp_path, {"rate_limit_per_minute": -5}, "--port", str(free_port()))
    one_line_error(out, "server.rate_limit_per_minute", "-5")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = run_serve(tmp_path, {}, "--port", str(s.getsockname()[1]))
    one_line_error(out, "cannot listen")
