"""The simulated backend answers like an OpenAI-compatible server: replies, several choices, tool
calls, JSON mode, logprobs, streams that assemble into the same reply, faults, embeddings."""

from __future__ import annotations

import base64
import json
import math
import re
from array import array

import pytest

from sophia.config import Endpoint, Simulation
from sophia.routing.backends.base import BackendError, Chunk, Reply, Usage
from sophia.routing.backends.simulated import DEFAULT_MAX_TOKENS, SimulatedBackend, latency_ms
from sophia.routing.features import estimate_tokens, prompt_text
from tests.helpers import drain

QUESTION = [{"role": "user", "content": "How do I tune a Postgres index for faster queries on large tables?"}]
WEATHER = [{"role": "user", "content": "What's the weather in Paris today?"}]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1},
    },
    "required": ["location", "unit"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": WEATHER_PARAMS},
    },
]
SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "steps": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "level": {"enum": ["low", "high"]},
        "meta": {"$ref": "#/$defs/meta"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["answer", "confidence", "steps", "level", "meta"],
    "$defs": {
        "meta": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "count": {"type": "integer"}, "tags": {"type": "array"}},
        }
    },
}


def sim(seed: int = 7, sleeps: list | None = None, **kw) -> SimulatedBackend:
    ep = Endpoint(name="sim", tier="dedicated", kind="simulated", models=("m",), simulation=Simulation(seed=seed, **kw))
    return SimulatedBackend(ep, sleep=(sleeps.append if sleeps is not None else (lambda s: None)))


def body(messages=QUESTION, **kw) -> dict:
    return {"model": "client-model", "messages": messages, **kw}


