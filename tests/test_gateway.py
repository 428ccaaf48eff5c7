"""Sophia as a drop-in gateway for the whole OpenAI chat completions API, end to end: the official
`openai` client, unchanged, in front of a real `sophia serve` subprocess, OpenAI-compatible
servers (tests/fakeopenai.py) behind it.

What a client sends reaches the upstream as sent (the routed model aside, and include_usage on
streams); what the upstream answers (tool calls, logprobs, refusals, several choices, finish
reasons, usage details) reaches the client as answered, and is recorded. Sophia routes by what a
request needs (`capabilities` of endpoints and models), caches only what is deterministic, and
serves /v1/embeddings.

Three servers, one per configuration: `main` (every endpoint serves everything), `routed`
(the serverless endpoint serves plain chat only and drops logit_bias; the cache is on) and
`bare` (no endpoint serves tools). Records are read from the log while the server runs, waiting
until the writer has flushed them.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakeopenai import DEFAULT_REPLY, TOOL_REPLY, FakeOpenAI, embedding_of, input_tokens_of
from tests.helpers import DEDICATED_MODEL, DEDICATED_NAMES, SERVERLESS_MODELS, Server, config_dict, log_rows, write_toml

pytestmark = pytest.mark.slow

PRIMARY = SERVERLESS_MODELS[0]
EMBED_MODEL = "text-embedding-3-small"
EMBED_PRICE = 0.02  # USD per 1M input tokens

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up in the dictionary",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
]
FUNCTIONS = [TOOLS[0]["function"]]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==", "detail": "low"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZFZm10IBAAAAAB", "format": "wav"}}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"reply": {"type": "string"}},
            "required": ["reply"],
            "additionalProperties": False,
        },
    },
}


# --- the servers --------------------------------------------------------------------------------


@dataclass
class Gateway:
    """One `sophia serve` process, a fake upstream per endpoint, and one client that keeps the bytes it sent."""

    server: Server
    fakes: dict[str, FakeOpenAI]
    sent: list[bytes] = field(default_factory=list)
    _client: openai.OpenAI | None = None

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            http = httpx.Client(event_hooks={"request": [self._capture]}, timeout=30)
            self._client = self.server.client(None, http_client=http)
        return self._client

    def _capture(self, request: httpx.Request) -> None:
        self.sent.append(request.read())

    def reset(self) -> Gateway:
        for f in self.fakes.values():
            f.reset()
        self.sent.clear()
        return self

    def calls(self) -> int:
        """Upstream requests (chat and embeddings) since the last reset, over every endpoint."""
        return sum(f.calls for f in self.fakes.values())

    def upstream(self) -> tuple[str, FakeOpenAI]:
        """The one endpoint that received a chat request since the last reset."""
        hit = [(n, f) for n, f in self.fakes.items() if f.requests]
        assert len(hit) == 1 and len(hit[0][1].requests) == 1, {n: len(f.requests) for n, f in self.fakes.items()}
        return hit[0]

    def record(self, request_id: str, timeout_s: float = 15) -> dict:
        """The request's record, once the server's writer has written it."""
        return self.records(f"request_id = '{_safe(request_id)}'", timeout_s)[0]

    def records(self, where: str, timeout_s: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = list(log_rows(self.server.db, where).values())
            if rows:
                return rows
            assert time.monotonic() < deadline, f"no record where {where}"
            time.sleep(0.05)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _safe(request_id: str) -> str:
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", request_id), request_id
    return request_id


def start(tmp: Path, tweak: Callable[[dict], None]) -> Gateway:
    fakes = {name: FakeOpenAI().start() for name in ("serverless", *DEDICATED_NAMES)}
    try:
        data = config_dict(fakes["serverless"].base_url, [fakes[n].base_url for n in DEDICATED_NAMES])
        data["failover"].update(max_retries=0, retry_backoff_s=0)
        data["server"] = {"refresh_interval_s": 0}
        data["log"] = {"flush_interval_s": 0.05}
        tweak(data)
        cfg = write_toml(tmp / "sophia.toml", data)
        return Gateway(Server(cfg, tmp / "log.duckdb"), fakes)
    except BaseException:
        for f in fakes.values():
            f.stop()
        raise


def stop(g: Gateway) -> None:
    try:
        g.close()
        assert g.server.stop() == 0, g.server.output[-3000:]
    finally:
        g.server.kill()
        for f in g.fakes.values():
            f.stop()
    assert all(not f.errors for f in g.fakes.values()), {n: f.errors for n, f in g.fakes.items()}


def _main_config(data: dict) -> None:
    """Every endpoint serves every chat capability; an embeddings model on the serverless endpoint."""
    data["endpoints"][0]["models"].append(EMBED_MODEL)
    data["models"].append(
        {"name": EMBED_MODEL, "input_per_mtok": EMBED_PRICE, "output_per_mtok": 0.0, "capabilities": ["embeddings"]}
    )


def _routed_config(data: dict) -> None:
    """Serverless: plain chat only, without logit_bias; the dedicated endpoints serve everything; cache on."""
    data["endpoints"][0].update(capabilities=["chat"], drop_params=["logit_bias"])
    data["cache"]["enabled"] = True


def _bare_config(data: dict) -> None:
    """No endpoint serves tools."""
    for ep in data["endpoints"]:
        ep["capabilities"] = ["chat"]


@pytest.fixture(scope="module")
def _main(tmp_path_factory) -> Iterator[Gateway]:
    g = start(tmp_path_factory.mktemp("main"), _main_config)
    yield g
    stop(g)


@pytest.fixture(scope="module")
def _routed(tmp_path_factory) -> Iterator[Gateway]:
    g = start(tmp_path_factory.mktemp("routed"), _routed_config)
    yield g
    stop(g)


@pytest.fixture(scope="module")
def _bare(tmp_path_factory) -> Iterator[Gateway]:
    g = start(tmp_path_factory.mktemp("bare"), _bare_config)
    yield g
    stop(g)


@pytest.fixture
def main(_main: Gateway) -> Gateway:
    return _main.reset()


@pytest.fixture
def routed(_routed: Gateway) -> Gateway:
    return _routed.reset()


@pytest.fixture
def bare(_bare: Gateway) -> Gateway:
    return _bare.reset()


# --- requests and what came back -----------------------------------------------------------------


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def create(g: Gateway, **kw) -> tuple[dict, httpx.Headers, object]:
    """A chat completion through Sophia: (the JSON body as received, the headers, the parsed completion)."""
    kw.setdefault("model", "sophia-auto")
    raw = g.client.chat.completions.with_raw_response.create(**kw)
    return raw.http_response.json(), raw.headers, raw.parse()


def stream(g: Gateway, **kw) -> tuple[list[dict], httpx.Headers]:
    """A streamed chat completion through Sophia: (every chunk as a dict, the headers)."""
    kw.setdefault("model", "sophia-auto")
    raw = g.client.chat.completions.with_raw_response.create(stream=True, **kw)
    assert raw.headers["content-type"].startswith("text/event-stream")
    return [c.to_dict() for c in raw.parse()], raw.headers


def prune(v: object) -> object:
    """A JSON value without its null members (a field sent as null and one left out are the same)."""
    if isinstance(v, dict):
        return {k: prune(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [prune(x) for x in v]
    return v


def assemble(chunks: list[dict]) -> dict[int, dict]:
    """Each choice of a stream put together from its deltas, by index."""
    out: dict[int, dict] = {}
    for chunk in chunks:
        for c in chunk.get("choices") or []:
            a = out.setdefault(
                c["index"],
                {"content": "", "refusal": "", "tool_calls": {}, "function_call": None, "finish_reason": None},
            )
            d = c.get("delta") or {}
            for k in ("content", "refusal"):
                a[k] += d.get(k) or ""
            for t in d.get("tool_calls") or []:
                call = a["tool_calls"].setdefault(t["index"], {"id": None, "type": None, "name": "", "arguments": ""})
                call["id"] = t.get("id") or call["id"]
                call["type"] = t.get("type") or call["type"]
                call["name"] += (t.get("function") or {}).get("name") or ""
                call["arguments"] += (t.get("function") or {}).get("arguments") or ""
            if d.get("function_call"):
                fc = a["function_call"] = a["function_call"] or {"name": "", "arguments": ""}
                fc["name"] += d["function_call"].get("name") or ""
                fc["arguments"] += d["function_call"].get("arguments") or ""
            if c.get("finish_reason"):
                a["finish_reason"] = c["finish_reason"]
            lp = c.get("logprobs")
            if lp and lp.get("content"):
                a.setdefault("logprobs", []).extend(prune(lp["content"]))
    return out


def usage_chunk(chunks: list[dict]) -> dict:
    [last] = [c for c in chunks if c.get("usage")]
    assert last["choices"] == [] and last is chunks[-1]
    return last["usage"]


def strip(body: dict) -> dict:
    """A request body less what Sophia sets itself."""
    return {k: v for k, v in body.items() if k not in ("model", "stream_options")}


def col(row: dict, name: str):
    assert name in row, f"the log has no column {name!r}"
    return row[name]


# --- 1. what a client sends reaches the upstream as sent ----------------------------------------------


def conversation() -> list[dict]:
    return [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "name": "ada",
            "content": [{"type": "text", "text": "What is on this picture?"}, IMAGE, AUDIO],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "picture"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat on a mat"},
        {"role": "user", "content": "Say it in one word."},
    ]


SAMPLING = {
    "temperature": 0.3,
    "top_p": 0.9,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
    "logit_bias": {"50256": -100},
    "seed": 11,
    "stop": ["\n\n", "END"],
    "n": 2,
    "logprobs": True,
    "top_logprobs": 2,
    "max_tokens": 200,
    "max_completion_tokens": 150,
    "user": "user-42",
    "metadata": {"team": "a"},
    "reasoning_effort": "low",
}
CALLING = {
    "tools": {
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "parallel_tool_calls": False,
        "response_format": JSON_SCHEMA,
    },
    "functions": {"functions": FUNCTIONS, "function_call": "auto", "response_format": {"type": "json_object"}},
}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("calling", sorted(CALLING))
def test_every_field_reaches_the_upstream_as_sent(main: Gateway, calling: str, streamed: bool):
    kw = {**SAMPLING, **copy.deepcopy(CALLING[calling]), "messages": conversation()}
    extra = {"extra_body": {"vendor_extension": {"x": 1}}}
    if streamed:
        if calling == "functions":  # the client's include_usage: false is overridden
            kw["stream_options"] = {"include_usage": False}
        _, headers = stream(main, **kw, **extra)
    else:
        _, headers, _ = create(main, **kw, **extra)
    [sent] = main.sent
    name, fake = main.upstream()
    got = json.loads(fake.raw[0])
    assert fake.requests[0] == got
    client = json.loads(sent)
    assert client["vendor_extension"] == {"x": 1} and client["messages"] == conversation()
    # Equal JSON, in the client's key order (nested too), but for the model and the stream options.
    assert json.dumps(strip(got)) == json.dumps(strip(client))
    assert got["model"] == headers["x-sophia-model"] and got["model"] != "sophia-auto"
    if streamed:
        assert got["stream"] is True and got["stream_options"]["include_usage"] is True
    else:
        assert "stream_options" not in got and not got.get("stream")
    assert "x-sophia-ignored-params" not in headers


# --- 2. what the upstream answers reaches the client as answered ----------------------------------


def test_tool_call_round_trip(main: Gateway):
    msgs = user("Find the word serendipity.")
    body, headers, done = create(main, messages=msgs, tools=TOOLS)
    _, fake = main.upstream()
    answer = fake.responses[0]
    assert prune(body["choices"]) == prune(answer["choices"])
    [call] = done.choices[0].message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_fake1_0", "function", "lookup")
    assert json.loads(call.function.arguments) == {"q": "Find the word serendipity."}
    assert done.choices[0].finish_reason == "tool_calls" and done.choices[0].message.content is None
    row = main.record(headers["x-request-id"])
    assert col(row, "finish_reason") == "tool_calls" and col(row, "tool_calls") == 1 and col(row, "uses_tools") is True
    # The tool's result goes back; the upstream gets the assistant's call and the tool message as sent.
    turn = [
        *msgs,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "a happy accident"},
    ]
    main.reset()
    body, headers, done = create(main, messages=turn, tools=TOOLS)
    _, fake = main.upstream()
    assert fake.requests[0]["messages"] == turn
    assert done.choices[0].message.content == TOOL_REPLY.format("a happy accident")
    assert done.choices[0].finish_reason == "stop" and not done.choices[0].message.tool_calls
    assert col(main.record(headers["x-request-id"]), "finish_reason") == "stop"


def test_tool_call_round_trip_streamed(main: Gateway):
    msgs = user("Find the word petrichor.")
    named = {"type": "function", "function": {"name": "weather"}}
    # The client's own stream helper puts the tool call back together from its fragments.
    with main.client.chat.completions.stream(
        model="sophia-auto", messages=msgs, tools=TOOLS, tool_choice=named
    ) as events:
        final = events.get_final_completion()
    _, fake = main.upstream()
    [sent] = assemble(fake.responses[0]).values()
    [call] = final.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        sent["tool_calls"][0]["id"],
        "weather",
        json.dumps({"q": "Find the word petrichor."}),
    )
    assert final.choices[0].finish_reason == "tool_calls"
    row = main.record(final.id.removeprefix("chatcmpl-"))
    assert col(row, "finish_reason") == "tool_calls" and col(row, "tool_calls") == 1 and row["streamed"]
    # The tool's result goes back, streamed too.
    turn = [
        *msgs,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True, exclude={"index"})]},
        {"role": "tool", "tool_call_id": call.id, "content": "rain on dry earth"},
    ]
    main.reset()
    chunks, _ = stream(main, messages=turn, tools=TOOLS, stream_options={"include_usage": True})
    _, fake = main.upstream()
    assert fake.requests[0]["messages"] == turn
    assert assemble(chunks) == assemble(fake.responses[0])
    assert assemble(chunks)[0]["content"] == TOOL_REPLY.format("rain on dry earth")
    assert usage_chunk(chunks)["completion_tokens"] == usage_chunk(fake.responses[0])["completion_tokens"]


def test_streamed_tool_call_fragments_pass_through(main: Gateway):
    chunks, _ = stream(main, messages=user("Find the word sonder."), tools=TOOLS)
    _, fake = main.upstream()
    fragments = [c for ch in fake.responses[0] for c in ch["choices"] if c["delta"].get("tool_calls")]
    assert len(fragments) > 2  # the name first, then the arguments in pieces
    got = assemble(chunks)
    assert got == assemble(fake.responses[0])
    assert got[0]["tool_calls"][0]["name"] == "lookup" and got[0]["finish_reason"] == "tool_calls"
    assert json.loads(got[0]["tool_calls"][0]["arguments"]) == {"q": "Find the word sonder."}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("reason", ["length", "content_filter"])
def test_finish_reason_is_the_upstreams(main: Gateway, reason: str, streamed: bool):
    main.fakes["serverless"].finish_reason = reason
    if streamed:
        chunks, _ = stream(main, messages=user(f"Finish with {reason}."), max_tokens=300)
        assert [c["finish_reason"] for ch in chunks for c in ch["choices"] if c.get("finish_reason")] == [reason]
    else:
        _, _, done = create(main, messages=user(f"Finish with {reason}."), max_tokens=300)
        assert done.choices[0].finish_reason == reason


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_logprobs(main: Gateway, streamed: bool):
    kw = {"messages": user("Give me logprobs."), "logprobs": True, "top_logprobs": 2}
    if streamed:
        chunks, _ = stream(main, **kw)
        _, fake = main.upstream()
        got = assemble(chunks)
        assert got == assemble(fake.responses[0]) and len(got[0]["logprobs"]) == len(DEFAULT_REPLY.split())
        assert all(len(e["top_logprobs"]) == 2 for e in got[0]["logprobs"])
    else:
        body, _, done = create(main, **kw)
        _, fake = main.upstream()
        assert prune(body["choices"]) == prune(fake.responses[0]["choices"])
        tokens = done.choices[0].logprobs.content
        assert "".join(t.token for t in tokens) == DEFAULT_REPLY and len(tokens[0].top_logprobs) == 2


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_refusal(main: Gateway, streamed: bool):
    refusal = "I cannot help with that request."
    main.fakes["serverless"].next_choices = [{"message": {"role": "assistant", "content": None, "refusal": refusal}}]
    if streamed:
        chunks, _ = stream(main, messages=user("Do something bad."))
        _, fake = main.upstream()
        assert assemble(chunks) == assemble(fake.responses[0])
        assert assemble(chunks)[0]["refusal"] == refusal
    else:
        body, _, done = create(main, messages=user("Do something bad."))
        _, fake = main.upstream()
        assert prune(body["choices"]) == prune(fake.responses[0]["choices"])
        assert done.choices[0].message.refusal == refusal and done.choices[0].message.content is None


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_several_choices(main: Gateway, streamed: bool):
    kw = {"messages": user("Three answers, please."), "n": 3}
    if streamed:
        chunks, headers = stream(main, **kw, stream_options={"include_usage": True})
        _, fake = main.upstream()
        got = assemble(chunks)
        assert sorted(got) == [0, 1, 2] and got == assemble(fake.responses[0])
        assert [got[i]["content"] for i in range(3)] == [DEFAULT_REPLY, f"{DEFAULT_REPLY} #1", f"{DEFAULT_REPLY} #2"]
        upstream_usage = usage_chunk(fake.responses[0])
        usage = usage_chunk(chunks)
    else:
        body, headers, done = create(main, **kw)
        _, fake = main.upstream()
        assert [c.index for c in done.choices] == [0, 1, 2]
        assert prune(body["choices"]) == prune(fake.responses[0]["choices"])
        upstream_usage, usage = fake.responses[0]["usage"], body["usage"]
    assert usage["completion_tokens"] == upstream_usage["completion_tokens"] == 3 * len(DEFAULT_REPLY.split()) + 2
    row = main.record(headers["x-request-id"])
    assert col(row, "choices") == 3 and row["completion_tokens"] == upstream_usage["completion_tokens"]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_fingerprint_and_usage_details(main: Gateway, streamed: bool):
    fake = main.fakes["serverless"]
    fake.fingerprint = "fp_fake_42"
    fake.usage_extra = {
        "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0},
    }
    msgs = user("A prompt long enough to have some cached tokens in it.")
    if streamed:
        chunks, headers = stream(main, messages=msgs, stream_options={"include_usage": True})
        assert {c.get("system_fingerprint") for c in chunks} == {"fp_fake_42"}
        usage = usage_chunk(chunks)
    else:
        body, headers, done = create(main, messages=msgs)
        assert done.system_fingerprint == "fp_fake_42"
        usage = body["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 4, "audio_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 3, "audio_tokens": 0}
    assert usage["cost_usd"] > 0
    row = main.record(headers["x-request-id"])
    assert col(row, "cached_prompt_tokens") == 4 and col(row, "reasoning_tokens") == 3


def test_json_mode(main: Gateway):
    body, headers, done = create(main, messages=user("Answer in JSON."), response_format={"type": "json_object"})
    _, fake = main.upstream()
    assert fake.requests[0]["response_format"] == {"type": "json_object"}
    assert json.loads(done.choices[0].message.content) == {"reply": DEFAULT_REPLY}
    assert col(main.record(headers["x-request-id"]), "response_format") == "json_object"


def test_image_part(main: Gateway):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Describe this image."}, IMAGE]}]
    _, headers, done = create(main, messages=msgs)
    _, fake = main.upstream()
    assert fake.requests[0]["messages"] == msgs
    assert done.choices[0].message.content == DEFAULT_REPLY
    assert col(main.record(headers["x-request-id"]), "images") == 1


# --- 6. the other OpenAI endpoints ------------------------------------------------------------------


def test_legacy_completions_is_404_naming_chat_completions(main: Gateway):
    with pytest.raises(openai.NotFoundError) as e:
        main.client.completions.create(model="sophia-auto", prompt="Say hello.")
    assert "/v1/chat/completions" in e.value.response.json()["error"]["message"]
    assert main.calls() == 0


def test_embeddings(main: Gateway):
    texts = ["The quick brown fox.", "jumps over the lazy dog"]
    raw = main.client.embeddings.with_raw_response.create(model=EMBED_MODEL, input=texts)
    got = raw.parse()
    fake = main.fakes["serverless"]
    [req] = fake.embedding_requests
    assert req["model"] == EMBED_MODEL and req["input"] == texts
    assert [d.embedding for d in got.data] == [embedding_of(t) for t in texts]
    p = input_tokens_of(texts)
    assert got.usage.prompt_tokens == p and main.calls() == 1
    row = main.record(raw.headers["x-request-id"])
    assert (row["model"], row["prompt_tokens"], row["status"]) == (EMBED_MODEL, p, "ok")
    assert row["metered_cost_usd"] + row["amortized_cost_usd"] == pytest.approx(p * EMBED_PRICE / 1e6, abs=1e-12)


# --- 4. routing by capability, and fields an endpoint does not take ------------------------------------


def test_tools_go_to_an_endpoint_that_serves_them(routed: Gateway):
    _, headers, _ = create(routed, messages=user("Plain hello, no tools."))
    assert headers["x-sophia-tier"] == "serverless" and routed.upstream()[0] == "serverless"
    routed.reset()
    _, headers, done = create(routed, messages=user("Look up a word for me."), tools=TOOLS)
    assert (headers["x-sophia-tier"], headers["x-sophia-reason"]) == ("dedicated", "capability")
    name, fake = routed.upstream()
    assert name in DEDICATED_NAMES and fake.requests[0]["tools"] == TOOLS
    assert fake.requests[0]["model"] == DEDICATED_MODEL and done.choices[0].finish_reason == "tool_calls"
    row = routed.record(headers["x-request-id"])
    assert (row["tier"], row["reason"]) == ("dedicated", "capability")


def test_drop_params(routed: Gateway):
    _, headers, _ = create(routed, messages=user("Bias me not."), logit_bias={"50256": -100}, temperature=0.2)
    name, fake = routed.upstream()
    assert name == "serverless"
    assert "logit_bias" not in fake.requests[0] and fake.requests[0]["temperature"] == 0.2
    assert headers["x-sophia-ignored-params"] == "logit_bias"


def test_no_endpoint_serves_tools_is_400_and_refused(bare: Gateway):
    with pytest.raises(openai.BadRequestError) as e:
        bare.client.chat.completions.create(model="sophia-auto", messages=user("Call a tool."), tools=TOOLS)
    assert e.value.status_code == 400 and "tools" in e.value.response.json()["error"]["message"]
    assert bare.calls() == 0
    [row] = bare.records("status = 'refused'")
    rid = e.value.response.headers.get("x-request-id")
    assert rid is None or row["request_id"] == rid


# --- 5. the cache: what is deterministic only ---------------------------------------------------------

T0 = {"temperature": 0}
CACHE_CASES = {  # first request, second request, headers of the second, upstream calls
    "temperature-0-twice": (T0, T0, None, 1),
    "temperature-0-then-0.5-seeded": (T0, {"temperature": 0.5, "seed": 3}, None, 2),
    "different-tools": ({**T0, "tools": TOOLS[:1]}, {**T0, "tools": TOOLS[1:]}, None, 2),
    "seeded-sampling-twice": ({"temperature": 0.7, "seed": 42}, {"temperature": 0.7, "seed": 42}, None, 1),
    "unseeded-sampling-twice": ({"temperature": 0.7}, {"temperature": 0.7}, None, 2),
    "cache-control-no-cache": (T0, T0, {"Cache-Control": "no-cache"}, 2),
    "x-sophia-cache-off": (T0, T0, {"x-sophia-cache": "off"}, 2),
}


@pytest.mark.parametrize("case", list(CACHE_CASES))
def test_cache(routed: Gateway, case: str):
    first, second, headers, calls = CACHE_CASES[case]
    msgs = user(f"Cache case {case}: say hello.")  # a prompt of its own: no hit from another case
    _, _, a = create(routed, messages=msgs, **first)
    _, _, b = create(routed, messages=msgs, **second, extra_headers=headers)
    assert routed.calls() == calls
    if calls == 1:
        assert b.choices[0].message == a.choices[0].message
