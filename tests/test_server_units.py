"""The API server's parts without a server process: settings, keys, rate limits, request parsing,
the lean upstream transport, and a reply that is not valid Unicode."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from sophia import config as config_mod
from sophia.apikeys import main as apikeys_main
from sophia.config import ConfigError
from sophia.config.apikeys import KeyRing, bearer, hash_key, new_key
from sophia.config.server import ServerSettings, parse_settings
from sophia.log.db import Database
from sophia.server.errors import ApiError
from sophia.server.ratelimit import RateLimiter
from sophia.server.run import check_exposure, is_loopback
from sophia.server.wire import parse_chat
from tests.fakeopenai import FakeOpenAI, closed_port_url
from tests.helpers import (
    SERVERLESS_MODELS,
    FakeClock,
    config_dict,
    hello,
)

PRIMARY = SERVERLESS_MODELS[0]


# --- settings, keys, limits, parsing ----------------------------------------------------------------


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
            "messages[0].content[0].image_url",
        ),
        (
            {"model": "sophia-auto", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            400,
            "messages[0].content[0].text",
        ),
        (
            {
                "model": "sophia-auto",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}],
            },
            400,
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "model": "sophia-auto",
                "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA=="}}]}],
            },
            400,
            "messages[0].content[0].input_audio",
        ),
        (
            {"model": "sophia-auto", "messages": [{"role": "tool", "content": "r"}]},
            400,
            "messages[0].tool_call_id",
        ),
        (
            {"model": "sophia-auto", "messages": [{"role": "assistant", "tool_calls": [{"id": "1"}]}]},
            400,
            "messages[0].tool_calls[0]",
        ),
        (
            {"model": "sophia-auto", "messages": [{"role": "user", "content": "hi", "tool_calls": []}]},
            400,
            "messages[0].tool_calls",
        ),
        ({"model": "sophia-auto", "messages": [{"role": "user", "content": "hi"}], "n": 0}, 400, "n"),
        ({"model": "sophia-auto", "messages": [{"role": "user", "content": "hi"}], "n": 129}, 400, "n"),
        ({"model": "sophia-auto", "messages": [{"role": "user", "content": "hi"}], "n": "2"}, 400, "n"),
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
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "f1"}},  # other part types pass unchecked
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "content": "r", "tool_call_id": "1"},
        ],
        "max_completion_tokens": 9,
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 128,
        "user": "u",
        "top_p": 0.5,
        "stop": ["x"],
        "tools": [],
        "extra_thing": {"a": 1},
    }
    call = parse_chat(json.dumps(body).encode(), ServerSettings(), frozenset({PRIMARY}), frozenset({"sophia-auto"}))
    assert call.force_model == PRIMARY and call.max_tokens == 9 and call.stream and call.include_usage
    assert call.body == body  # every field is forwarded, unknown ones too


# --- the lean transport behaves like httpx's own ----------------------------------------------------


def outcome(backend, model: str, stream: bool):
    from sophia.routing.backends.base import BackendError

    msgs = hello()
    try:
        if stream:
            chunks = list(backend.stream(model, msgs, 20))
            return ("ok", "".join(c.text for c in chunks), [c.usage for c in chunks if c.usage])
        reply = backend.complete(model, msgs, 20)
        return ("ok", reply.text, reply.usage, reply.choices, reply.fingerprint)
    except BackendError as e:
        return ("error", e.kind, e.retryable, e.status)


def test_fast_transport_matches_httpx_against_every_fault():
    from sophia.routing.backends.openai import OpenAIBackend
    from sophia.routing.backends.transport import FastTransport
    from tests.helpers import make_config

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
    from sophia.routing.result import ChatRequest
    from sophia.routing.router import Router
    from tests.helpers import make_config, read_rows

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
