"""bench_server's upstream and requests: a loopback OpenAI-compatible server that answers at once
(its script, run in a process of its own) and the plain and tool-calling request bodies."""

from __future__ import annotations

import json

try:  # the same event loop the server uses when it is installed
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


REPLY = "Hello! How can I help you today?"
STREAM_CHUNKS = 20
MODELS = ("llama-4-scout-17b-16e-instruct", "llama-4-maverick-17b-128e-instruct-fp8", "llama3.1-8b-instruct")
# The upstream's answer to any request that carries `tools`: one call of this function.
TOOL_NAME = "get_weather"
TOOL_ARGS = json.dumps({"city": "Paris", "unit": "celsius"})
SCENARIOS = ("plain", "tools")


# --- the upstream: answers at once (streams: STREAM_CHUNKS events, `gap` seconds apart) --------
# Every answer is pre-rendered bytes; a body that carries "tools" gets a tool call (streamed: the
# call's arguments split over the events), any other a text reply.

UPSTREAM = r"""
import asyncio, json, sys, time
try:
    import uvloop
except ImportError:
    uvloop = None
GAP = float(sys.argv[2])
REPLY = @REPLY@
N = @CHUNKS@
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
BODY = json.dumps({"id": "chatcmpl-up", "object": "chat.completion", "created": 0, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                                "finish_reason": "stop"}], "usage": USAGE}).encode()
OK = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)) + BODY
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
MOK = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(MODELS)) + MODELS
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)
def event(obj):
    return chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")
WORDS = REPLY.split(" ")
PIECES = [event({"choices": [{"index": 0, "delta": {"content": (" " if i else "") + WORDS[i % len(WORDS)]},
                              "finish_reason": None}]}) for i in range(N)]
TAIL = (event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        + event({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": N, "total_tokens": 12 + N}})
        + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
TOOL_NAME = @TOOL_NAME@
TOOL_ARGS = @TOOL_ARGS@
TUSAGE = {"prompt_tokens": 412, "completion_tokens": 18, "total_tokens": 430}
CALL = {"id": "call_bench_0", "type": "function", "function": {"name": TOOL_NAME, "arguments": TOOL_ARGS}}
TBODY = json.dumps({"id": "chatcmpl-up", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [CALL]},
                                 "finish_reason": "tool_calls"}], "usage": TUSAGE}).encode()
TOK = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(TBODY)) + TBODY
CUTS = [round(k * len(TOOL_ARGS) / (N - 1)) for k in range(N)]
TPIECES = [event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
    {"index": 0, "id": CALL["id"], "type": "function", "function": {"name": TOOL_NAME, "arguments": ""}}]},
    "finish_reason": None}]})] + [
    event({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": TOOL_ARGS[CUTS[k]:CUTS[k + 1]]}}]}, "finish_reason": None}]})
    for k in range(N - 1)]
TTAIL = (event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
         + event({"choices": [], "usage": {"prompt_tokens": 412, "completion_tokens": N, "total_tokens": 412 + N}})
         + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
        self.buf = b""
        self.busy = False
    def data_received(self, data):
        self.buf += data
        self.work()
    def work(self):
        while not self.busy:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i].decode("latin-1")
            n = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    n = int(v)
            if len(self.buf) < i + 4 + n:
                return
            body = self.buf[i + 4:i + 4 + n]
            self.buf = self.buf[i + 4 + n:]
            if head.startswith("GET"):
                self.t.write(MOK)
                continue
            tools = b'"tools"' in body
            if b'"stream": true' in body or b'"stream":true' in body:
                self.busy = True
                asyncio.ensure_future(self.stream(TPIECES, TTAIL) if tools else self.stream(PIECES, TAIL))
            else:
                self.t.write(TOK if tools else OK)
    async def stream(self, pieces, tail):
        self.t.write(SSE_HEAD + pieces[0])
        for p in pieces[1:]:
            if GAP:
                await asyncio.sleep(GAP)
            if self.t.is_closing():
                return
            self.t.write(p)
        self.t.write(tail)
        self.busy = False
        self.work()

async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()

(uvloop.run if uvloop else asyncio.run)(main())
"""
UPSTREAM = (
    UPSTREAM.replace("@REPLY@", repr(REPLY))
    .replace("@CHUNKS@", str(STREAM_CHUNKS))
    .replace("@TOOL_NAME@", repr(TOOL_NAME))
    .replace("@TOOL_ARGS@", repr(TOOL_ARGS))
)


# --- the load generator -----------------------------------------------------------------------


def _param(kind: str, description: str, **extra) -> dict:
    return {"type": kind, "description": description, **extra}


# An agent's request, as a coding or travel assistant sends it: three tools, the model to choose.
AGENT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": _param("string", "City name, e.g. Paris"),
                    "unit": _param("string", "Temperature unit", enum=["celsius", "fahrenheit"]),
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_flights",
            "description": "Search flights between two airports on a date.",
            "parameters": {
                "type": "object",
                "properties": {
                    "origin": _param("string", "IATA code of the departure airport", pattern="^[A-Z]{3}$"),
                    "destination": _param("string", "IATA code of the arrival airport", pattern="^[A-Z]{3}$"),
                    "date": _param("string", "Departure date", format="date"),
                    "passengers": _param("integer", "Number of passengers", minimum=1, maximum=9),
                    "cabin": _param("string", "Cabin class", enum=["economy", "premium", "business", "first"]),
                },
                "required": ["origin", "destination", "date"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "create_calendar_event",
            "description": "Add an event to the user's calendar.",
            "parameters": {
                "type": "object",
                "properties": {
                    "title": _param("string", "Event title"),
                    "start": _param("string", "Start time, ISO 8601", format="date-time"),
                    "duration_minutes": _param("integer", "Length of the event", minimum=5),
                    "attendees": _param("array", "E-mail addresses to invite", items={"type": "string"}),
                },
                "required": ["title", "start"],
            },
        },
    },
]


def request_body(scenario: str, model: str, stream: bool) -> dict:
    """The JSON body of one benchmark request: `plain` or `tools`."""
    if scenario == "plain":
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
            "max_tokens": 64,
        }
    else:
        body = {
            "model": model,
            "messages": [
                {
                    "role": "system",
                    "content": "You are a travel assistant. Use the tools to answer; never invent weather or fares.",
                },
                {"role": "user", "content": "I fly to Paris on Friday. What's the weather there right now?"},
            ],
            "tools": AGENT_TOOLS,
            "tool_choice": "auto",
            "temperature": 0,
            "seed": 1234,
            "max_tokens": 256,
            "user": "bench-user-17",
        }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def request_bytes(
    port: int,
    stream: bool,
    key: str | None = None,
    path: str = "/v1/chat/completions",
    model: str = "sophia-auto",
    scenario: str = "plain",
    headers: str = "",
) -> bytes:
    """One HTTP/1.1 request; `headers`: more header lines, each ending in CRLF (a peer's routing headers)."""
    body = request_body(scenario, model, stream)
    data = json.dumps(body).encode()
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n{auth}{headers}"
        f"content-length: {len(data)}\r\n\r\n"
    ).encode() + data