def assemble(chunks: list[Chunk]) -> list[dict]:
    """Stream deltas back into whole choices, as a client does: by choice index, strings
    concatenated, tool call fragments merged by their index, logprobs lists extended."""
    out: dict[int, dict] = {}
    for chunk in chunks:
        for ch in chunk.choices or ():
            c = out.setdefault(
                ch["index"],
                {
                    "index": ch["index"],
                    "message": {"role": "assistant", "content": None, "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                },
            )
            msg, delta = c["message"], ch["delta"]
            if "content" in delta:
                msg["content"] = (msg["content"] or "") + delta["content"]
            for frag in delta.get("tool_calls", ()):
                calls = msg.setdefault("tool_calls", [])
                while len(calls) <= frag["index"]:
                    calls.append({"function": {"arguments": ""}})
                call = calls[frag["index"]]
                for key in ("id", "type"):
                    if key in frag:
                        call[key] = frag[key]
                call["function"].update(name=frag["function"].get("name", call["function"].get("name")))
                call["function"]["arguments"] += frag["function"].get("arguments", "")
            if "function_call" in delta:
                fc = msg.setdefault("function_call", {"arguments": ""})
                fc.setdefault("name", delta["function_call"].get("name"))
                fc["arguments"] += delta["function_call"].get("arguments", "")
            if ch["logprobs"] is not None:
                c["logprobs"] = c["logprobs"] or {"content": [], "refusal": None}
                c["logprobs"]["content"] += ch["logprobs"]["content"]
            if ch["finish_reason"] is not None:
                c["finish_reason"] = ch["finish_reason"]
    return [out[i] for i in sorted(out)]


def matches(value, schema: dict, root: dict) -> bool:
    """Enough of JSON Schema to check the values the backend writes."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type", "object" if "properties" in schema else None)
    kinds = kind if isinstance(kind, list) else [kind]
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        None: lambda v: True,
    }
    if not any(checks[k](value) for k in kinds):
        return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if not set(schema.get("required", ())) <= set(value):
            return False
        return all(k in props and matches(v, props[k], root) for k, v in value.items())
    if isinstance(value, list):
        return len(value) >= schema.get("minItems", 0) and all(matches(v, schema.get("items", {}), root) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf)
    return True


# --- replies ----------------------------------------------------------------------------------


def test_reply_reads_as_an_answer_to_the_last_user_message():
    sleeps: list[float] = []
    b = sim(sleeps=sleeps, ttft_ms=100, tpot_ms=10)
    r = b.complete("m", QUESTION, None)
    assert isinstance(r, Reply) and r.fingerprint == "fp_simulated"
    assert r.text.startswith("[simulated m] ") and r.text[-1] in ".!?"
    words = {w.lower() for w in re.findall(r"\w+", r.text)}
    assert words & {"postgres", "index", "queries", "tables"}
    [choice] = r.choices
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": r.text, "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert r.usage == Usage(estimate_tokens(len(prompt_text(QUESTION))), len(r.text.split(" ")) - 1)
    assert sleeps == [pytest.approx(float(latency_ms(b.sim, r.usage.completion_tokens)) / 1000)]


def test_reply_length_follows_reply_tokens_and_max_tokens():
    b = sim(reply_tokens=40)
    lengths = {b.complete("m", QUESTION, 1000).usage.completion_tokens for _ in range(30)}
    assert min(lengths) >= 20 and max(lengths) < 60 and len(lengths) > 5
    capped = b.complete("m", QUESTION, 5)
    assert capped.usage.completion_tokens == 5 and len(capped.text.split(" ")) == 6
    assert capped.choices[0]["finish_reason"] == "length"
    # the body's limit is the one that counts; max_completion_tokens before max_tokens
    r = b.complete("m", QUESTION, 1000, body(max_tokens=100, max_completion_tokens=3))
    assert (r.usage.completion_tokens, r.choices[0]["finish_reason"]) == (3, "length")
    r = b.complete("m", QUESTION, 1000, body(max_tokens=4))
    assert r.usage.completion_tokens == 4
    long = sim(reply_tokens=5000).complete("m", QUESTION, None, body())
    assert (long.usage.completion_tokens, long.choices[0]["finish_reason"]) == (DEFAULT_MAX_TOKENS, "length")


def test_replies_with_no_topic_words_still_read_as_sentences():
    b = sim()
    for text in ("hi", "x" * 101, "?"):
        r = b.complete("m", [{"role": "user", "content": text}], 200)
        assert r.text.startswith("[simulated m] ") and r.text[-1] in ".!?"


def test_deterministic_under_a_seed():
    def run(b: SimulatedBackend) -> list:
        out = []
        for i in range(15):
            msgs = [{"role": "user", "content": f"question {i} about caching"}]
            kw = {"n": 1 + i % 3, "tools": TOOLS} if i % 4 == 0 else {"n": 1 + i % 3}
            try:
                out.append(b.complete("m", msgs, 200, body(msgs, **kw)))
            except BackendError as e:
                out.append(("error", e.kind))
            chunks, err = drain(b.stream("m", msgs, 200, body(msgs, **kw)))
            out.append((tuple(chunks), err.kind if err else None))
        return out

    kw = {"error_rate": 0.2, "cut_rate": 0.2, "slow_rate": 0.2}
    a, again, other = run(sim(1, **kw)), run(sim(1, **kw)), run(sim(2, **kw))
    assert a == again
    assert a != other
    kinds = {type(x).__name__ if not isinstance(x, tuple) else x[0] if x[0] == "error" else x[1] for x in a}
    assert {"Reply", "error", "cut_stream", None} <= kinds  # the mix really has replies and faults


def test_request_seed_makes_the_reply_depend_on_the_request_alone():
    b = sim()
    first = b.complete("m", QUESTION, None, body(seed=42))
    b.complete("m", QUESTION, None, body())
    assert b.complete("m", QUESTION, None, body(seed=42)).choices == first.choices
    assert sim(seed=7).complete("m", QUESTION, None, body(seed=42)).choices == first.choices
    assert b.complete("m", QUESTION, None, body(seed=43)).text != first.text


def test_n_choices_differ_and_usage_sums_them():
    r = sim().complete("m", QUESTION, None, body(n=3))
    assert [c["index"] for c in r.choices] == [0, 1, 2]
    texts = [c["message"]["content"] for c in r.choices]
    assert len(set(texts)) == 3 and all(t.startswith("[simulated m] ") for t in texts)
    assert r.text == texts[0]
    assert r.usage.completion_tokens == sum(len(t.split(" ")) - 1 for t in texts)


# --- tools ------------------------------------------------------------------------------------


def the_call(r: Reply, finish: str = "tool_calls") -> dict:
    [choice] = r.choices
    msg = choice["message"]
    assert choice["finish_reason"] == finish and msg["content"] is None and msg["refusal"] is None
    [call] = msg["tool_calls"]
    assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"]) and call["type"] == "function"
    assert r.usage.completion_tokens == max(1, len(call["function"]["arguments"].split()))
    return call


def test_auto_calls_the_tool_that_fits_the_prompt_with_schema_arguments():
    r = sim().complete("m", WEATHER, None, body(WEATHER, tools=TOOLS))
    call = the_call(r)
    assert call["function"]["name"] == "get_weather"
    args = json.loads(call["function"]["arguments"])
    assert args == {"location": "Paris", "unit": "celsius"}  # the required properties, from the prompt
    assert matches(args, WEATHER_PARAMS, WEATHER_PARAMS)
    prompt = estimate_tokens(len(prompt_text(WEATHER)))
    assert r.usage.prompt_tokens == prompt + estimate_tokens(len(json.dumps(TOOLS)))
    assert r.text == ""


def test_required_and_named_tool_choice():
    b = sim()
    named = {"type": "function", "function": {"name": "search_docs"}}
    call = the_call(b.complete("m", WEATHER, None, body(WEATHER, tools=TOOLS, tool_choice=named)))
    assert call["function"]["name"] == "search_docs"
    assert json.loads(call["function"]["arguments"]) == {"query": "Paris"}  # no required: every property
    after_tool = WEATHER + [{"role": "tool", "tool_call_id": "x", "content": "sunny"}]
    call = the_call(b.complete("m", after_tool, None, body(after_tool, tools=TOOLS, tool_choice="required")))
    assert call["function"]["name"] == "get_weather"
    bare = [{"type": "function", "function": {"name": "ping"}}]  # no parameters: an empty object
    assert the_call(b.complete("m", WEATHER, None, body(WEATHER, tools=bare)))["function"]["arguments"] == "{}"
    unknown = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(BackendError) as ei:
        b.complete("m", WEATHER, None, body(WEATHER, tools=TOOLS, tool_choice=unknown))
    assert (ei.value.status, ei.value.retryable) == (400, False)


def test_no_tool_call_when_choice_is_none_or_the_user_did_not_speak_last():
    b = sim()
    r = b.complete("m", WEATHER, None, body(WEATHER, tools=TOOLS, tool_choice="none"))
    assert r.text.startswith("[simulated m] ") and r.choices[0]["finish_reason"] == "stop"
    assert "tool_calls" not in r.choices[0]["message"]
    prefilled = WEATHER + [{"role": "assistant", "content": "Let me think."}]
    r = b.complete("m", prefilled, None, body(prefilled, tools=TOOLS))
    assert r.choices[0]["finish_reason"] == "stop" and r.text.startswith("[simulated m] ")


def test_tool_round_trip_answers_from_the_tool_result():
    b = sim()
    first = b.complete("m", WEATHER, None, body(WEATHER, tools=TOOLS))
    call = the_call(first)
    msgs = WEATHER + [
        first.choices[0]["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 21, "sky": "sunny"}'},
    ]
    r = b.complete("m", msgs, None, body(msgs, tools=TOOLS))
    assert r.choices[0]["finish_reason"] == "stop" and "tool_calls" not in r.choices[0]["message"]
    assert r.text.startswith("[simulated m] Based on get_weather: ") and "sunny" in r.text
    assert r.text[-1] in ".!?"


def test_legacy_functions_answer_with_function_call():
    b = sim()
    functions = [{"name": "get_weather", "parameters": WEATHER_PARAMS}]
    r = b.complete("m", WEATHER, None, body(WEATHER, functions=functions))
    [choice] = r.choices
    assert choice["finish_reason"] == "function_call" and choice["message"]["content"] is None
    fc = choice["message"]["function_call"]
    assert fc["name"] == "get_weather" and matches(json.loads(fc["arguments"]), WEATHER_PARAMS, WEATHER_PARAMS)
    msgs = WEATHER + [choice["message"], {"role": "function", "name": "get_weather", "content": "rain"}]
    back = b.complete("m", msgs, None, body(msgs, functions=functions))
    assert back.text.startswith("[simulated m] Based on get_weather: rain.")
    none = b.complete("m", WEATHER, None, body(WEATHER, functions=functions, function_call="none"))
    assert none.choices[0]["finish_reason"] == "stop"


# --- JSON mode, logprobs ---------------------------------------------------------------------


def test_json_object_mode_gives_a_json_object():
    r = sim().complete("m", QUESTION, None, body(response_format={"type": "json_object"}, n=2))
    for c in r.choices:
        obj = json.loads(c["message"]["content"])
        assert isinstance(obj, dict) and isinstance(obj["answer"], str) and obj["answer"][-1] in ".!?"
    assert r.usage.completion_tokens == sum(len(c["message"]["content"].split()) for c in r.choices)


def test_json_schema_mode_matches_the_schema():
    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": SCHEMA}}
    r = sim().complete("m", QUESTION, None, body(response_format=fmt))
    obj = json.loads(r.text)
    assert matches(obj, SCHEMA, SCHEMA)
    assert set(obj) == {"answer", "confidence", "steps", "level", "meta"}  # the required ones
    assert obj["level"] == "low" and len(obj["steps"]) == 2 and set(obj["meta"]) == {"ok", "count", "tags"}


def test_logprobs_cover_every_token():
    r = sim().complete("m", QUESTION, None, body(logprobs=True, top_logprobs=3, n=2))
    for c in r.choices:
        entries = c["logprobs"]["content"]
        assert c["logprobs"]["refusal"] is None
        assert "".join(e["token"] for e in entries) == c["message"]["content"]
        for e in entries:
            assert e["bytes"] == list(e["token"].encode()) and e["logprob"] < 0
            assert len(e["top_logprobs"]) == 3 and e["top_logprobs"][0]["token"] == e["token"]
            assert set(e["top_logprobs"][1]) == {"token", "logprob", "bytes"}
    assert r.usage.completion_tokens == sum(len(c["logprobs"]["content"]) for c in r.choices)
    plain = sim().complete("m", QUESTION, None, body(logprobs=True))
    assert all(e["top_logprobs"] == [] for e in plain.choices[0]["logprobs"]["content"])


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"n": 3, "logprobs": True, "top_logprobs": 2},
        {"tools": TOOLS, "n": 2},
        {"functions": [{"name": "get_weather", "parameters": WEATHER_PARAMS}]},
        {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
        {"max_tokens": 7, "n": 2},
    ],
)
def test_stream_assembles_into_the_same_reply(kw):
    msgs = WEATHER if "tools" in kw or "functions" in kw else QUESTION
    whole = sim(seed=3).complete("m", msgs, None, body(msgs, **kw))
    chunks, err = drain(sim(seed=3).stream("m", msgs, None, body(msgs, **kw)))
    assert err is None
    assert assemble(chunks) == list(whole.choices)
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].usage == whole.usage and not chunks[-1].choices
    assert all(c.usage is None for c in chunks[:-1]) and all(c.fingerprint == "fp_simulated" for c in chunks)
    for c in chunks[:-1]:
        [ch] = c.choices
        if ch["index"] != 0 or "content" not in ch["delta"]:
            assert c.text == ""


def test_stream_events_carry_a_few_tokens_each_and_tool_calls_start_with_their_name():
    chunks, _ = drain(sim().stream("m", WEATHER, None, body(WEATHER, tools=TOOLS)))
    first = chunks[0].choices[0]["delta"]["tool_calls"][0]
    assert first["function"] == {"name": "get_weather", "arguments": ""} and first["id"].startswith("call_")
    chunks, _ = drain(sim(reply_tokens=40).stream("m", QUESTION, None))
    pieces = [c.choices[0]["delta"]["content"] for c in chunks if c.choices and "content" in c.choices[0]["delta"]]
    assert len(pieces) > 3 and all(1 <= len(p.split()) <= 5 for p in pieces)  # the first piece has the tag


# --- faults -----------------------------------------------------------------------------------


def test_error_rate_one_always_fails_after_the_first_token_time():
    sleeps: list[float] = []
    b = sim(sleeps=sleeps, error_rate=1.0, ttft_ms=80)
    for i in range(10):
        msgs = [{"role": "user", "content": str(i)}]
        with pytest.raises(BackendError) as ei:
            b.complete("m", msgs, 50)
        assert (ei.value.kind, ei.value.status, ei.value.retryable) == ("http_status", 503, True)
        chunks, err = drain(b.stream("m", msgs, 50))
        assert chunks == [] and err is not None and err.status == 503
        with pytest.raises(BackendError):
            b.embed("e", {"input": "x"})
    assert sleeps == [pytest.approx(0.08)] * 30
    assert b.check() is False
    assert sim().check() is True


def test_cut_stream_stops_half_way_and_complete_is_unaffected():
    for i in range(10):
        msgs = [{"role": "user", "content": f"tell me about topic {i}"}]
        kw = {"n": 2, "logprobs": True}
        whole = sim(seed=i, reply_tokens=40).complete("m", msgs, 200, body(msgs, **kw))
        chunks, err = drain(sim(seed=i, reply_tokens=40, cut_rate=1.0).stream("m", msgs, 200, body(msgs, **kw)))
        assert err is not None and err.kind == "cut_stream"
        assert chunks and all(c.usage is None for c in chunks)
        got = assemble(chunks)
        sent = sum(len(c["logprobs"]["content"]) for c in got)
        assert sent == whole.usage.completion_tokens // 2
        assert all(c["finish_reason"] is None for c in got[1:])
        assert whole.text.startswith("".join(c.text for c in chunks))
    assert sim(cut_rate=1.0).complete("m", QUESTION, None).choices[0]["finish_reason"] == "stop"


def test_faults_at_configured_rates():
    b = sim(seed=3, error_rate=0.3)
    fails = 0
    for _ in range(2000):
        try:
            b.complete("m", [{"role": "user", "content": "q"}], 10)
        except BackendError:
            fails += 1
    assert 0.25 < fails / 2000 < 0.35
    s = sim(seed=3, cut_rate=0.5, reply_tokens=20)
    cuts = sum(drain(s.stream("m", [{"role": "user", "content": "q"}], 50))[1] is not None for _ in range(1000))
    assert 0.44 < cuts / 1000 < 0.56


def test_slow_replies_take_slow_factor_longer():
    fast: list[float] = []
    slow: list[float] = []
    sim(seed=5, sleeps=fast, ttft_ms=50, tpot_ms=5).complete("m", QUESTION, 30)
    sim(seed=5, sleeps=slow, ttft_ms=50, tpot_ms=5, slow_rate=1.0, slow_factor=10).complete("m", QUESTION, 30)
    assert slow[0] == pytest.approx(fast[0] * 10)
    streamed: list[float] = []
    drain(sim(seed=5, sleeps=streamed, ttft_ms=50, tpot_ms=5, slow_rate=1.0, slow_factor=10).stream("m", QUESTION, 30))
    assert streamed[0] == pytest.approx(0.5)  # the first token, slowed


def test_without_reported_usage():
    b = sim(report_usage=False)
    assert b.complete("m", QUESTION, None).usage is None
    chunks, err = drain(b.stream("m", QUESTION, None))
    assert err is None and "".join(c.text for c in chunks)
    assert all(c.usage is None for c in chunks)


# --- embeddings -------------------------------------------------------------------------------


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_are_deterministic_unit_vectors():
    sleeps: list[float] = []
    b = sim(sleeps=sleeps, ttft_ms=30)
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue in Europe"]
    e = b.embed("emb", {"input": texts})
    assert sleeps == [pytest.approx(0.03)]
    assert [d["index"] for d in e.data] == [0, 1, 2] and all(d["object"] == "embedding" for d in e.data)
    vecs = [d["embedding"] for d in e.data]
    assert all(len(v) == 256 and math.isclose(math.fsum(x * x for x in v), 1.0) for v in vecs)
    assert e.usage == Usage(sum(estimate_tokens(len(t)) for t in texts), 0)
    again = sim(seed=99).embed("emb", {"input": texts[0]})
    assert again.data[0]["embedding"] == vecs[0]  # the text and model decide, not the endpoint's seed
    assert cosine(vecs[0], vecs[1]) > 0.5 > abs(cosine(vecs[0], vecs[2]))  # shared words point alike
    assert sim().embed("other-model", {"input": texts[0]}).data[0]["embedding"] != vecs[0]


def test_embedding_dimensions_token_ids_and_base64():
    b = sim()
    e = b.embed("emb", {"input": "hello", "dimensions": 64})
    assert len(e.data[0]["embedding"]) == 64
    ids = b.embed("emb", {"input": [1, 2, 3]})
    assert len(ids.data) == 1 and ids.usage.prompt_tokens == 3
    many = b.embed("emb", {"input": [[1, 2], [3, 4, 5]]})
    assert len(many.data) == 2 and many.usage.prompt_tokens == 5
    packed = b.embed("emb", {"input": "hello", "dimensions": 64, "encoding_format": "base64"})
    floats = array("f", base64.b64decode(packed.data[0]["embedding"]))
    assert list(floats) == pytest.approx(e.data[0]["embedding"], abs=1e-6)
    for bad in ({"input": []}, {"input": None}, {"input": [{"x": 1}]}, {"input": "x", "dimensions": 0}):
        with pytest.raises(BackendError) as ei:
            b.embed("emb", bad)
        assert ei.value.status == 400
