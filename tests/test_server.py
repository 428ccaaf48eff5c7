"""`sophia serve` as a real subprocess on a free loopback port, the official `openai` client in
front of it and real OpenAI-compatible servers (tests/fakeopenai.py) behind it.

The log is read after the server has stopped on SIGTERM, so every check of it also checks that
a graceful shutdown flushed every record. Expected routing and costs are computed here from the
fake's token counting and the configuration's prices, not by sophia.money.pricing.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from sophia import config as config_mod
from sophia.apikeys import main as apikeys_main
from sophia.config import ConfigError
from sophia.config.apikeys import KeyRing, bearer, hash_key, new_key
from sophia.config.server import ServerSettings, parse_settings
from sophia.log.db import Database
from sophia.server.app import ApiError, check_exposure, is_loopback, parse_chat
from sophia.server.ratelimit import RateLimiter
from tests.conftest import DEDICATED_MODEL, DEDICATED_NAMES, SERVERLESS_MODELS, FakeClock, config_dict
from tests.fakeopenai import FakeOpenAI, closed_port_url, completion_tokens_of, prompt_tokens_of

ROOT = Path(__file__).resolve().parents[1]
PRIMARY, PREMIUM = SERVERLESS_MODELS[0], SERVERLESS_MODELS[1]


# --- helpers: TOML, a server process, the log -------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(data: dict) -> str:
    """Tables and arrays of tables of scalars, lists and inline tables (all these tests need)."""
    out = []
    for k, v in data.items():
        if isinstance(v, dict):
            out.append(f"[{k}]")
            out += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for t in v:
                out.append(f"[[{k}]]")
                out += [f"{kk} = {_toml_value(vv)}" for kk, vv in t.items()]
        else:
            raise TypeError(f"top-level {k} must be a table")
        out.append("")
    return "\n".join(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_cmd(cfg: Path, db: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sophia.cli",
        "serve",
        "--config",
        str(cfg),
        "--db",
        str(db),
        "--port",
        str(port),
        *extra,
    ]


class Server:
    """`sophia serve` in a subprocess; stop() sends a signal and waits for the graceful exit."""

    def __init__(self, cfg: Path, db: Path, *extra: str) -> None:
        self.cfg, self.db, self.port = cfg, db, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            serve_cmd(cfg, db, self.port, *extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sophia serve exited:\n" + self.output)
            try:
                if httpx.get(self.url + "/openapi.json", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("sophia serve did not answer:\n" + self.output)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def client(self, key: str | None, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or "none", max_retries=0, timeout=30, **kw)

    def kill(self) -> None:
        """Whatever happened: no server is left behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(5)
        assert "Traceback" not in self.output, self.output
        return rc


def log_rows(db: Path, where: str = "TRUE") -> dict[str, dict]:
    """Records by request id, once the server has stopped. Opened like any process opens the log,
    so that segments a writer left in the inbox (while the file was busy) are ingested first."""
    database = Database(db)
    try:
        with database.cursor() as cur:
            cur.execute(f"SELECT * FROM requests WHERE {where}")
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        database.close()
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a request was recorded twice"
    return {r["request_id"]: r for r in rows}


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
        cfg_path.write_text(to_toml(data))
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


def hello(text: str = "Say hello in one short sentence.") -> list[dict]:
    return [{"role": "user", "content": text}]


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
    # What the upstream received: the messages as sent, the routed model, max_tokens.
    sent = env.fakes["serverless"].requests[-1]
    assert sent["messages"] == msgs and sent["model"] == PRIMARY and sent["max_tokens"] == 50
    # A sampling parameter is accepted, not forwarded, and said so.
    done, headers = raw_create(client, model="sophia-auto", messages=msgs, temperature=0.2, seed=7)
    env.expect_ok(headers["x-request-id"], msgs, "serverless", PRIMARY, "cost-optimized")
    assert set(headers["x-sophia-ignored-params"].split(",")) == {"temperature", "seed"}


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
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
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
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].model_extra["sophia"]["cost_usd"] > 0


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
        ({"messages": hello(), "n": 3}, "n"),
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
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sophia.cli",
                    "stats",
                    "--json",
                    "--config",
                    str(env.server.cfg),
                    "--db",
                    str(env.server.db),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
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
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SOPHIA_CONFIG", str(env.server.cfg))
    monkeypatch.setenv("SOPHIA_DB", str(env.server.db))
    st.cache_data.clear()
    st.cache_resource.clear()
    rendered = 0
    try:
        for page in ("pages/overview.py", "pages/request_log.py"):
            if not (ROOT / page).exists():
                continue
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
            at.switch_page(page).run()
            assert not at.exception, [e.value for e in at.exception]
            said = " ".join(str(e.value) for kind in ("error", "warning") for e in getattr(at, kind))
            assert "lock" not in said.lower(), said
            rendered += 1
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()  # the app's runtime lets go of the file
    return rendered


# --- last: /stats, then a graceful shutdown with a request in flight, then the log ----------------


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
    assert s["cost_savings"] == pytest.approx(baseline - total, abs=1e-6)
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


