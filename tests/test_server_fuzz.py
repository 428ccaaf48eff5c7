"""Property-based fuzzing of `sophia serve`'s request bodies (hypothesis).

Whatever the body — random bytes, random JSON, or a chat request with any field mutated into
any JSON value — the server answers with a status it means (never a 500), an error in the
OpenAI format, or a completion; and every request it routed (it answered with x-request-id
and a routing status) is in the log exactly once after a graceful shutdown, nothing else.
Prompt text is stored (privacy "on") and the cache is on, so encoding and cache paths are
fuzzed too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.slow  # a server process and hundreds of requests
pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.fakeopenai import FakeOpenAI  # noqa: E402
from tests.helpers import DEDICATED_MODEL, SERVERLESS_MODELS, Server, config_dict, log_rows, write_toml  # noqa: E402

ROUTED = {200, 502, 504}  # answered after routing (and so recorded)
REJECTED = {400, 404, 413}  # refused before routing (not recorded)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text with every kind of character, lone surrogates included (JSON carries them as \\udXXX).
text = st.text(st.characters(codec=None, categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cs"]), max_size=40)
scalars = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3), max_leaves=8
)
roles = st.sampled_from(["system", "user", "assistant", "tool", "developer", "function", "wizard", ""])
parts = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "input_audio"]) | json_values},
        optional={
            "text": text | json_values,
            "image_url": st.fixed_dictionaries({"url": text}) | json_values,
            "input_audio": st.fixed_dictionaries({"data": text, "format": st.just("wav")}) | json_values,
        },
    ),
    max_size=3,
)
message = st.fixed_dictionaries(
    {"role": roles | json_values, "content": text | parts | st.none() | json_values},
    optional={"name": text | json_values, "tool_call_id": text, "tool_calls": json_values},
)
function = st.fixed_dictionaries(
    {"name": st.sampled_from(["lookup", "get_weather", "bad name!", ""]) | text},
    optional={"parameters": st.just({"type": "object", "properties": {"q": {"type": "string"}}}) | json_values},
)
tools = st.lists(st.fixed_dictionaries({"type": st.just("function") | text, "function": function | json_values}))
models = st.sampled_from(["sophia-auto", *SERVERLESS_MODELS, DEDICATED_MODEL, "gpt-4o", ""])
known = st.fixed_dictionaries(
    {"model": models | json_values, "messages": st.lists(message, max_size=3) | json_values},
    optional={
        "max_tokens": st.integers(-3, 250_000) | json_values,
        "max_completion_tokens": st.integers(-3, 250_000) | json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values})
        | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "n": st.integers(0, 3) | json_values,
        "stop": text | st.lists(text, max_size=5) | json_values,
        "tools": tools | json_values,
        "tool_choice": st.sampled_from(["none", "auto", "required", "maybe"]) | json_values,
        "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])})
        | json_values,
        "logprobs": st.booleans() | json_values,
        "seed": st.integers(-(2**64), 2**64) | json_values,
    },
)
body = st.builds(lambda extra, b: {**extra, **b}, st.dictionaries(text, json_values, max_size=2), known)
# Mostly plausible requests, some valid ones, and some plain garbage.
valid = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["sophia-auto", *SERVERLESS_MODELS, DEDICATED_MODEL]),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=60)}
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "max_tokens": st.integers(1, 3000),
        "stream": st.booleans(),
        "stream_options": st.just({"include_usage": True}),
    },
)
raw_bodies = (
    body.map(json.dumps)
    | valid.map(json.dumps)
    | json_values.map(json.dumps)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with FakeOpenAI(reply="fuzzed reply with several words") as fake:
        data = config_dict(fake.base_url, [fake.base_url] * 3)
        data["privacy"] = {"store_prompts": "on"}
        data["cache"]["enabled"] = True
        data["server"] = {"max_body_bytes": 16_384, "refresh_interval_s": 0}
        # Capabilities differ by place: some requests move (reason capability), some are refused
        # before any call (n > 1, audio) and must still be recorded.
        for e in data["endpoints"]:
            e["capabilities"] = ["chat", "json_mode"] if e["tier"] == "serverless" else ["chat", "tools", "vision"]
        cfg = tmp / "sophia.toml"
        write_toml(cfg, data)
        server = Server(cfg, tmp / "log.duckdb")
        state = {
            "server": server,
            "routed": set(),
            "client": httpx.Client(base_url=server.url, timeout=30),
            "statuses": {},
        }
        try:
            yield state
        finally:
            state["client"].close()
            server.kill()  # stopped gracefully by the last test; never left behind
        assert fake.errors == []


def check(state: dict, path: str, raw: str | bytes) -> None:
    content = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    r = state["client"].post(path, content=content, headers={"content-type": "application/json"})
    state["statuses"][r.status_code] = state["statuses"].get(r.status_code, 0) + 1
    assert r.status_code in ROUTED | REJECTED, (r.status_code, raw, r.text[:300])
    # Routed, and so recorded: every routed answer names its request id (a capability refusal too).
    assert (r.status_code in ROUTED) <= ("x-request-id" in r.headers)
    if "x-request-id" in r.headers:
        rid = r.headers["x-request-id"]
        assert rid not in state["routed"]
        state["routed"].add(rid)
    if r.headers["content-type"].startswith("text/event-stream"):
        assert r.status_code == 200
        events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and all(json.loads(e) for e in events[:-1])
        return
    data = r.json()
    if r.status_code != 200:
        assert set(data["error"]) == {"message", "type", "param", "code"}, data
    elif path == "/chat":
        assert set(data) >= {"response", "routing", "timestamp"}
    else:
        assert data["object"] == "chat.completion" and data["choices"][0]["message"]["role"] == "assistant"


@FUZZ
@given(raw=raw_bodies)
def test_fuzz_chat_completions(served, raw):
    check(served, "/v1/chat/completions", raw)


@settings(FUZZ, max_examples=100)
@given(
    raw=body.map(lambda b: json.dumps({k: v for k, v in b.items() if k in ("messages", "max_tokens", "model")}))
    | valid.map(lambda b: json.dumps({"messages": b["messages"], "max_tokens": b.get("max_tokens", 50)}))
    | json_values.map(json.dumps)
)
def test_fuzz_reference_chat(served, raw):
    check(served, "/chat", raw)


def test_fuzz_never_lost_a_record(served):
    """Last: after a graceful shutdown the log holds exactly the routed requests."""
    server: Server = served["server"]
    assert server.stop() == 0
    rows = log_rows(server.db)
    assert set(rows) == served["routed"], server.output[-3000:]
    assert all(r["source"] == "api" for r in rows.values())
    statuses = served["statuses"]
    if statuses:  # the fuzzing reached both sides: routed requests and refused ones
        assert statuses.get(200, 0) > 0 and sum(statuses.get(s, 0) for s in REJECTED) > 0, statuses