def test_upstream_failures_and_health_down(tmp_path, request):
    fakes = {name: FakeOpenAI().start() for name in ("serverless", *DEDICATED_NAMES)}
    try:
        data = config_dict(fakes["serverless"].base_url, [fakes[n].base_url for n in DEDICATED_NAMES])
        data["failover"].update({"max_retries": 0, "retry_backoff_s": 0, "failure_threshold": 2, "cooldown_s": 120})
        data["server"] = {"refresh_interval_s": 0}
        cfg = tmp_path / "sophia.toml"
        cfg.write_text(to_toml(data))
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


def test_disconnect_mid_stream_is_recorded_with_the_tokens_received(tmp_path, request):
    src = (ROOT / "sophia.toml").read_text()
    src = re.sub(r"ttft_ms = \d+", "ttft_ms = 20", src)
    src = re.sub(r"tpot_ms = \d+", "tpot_ms = 40", src)
    src = re.sub(r"error_rate = [\d.]+", "error_rate = 0.0\nreply_tokens = 400", src)
    src += "\n[server]\nrefresh_interval_s = 0\n"
    cfg = tmp_path / "sophia.toml"
    cfg.write_text(src)
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
    cfg.write_text(to_toml(data))
    return subprocess.run(
        [sys.executable, "-m", "sophia.cli", "serve", "--config", str(cfg), "--db", str(tmp_path / "x.duckdb"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    line = [x for x in out.stderr.splitlines() if x.startswith("sophia: error:")]
    assert len(line) == 1, out.stderr
    for w in words:
        assert w in line[0], line[0]


def test_refuses_to_listen_beyond_loopback_without_keys(tmp_path):
    out = run_serve(tmp_path, None, "--host", "0.0.0.0", "--port", str(free_port()))
    one_line_error(out, "0.0.0.0", "api_keys")


def test_bad_server_settings_and_busy_port_are_one_line(tmp_path):
    out = run_serve(tmp_path, {"rate_limit_per_minute": -5}, "--port", str(free_port()))
    one_line_error(out, "server.rate_limit_per_minute", "-5")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = run_serve(tmp_path, {}, "--port", str(s.getsockname()[1]))
    one_line_error(out, "cannot listen")


# --- units ----------------------------------------------------------------------------------------


def test_settings_are_validated_like_the_rest_of_the_config():
    s = parse_settings({})
    assert s == ServerSettings() and s.aliases == ("sophia-auto",)
    cfg = config_mod.parse(config_dict(closed_port_url()))
    digest = hash_key("k")
    bad = [
        ({"nope": 1}, "server.nope is not a known setting"),
        ({"api_keys": "abc"}, "server.api_keys"),
        ({"api_keys": [{"id": "a", "sha256": "123"}]}, "server.api_keys[0].sha256"),
        ({"api_keys": [{"id": "a", "key": "sk-123"}]}, "must not be written in the file"),
        ({"api_keys": [{"id": "a", "sha256": digest}, {"id": "a", "sha256": hash_key("j")}]}, "distinct key ids"),
        ({"max_body_bytes": 10}, "server.max_body_bytes = 10"),
        ({"app_url": "localhost:8501"}, "server.app_url"),
        ({"aliases": [PRIMARY]}, "server.aliases"),
        ({"access_log": "yes"}, "server.access_log"),
        ({"upstream_http": "curl"}, "server.upstream_http"),
    ]
    for raw, msg in bad:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            parse_settings(raw, cfg)
    s = parse_settings({"api_keys": [{"id": "a", "sha256": digest.upper(), "rate_limit_per_minute": 5}]}, cfg)
    assert s.api_keys[0].sha256 == digest and s.api_keys[0].rate_limit_per_minute == 5


def test_loopback_and_exposure():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))
    with pytest.raises(ConfigError, match="api_keys"):
        check_exposure("0.0.0.0", ServerSettings())
    check_exposure("127.0.0.1", ServerSettings())
    check_exposure("0.0.0.0", parse_settings({"api_keys": [{"id": "a", "sha256": hash_key("k")}]}))


def test_keys_and_bearer_tokens(capsys):
    k = new_key()
    assert k.startswith("sk-sophia-") and len(k) > 40
    ring = KeyRing(parse_settings({"api_keys": [{"id": "a", "sha256": hash_key(k)}]}).api_keys)
    assert ring.lookup(k).id == "a" and ring.lookup(k + "x") is None
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer("Bearer ") is None and bearer(None) is None
    assert apikeys_main(["team-x"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"sk-sophia-\S+", out).group(0)
    assert f'sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"' in out
    assert apikeys_main(["bad id!"]) == 2


def test_rate_limiter_refills_over_time():
    clock = FakeClock(0.0)
    rl = RateLimiter(clock)
    assert [rl.take("a", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.take("a", 3)
    assert wait == pytest.approx(20.0)  # one token every 20 s at 3 a minute
    assert rl.take("b", 3) == 0.0  # keys are independent
    clock.advance(20.0)
    assert rl.take("a", 3) == 0.0 and rl.take("a", 3) > 0
    assert rl.take("a", 0) == 0.0  # 0 = no limit


@pytest.mark.parametrize(
    "body, status, param",
    [
        (
            {"model": "sophia-auto", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            400,
            "messages[0].content[0].text",
        ),
        (
            {"model": "sophia-auto", "messages": [{"role": "user", "content": [{"type": "image_url", "text": 1}]}]},
            400,
            "messages[0].content[0].text",
        ),
        ({"model": "sophia-auto", "messages": [{"role": "user", "content": "\\ud800"}]}, 400, "messages"),
        ({"model": 5, "messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
        ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
        (
            {"model": "sophia-auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": True},
            400,
            "max_tokens",
        ),
        (
            {"model": "sophia-auto", "messages": [{"role": "user", "content": "hi"}], "stream_options": []},
            400,
            "stream_options",
        ),
    ],
)
def test_parse_chat_rejects(body, status, param):
    raw = json.dumps(body).encode().replace(b"\\\\ud800", b"\\ud800")
    with pytest.raises(ApiError) as e:
        parse_chat(raw, ServerSettings(), frozenset({PRIMARY}), frozenset({"sophia-auto"}))
    assert (e.value.status, e.value.param) == (status, param)


def test_parse_chat_accepts_what_openai_clients_send():
    body = {
        "model": PRIMARY,
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "content": "r", "tool_call_id": "1"},
        ],
        "max_completion_tokens": 9,
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 1,
        "user": "u",
        "top_p": 0.5,
        "stop": ["x"],
        "tools": [],
        "extra_thing": {"a": 1},
    }
    call = parse_chat(json.dumps(body).encode(), ServerSettings(), frozenset({PRIMARY}), frozenset({"sophia-auto"}))
    assert call.force_model == PRIMARY and call.max_tokens == 9 and call.stream and call.include_usage
    assert call.ignored == ("user", "top_p", "stop", "tools", "extra_thing")


# --- the lean transport behaves like httpx's own ----------------------------------------------------


def outcome(backend, model: str, stream: bool):
    from sophia.routing.backends.openai import BackendError

    msgs = hello()
    try:
        if stream:
            chunks = list(backend.stream(model, msgs, 20))
            return ("ok", "".join(c.text for c in chunks), [c.usage for c in chunks if c.usage])
        text, usage = backend.complete(model, msgs, 20)
        return ("ok", text, usage)
    except BackendError as e:
        return ("error", e.kind, e.retryable, e.status)


def test_fast_transport_matches_httpx_against_every_fault():
    from sophia.routing.backends.openai import OpenAIBackend
    from sophia.routing.backends.transport import FastTransport
    from tests.conftest import make_config

    with FakeOpenAI() as fake:
        cfg = make_config(fake.base_url, failover={"timeout_s": 0.5, "connect_timeout_s": 0.5})
        ep = cfg.endpoint("serverless")
        plain = OpenAIBackend(ep, "sk-upstream", cfg.failover)
        fast = OpenAIBackend(ep, "sk-upstream", cfg.failover, transport=FastTransport())
        try:
            for mode in ("ok", "no_usage", "http500", "http429", "http400", "cut", "malformed", "hang"):
                for stream in (False, True):
                    if mode == "hang" and stream:
                        continue
                    fake.mode = mode
                    a, b = outcome(plain, PRIMARY, stream), outcome(fast, PRIMARY, stream)
                    assert a == b, (mode, stream, a, b)
            fake.mode = "ok"
            assert fake.headers[-1]["Authorization"] == "Bearer sk-upstream"
            assert fast.check() and plain.check()
            # Many calls reuse one connection per thread.
            for _ in range(20):
                assert outcome(fast, PRIMARY, False)[0] == "ok"
        finally:
            plain.close()
            fast.close()
        closed = make_config(closed_port_url(), failover={"connect_timeout_s": 0.5}).endpoint("serverless")
        a = OpenAIBackend(closed, None, cfg.failover)
        b = OpenAIBackend(closed, None, cfg.failover, transport=FastTransport())
        assert outcome(a, PRIMARY, False) == outcome(b, PRIMARY, True) == ("error", "connect", True, None)
        assert not b.check()


# --- a reply that is not valid Unicode ---------------------------------------------------------


def test_a_reply_with_a_lone_surrogate_is_still_recorded(tmp_path):
    from sophia.log.writer import Writer
    from sophia.routing.router import ChatRequest, Router
    from tests.conftest import make_config, read_rows

    with FakeOpenAI(reply="broken \ud800 text") as fake:
        cfg = make_config(fake.base_url, privacy={"store_prompts": "on"})
        db = Database(tmp_path / "t.duckdb")
        writer = Writer(db, 0.01)
        router = Router(cfg, writer)
        try:
            ok = router.chat(ChatRequest(hello(), source="api"))
            assert ok.ok and "\ud800" in ok.text
            router.chat(ChatRequest(hello("another"), source="api"))
            assert len(read_rows(writer, db)) == 2
        finally:
            router.close()
            writer.close()
            db.close()
