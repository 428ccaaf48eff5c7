"""The API server under load: `sophia serve` in front of a loopback upstream that answers at once.

Targets, on this 2-core machine with one worker and every record written (issue 17; issue 7's kept):
- CPU per proxied request (plain, non-streamed) <= 0.8 ms;
- added latency at an open-loop 300 requests/s: p50 <= 1 ms, p99 <= 5 ms;
- added time to first token of a stream, p50 <= 1 ms;
- >= 1,000 non-streamed requests/s closed-loop at 50 and at 200 connections;
- 200 concurrent streams without errors;
- the log's row count equals the requests Sophia answered.

Everything runs on the same machine: the upstream (a raw asyncio HTTP server in its own
process), `sophia serve` (a real subprocess, one worker unless --workers says otherwise), the peers
when given, and the load generator (raw HTTP/1.1 keep-alive connections on asyncio, in this process).
The baseline is the same load sent straight to the upstream, in the same run: every target is
measured in each of 3 rounds, interleaved (direct, sophia, peers; then again), and every figure is
the median of the 3 rounds (--quick: one short round).

In each round, on each target:
- throughput: closed-loop (each connection sends its next request as soon as the last one is
  answered) at 50 and at 200 connections (--conns);
- added latency: open-loop, 100 connections together send a fixed rate (300 requests/s, --rates)
  on a schedule, latency timed from the scheduled send (so a stall is not hidden); the added
  latency is each percentile through Sophia minus the same percentile straight to the upstream;
- CPU per request: a fixed number of requests (3,000, --cpu-requests; the upstream, which uses a few
  10 ms clock ticks per thousand, 10 times as many) sent closed-loop at 50 connections; the server's
  process-tree CPU time (utime + stime from /proc/<pid>/stat of the server and all its descendants,
  so --workers N counts the workers; read with the tree idle before and after, so work done after
  answering, like the log's writes, counts) divided by the requests;
- time to first token: streams sent open-loop at 50/s (--ttft-rate), timed from the scheduled send
  to the first `data:` event carrying content; added = Sophia's p50 minus the upstream's;
- 200 streams at once (--streams).
After each of Sophia's rounds its log's row count (GET /stats) is compared with the requests it has
answered, and again from the database after it stops.

Two request bodies are measured for throughput, latency and streams: a plain chat request, and an
agent's tool-calling request (system + user messages, three function tools with JSON-schema
parameters, tool_choice, temperature, seed, user), which the upstream answers with a tool call; CPU
and time to first token use the plain one. Before the load, one tool-calling request (non-streamed
and streamed) checks that the tool call reaches the client.

Peers, with the plain body and the same load: LiteLLM's proxy (--litellm, the `litellm` binary of a
venv with litellm[proxy]) and Portkey's gateway (--portkey, the start-server.js of an npm install
of @portkey-ai/gateway; routed by its x-portkey-provider / x-portkey-custom-host headers).
`--install-peers DIR` installs both into DIR and prints the options to pass (exit 1 if one could
not be installed). A peer that is not given, does not start or fails is reported and skipped;
the report gives Sophia/peer ratios. The exit status is 1 when one of Sophia's targets is missed.

    python bench/bench_server.py [--quick] [--workers N] [--litellm PATH] [--portkey PATH]
    python bench/bench_server.py --install-peers /tmp/peers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sophia.config.apikeys import hash_key, new_key

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
# Issue 17's targets for Sophia (one worker, this 2-core machine), and issue 7's that still hold.
CPU_MS = 0.8  # CPU per proxied request, ms
CPU_CONNS = 50  # connections of the CPU measurement
DIRECT_CPU_X = 10  # the direct upstream's CPU measurement sends this many times the requests
ADDED_P50, ADDED_P99 = 1.0, 5.0  # added latency at the open-loop rates, ms
TTFT_ADDED = 1.0  # added time to first token, p50, ms
MIN_RPS = 1000  # non-streamed req/s at each closed-loop connection count (issue 7)


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], ready: str, env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if ready in line:
            return p
    p.kill()
    raise RuntimeError(f"{cmd[0]} did not start:\n{''.join(lines[-20:])}")


def wait_http(port: int, path: str = "/health", timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def drain(p: subprocess.Popen) -> None:
    """Keep reading a child's output so it never blocks on a full pipe."""
    import threading

    def read():
        for _ in p.stdout:
            pass

    threading.Thread(target=read, daemon=True).start()


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


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> tuple[int, bytes]:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"content-length:")
    if i >= 0:
        n = int(lower[i + 15 : lower.index(b"\r\n", i)])
        return status, await reader.readexactly(n)
    body = []
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, b"".join(body)
        body.append((await reader.readexactly(size + 2))[:-2])


def _has_content(sse: bytes) -> bool:
    """Whether the complete events in `sse` include a `data:` event whose delta carries content."""
    for ev in sse.replace(b"\r\n", b"\n").split(b"\n\n")[:-1]:
        for line in ev.split(b"\n"):
            payload = line[5:].strip() if line.startswith(b"data:") else b""
            if not payload or payload == b"[DONE]":
                continue
            try:
                choices = json.loads(payload).get("choices") or []
            except (ValueError, AttributeError):
                continue
            if any((c.get("delta") or {}).get("content") for c in choices if isinstance(c, dict)):
                return True
    return False


async def first_token(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes
) -> tuple[int, float | None]:
    """Send a streamed request and read the whole answer: (status, when the first content event arrived)."""
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"content-length:")
    if i >= 0:  # an error answered in one piece
        await reader.readexactly(int(lower[i + 15 : lower.index(b"\r\n", i)]))
        return status, None
    first, buf = None, b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, first
        data = (await reader.readexactly(size + 2))[:-2]
        if first is None:
            buf += data
            if _has_content(buf):
                first = time.perf_counter()


async def closed_loop(port: int, req: bytes, conns: int, seconds: float) -> tuple[float, int, list[float]]:
    """Each connection sends the next request as soon as it has the answer: (req/s, errors, latencies)."""
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status, _ = await exchange(reader, writer, req)
                lat.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(conns)))
    return len(lat) / (time.perf_counter() - t0), errors, lat


async def closed_count(pid: int, port: int, req: bytes, conns: int, total: int) -> tuple[float, float, int]:
    """`total` requests closed-loop over `conns` connections: (CPU seconds of `pid`'s process tree, seconds, errors).

    The connections are open before the first reading, and each reading waits for the tree to go idle,
    so the CPU counted is the requests' own, including what a server does after answering (its log writes).
    """
    left, errors = total, 0
    conn = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]

    async def client(reader, writer):
        nonlocal left, errors
        while left > 0:
            left -= 1
            status, _ = await exchange(reader, writer, req)
            errors += status != 200

    try:
        cpu0 = await idle_cpu(pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(client(r, w) for r, w in conn))
        elapsed = time.perf_counter() - t0
        return await idle_cpu(pid) - cpu0, elapsed, errors
    finally:
        for _, w in conn:
            w.close()


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by `pid` and all its descendants (for --workers N, the workers).

    utime + stime of each process in the tree, plus cutime + cstime (what children that exited and
    were reaped had used, so a worker that is replaced is not lost from the sum).
    """
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # from field 3 (state) on: ppid is 4, utime..cstime 14..17
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = sum(int(x) for x in fields[11:15])
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, pp in parent.items() if pp == p and c not in tree]
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(pid: int, step: float = 0.1, timeout: float = 3.0) -> float:
    """`tree_cpu(pid)` once a `step` passes without it growing (or after `timeout`)."""
    last, deadline = tree_cpu(pid), time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        await asyncio.sleep(step)
        now = tree_cpu(pid)
        if now == last:
            break
        last = now
    return last


async def open_loop(
    port: int, req: bytes, conns: int, rate: float, seconds: float, stream: bool = False
) -> tuple[list[float], int]:
    """`conns` connections send `rate` requests/s in all on a fixed schedule; latency from the schedule.

    With `stream`, `req` is a streamed request and the latency is the time to its first content event;
    a stream without one counts as an error, not as a latency.
    """
    lat: list[float] = []
    errors = 0
    period = conns / rate
    start = time.perf_counter() + 0.2

    async def client(i: int):
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            n = 0
            while True:
                due = start + i * period / conns + n * period
                if due > start + seconds:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if stream:
                    status, first = await first_token(reader, writer, req)
                    if status == 200 and first is not None:
                        lat.append(first - due)
                    else:
                        errors += 1
                else:
                    status, _ = await exchange(reader, writer, req)
                    lat.append(time.perf_counter() - due)
                    errors += status != 200
                n += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(conns)))
    return lat, errors


async def streams(port: int, req: bytes, n: int) -> tuple[int, int, float]:
    """`n` streams at once: (complete streams, errors, seconds)."""
    ok = errors = 0

    async def one():
        nonlocal ok, errors
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                status, body = await exchange(reader, writer, req)
            finally:
                writer.close()
            good = (
                status == 200
                and body.count(b"data: ") >= STREAM_CHUNKS + 2
                and b"data: [DONE]" in body
                and b'"usage"' in body
                and b'"error"' not in body
            )
            ok += good
            errors += not good
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return ok, errors, time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] * 1000 if xs else float("nan")


def run_async(coro):
    return (uvloop.run if uvloop else asyncio.run)(coro)


# --- the one-off check that a tool call reaches the client --------------------------------------


def _tool_call_problem(calls: list[dict], finish: str | None) -> str | None:
    if not calls:
        return "no tool_calls"
    fn = calls[0].get("function") or {}
    if fn.get("name") != TOOL_NAME or fn.get("arguments") != TOOL_ARGS or not calls[0].get("id"):
        return f"tool_calls differ from the upstream's: {json.dumps(calls)[:200]}"
    if finish != "tool_calls":
        return f'finish_reason {finish!r}, not "tool_calls"'
    return None


def _streamed_calls(sse: bytes) -> tuple[list[dict], str | None]:
    """Assemble the delta.tool_calls fragments of a stream as a client does."""
    calls: dict[int, dict] = {}
    finish = None
    for line in sse.split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        for choice in json.loads(line[6:]).get("choices") or []:
            finish = choice.get("finish_reason") or finish
            for frag in (choice.get("delta") or {}).get("tool_calls") or []:
                call = calls.setdefault(frag.get("index", 0), {"function": {"name": "", "arguments": ""}})
                call["id"] = frag.get("id") or call.get("id")
                call["type"] = frag.get("type") or call.get("type")
                fn = frag.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
    return [calls[i] for i in sorted(calls)], finish


async def tool_call_check(port: int, key: str, model: str, headers: str = "") -> dict[str, str | None]:
    """One tool-calling request, non-streamed and streamed: what is wrong with each answer (None: nothing)."""
    out: dict[str, str | None] = {}
    for stream in (False, True):
        name = "streamed" if stream else "non-streamed"
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                req = request_bytes(port, stream, key, model=model, scenario="tools", headers=headers)
                status, body = await exchange(reader, writer, req)
            finally:
                writer.close()
            if status != 200:
                out[name] = f"HTTP {status}: {body[:200]!r}"
            elif stream:
                out[name] = _tool_call_problem(*_streamed_calls(body))
            else:
                choice = (json.loads(body).get("choices") or [{}])[0]
                calls = (choice.get("message") or {}).get("tool_calls") or []
                out[name] = _tool_call_problem(calls, choice.get("finish_reason"))
        except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError) as e:
            out[name] = f"unreadable answer: {e!r}"
    return out


def check_tools(name: str, port: int, key: str, model: str, strict: bool, headers: str = "") -> dict[str, str]:
    """Print whether tool calls come through `name`; raise if `strict` (the benchmark's own upstream)."""
    problems = run_async(tool_call_check(port, key, model, headers))
    bad = {k: v for k, v in problems.items() if v}
    if bad and strict:
        raise RuntimeError(f"the benchmark's upstream answers tool calls wrongly: {bad}")
    for k, v in bad.items():
        print(f"WARNING: {name} does not pass the tool call through ({k}): {v}", flush=True)
    if not bad:
        print(f"tool calls through {name}: ok (non-streamed and streamed)", flush=True)
    return {k: v or "ok" for k, v in problems.items()}


# --- the configuration under test -----------------------------------------------------------------


def write_config(path: Path, upstream: str, key: str) -> None:
    dedicated = "\n".join(
        f'[[endpoints]]\nname = "{n}"\ntier = "dedicated"\nkind = "openai"\nbase_url = "{upstream}"\n'
        f'model = "llama-3.3-70b-instruct"\nhourly_usd = {h}\nthroughput_tps = {t}\nmax_concurrency = 32\n'
        for n, h, t in (
            ("sophia-ai-core", 1.2, 1500),
            ("sophia-data-pipeline", 0.9, 1100),
            ("sophia-production", 0.78, 900),
        )
    )
    models = "\n".join(
        f'[[models]]\nname = "{m}"\ninput_per_mtok = {i}\noutput_per_mtok = {o}\n'
        for m, i, o in zip(MODELS, (0.08, 0.18, 0.025), (0.30, 0.60, 0.04), strict=True)
    )
    path.write_text(f"""[privacy]
store_prompts = "off"
[cache]
enabled = false
[server]
api_keys = [{{ id = "bench", sha256 = "{hash_key(key)}" }}]
rate_limit_per_minute = 0
[[endpoints]]
name = "serverless"
tier = "serverless"
kind = "openai"
base_url = "{upstream}"
models = {json.dumps(list(MODELS))}
{dedicated}
{models}""")


def count_records(cfg: Path, db: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "sophia.cli", "stats", "--json", "--config", str(cfg), "--db", str(db)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(out.stdout)["total_requests"]


def recorded_live(port: int, key: str, expected: int, timeout: float = 10.0) -> int:
    """The log's row count as the running server reports it (GET /stats), once it reaches `expected`
    or stops changing: the writer flushes in batches."""
    import httpx

    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"http://127.0.0.1:{port}/stats", headers={"authorization": f"Bearer {key}"}, timeout=10)
        n = r.json()["total_requests"]
        if n == expected:
            return n
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > 2:
            return n
        time.sleep(0.1)
    return last


# --- what is measured on each target, round by round -------------------------------------------


@dataclass
class Target:
    """One server under the load: the direct upstream, Sophia or a peer."""

    name: str
    port: int
    pid: int  # the root of the process tree whose CPU is counted
    scenarios: tuple[str, ...]
    headers: str = ""  # more request headers (Portkey's routing)
    rounds: list[dict] = field(default_factory=list)
    requests: int = 0  # answered so far
    tool_calls: dict[str, str] = field(default_factory=dict)
    failed: str | None = None

    def req(self, args, key: str, scenario: str, stream: bool) -> bytes:
        return request_bytes(self.port, stream, key, model=args.model, scenario=scenario, headers=self.headers)


def measure_round(t: Target, args, key: str) -> dict:
    """One round on one target: closed-loop throughput at each connection count and open-loop latency at
    each rate (each body), CPU per request and time to first token (plain), concurrent streams (each body)."""
    secs = 1.5 if args.quick else 3.0
    open_secs = 1.5 if args.quick else 4.0
    r: dict = {}
    n = len(run_async(closed_loop(t.port, t.req(args, key, "plain", False), 20, 0.3))[2])  # wake it up
    for sc in t.scenarios:
        req = t.req(args, key, sc, False)
        for c in args.conns:
            rps, errors, lat = run_async(closed_loop(t.port, req, c, secs))
            r[f"tput_{sc}_{c}"] = {"rps": rps, "errors": errors, "p50": pct(lat, 50)}
            n += len(lat)
        for rate in args.rates:
            lat, errors = run_async(open_loop(t.port, req, 100, rate, open_secs))
            r[f"open_{sc}_{rate}"] = {50: pct(lat, 50), 90: pct(lat, 90), 99: pct(lat, 99), "errors": errors}
            n += len(lat)
    # The upstream uses a few 10 ms clock ticks per thousand requests: it gets DIRECT_CPU_X times as many.
    total = args.cpu_requests * (DIRECT_CPU_X if t.name == "direct" else 1)
    cpu, elapsed, errors = run_async(closed_count(t.pid, t.port, t.req(args, key, "plain", False), CPU_CONNS, total))
    r["cpu"] = {"ms": cpu / total * 1000, "errors": errors, "rps": total / elapsed}
    n += total
    lat, errors = run_async(
        open_loop(t.port, t.req(args, key, "plain", True), 100, args.ttft_rate, open_secs, stream=True)
    )
    r["ttft"] = {50: pct(lat, 50), 99: pct(lat, 99), "errors": errors}
    n += len(lat) + errors
    for sc in t.scenarios:
        ok, errors, s = run_async(streams(t.port, t.req(args, key, sc, True), args.streams))
        r[f"streams_{sc}"] = {"ok": ok, "errors": errors, "s": s}
        n += ok + errors
    r["requests"] = n
    return r


def med(t: Target, key: str, sub) -> float:
    return statistics.median(r[key][sub] for r in t.rounds)


# --- starting the servers ----------------------------------------------------------------------------


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def start_litellm(path: str, args, tmp: Path, upstream: str, key: str) -> tuple[subprocess.Popen, int]:
    """LiteLLM's proxy: the same model name, the same upstream; its master key as the bearer token; its
    access log off like Sophia's; the model price map read locally (no network)."""
    lport = free_port()
    lcfg, logcfg = tmp / "litellm.yaml", tmp / "litellm-log.json"
    lcfg.write_text(
        f"model_list:\n  - model_name: {args.model}\n    litellm_params:\n"
        f"      model: openai/m\n      api_base: {upstream}\n      api_key: none\n"
    )
    logcfg.write_text(
        json.dumps(
            {"version": 1, "disable_existing_loggers": False, "loggers": {"uvicorn.access": {"level": "WARNING"}}}
        )
    )
    env = dict(os.environ, LITELLM_MASTER_KEY=key, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    cmd = [path, "--config", str(lcfg), "--port", str(lport), "--num_workers", str(args.workers)]
    lp = subprocess.Popen(
        [*cmd, "--log_config", str(logcfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp,
        env=env,
    )
    drain(lp)
    try:
        wait_http(lport, "/health/liveliness", timeout=120)
    except RuntimeError:
        stop(lp)
        raise
    return lp, lport


def start_portkey(path: str, tmp: Path) -> tuple[subprocess.Popen, int]:
    """Portkey's open-source gateway (one Node process: it has no workers option), headless."""
    pport = free_port()
    cmd = ["node", path] if path.endswith(".js") else [path]
    env = dict(os.environ, NODE_ENV="production")
    pp = start([*cmd, f"--port={pport}", "--headless"], "Ready for connections", env=env, cwd=str(tmp))
    drain(pp)
    return pp, pport


def install_peers(folder: str) -> int:
    """Install LiteLLM's proxy (a venv) and Portkey's gateway (npm) into `folder`; print the options to use."""
    d = Path(folder).resolve()
    d.mkdir(parents=True, exist_ok=True)
    got, missed = [], []
    venv = d / "litellm-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], capture_output=True, text=True
        )
        if pip.returncode or not (venv / "bin" / "litellm").exists():
            missed.append(f"litellm[proxy] (pip): {pip.stderr.strip().splitlines()[-1:] or pip.returncode}")
        else:
            got.append(f"--litellm {venv / 'bin' / 'litellm'}")
    except (OSError, subprocess.CalledProcessError) as e:
        missed.append(f"litellm[proxy] (venv): {e}")
    entry = d / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    try:
        npm = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(d / "portkey"), "@portkey-ai/gateway"],
            capture_output=True,
            text=True,
        )
        if npm.returncode or not entry.exists():
            missed.append(f"@portkey-ai/gateway (npm): {npm.stderr.strip().splitlines()[-1:] or npm.returncode}")
        else:
            got.append(f"--portkey {entry}")
    except OSError as e:
        missed.append(f"@portkey-ai/gateway (npm): {e}")
    for m in missed:
        print(f"could not install {m}")
    if got:
        print("installed; measure them with:\n  python bench/bench_server.py " + " ".join(got))
    return 1 if missed else 0


# --- the run --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one short round of each measurement")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rates", type=int, nargs="+", default=[300], help="open-loop rates, requests/s")
    ap.add_argument("--conns", type=int, nargs="+", default=[50, 200], help="closed-loop connection counts")
    ap.add_argument("--cpu-requests", type=int, help="requests per CPU measurement (default 3000, --quick 1000)")
    ap.add_argument("--ttft-rate", type=float, default=50, help="open-loop streams/s for the time to first token")
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between an upstream stream's events")
    ap.add_argument("--model", default="sophia-auto")
    ap.add_argument(
        "--litellm",
        help="the litellm binary of a throwaway venv (pip install 'litellm[proxy]'), "
        "to put the same load through LiteLLM's proxy",
    )
    ap.add_argument(
        "--portkey",
        help="the entry of Portkey's gateway (node_modules/@portkey-ai/gateway/build/start-server.js "
        "of an npm install of @portkey-ai/gateway), to put the same load through it",
    )
    ap.add_argument("--install-peers", metavar="DIR", help="install LiteLLM's proxy and Portkey's gateway into DIR")
    args = ap.parse_args()
    if args.install_peers:
        return install_peers(args.install_peers)
    args.cpu_requests = args.cpu_requests or (1000 if args.quick else 3000)
    rounds = 1 if args.quick else 3

    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    procs: list[subprocess.Popen] = []
    targets: list[Target] = []
    peers_missing: dict[str, str] = {}
    recorded: dict = {}
    try:
        up_port = free_port()
        up_file = tmp / "upstream.py"
        up_file.write_text(UPSTREAM)
        up = start([sys.executable, str(up_file), str(up_port), str(args.gap)], "ready")
        procs.append(up)
        drain(up)
        upstream = f"http://127.0.0.1:{up_port}/v1"
        print(
            f"upstream: 127.0.0.1:{up_port} (answers at once; streams: {STREAM_CHUNKS} events {args.gap * 1000:.0f} "
            f"ms apart) · {os.cpu_count()} cores · event loop {'uvloop' if uvloop else 'asyncio'} · "
            f"{rounds} round(s), interleaved",
            flush=True,
        )
        key = new_key()
        targets.append(Target("direct", up_port, up.pid, SCENARIOS))
        targets[-1].tool_calls = check_tools("the upstream", up_port, key, args.model, True)

        cfg, db = tmp / "bench.toml", tmp / "bench.duckdb"
        write_config(cfg, upstream, key)
        port = free_port()
        cmd = [sys.executable, "-m", "sophia.cli", "serve", "--config", str(cfg), "--db", str(db)]
        sophia = subprocess.Popen(
            [*cmd, "--port", str(port), "--workers", str(args.workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        procs.append(sophia)
        drain(sophia)
        wait_http(port)
        s = Target("sophia", port, sophia.pid, SCENARIOS)
        s.tool_calls = check_tools("sophia", port, key, args.model, False)
        targets.append(s)

        for name, path in (("litellm", args.litellm), ("portkey", args.portkey)):
            if not path:
                peers_missing[name] = "not given (--install-peers DIR installs it)"
                continue
            try:
                if name == "litellm":
                    p, pport = start_litellm(path, args, tmp, upstream, key)
                    headers = ""
                else:
                    p, pport = start_portkey(path, tmp)
                    headers = f"x-portkey-provider: openai\r\nx-portkey-custom-host: {upstream}\r\n"
            except (OSError, RuntimeError) as e:
                peers_missing[name] = f"did not start: {str(e)[:300]}"
                print(f"{name}: {peers_missing[name]}", flush=True)
                continue
            procs.append(p)
            t = Target(name, pport, p.pid, ("plain",), headers)
            t.tool_calls = check_tools(name, pport, key, args.model, False, headers)
            targets.append(t)

        for t in targets:
            t.requests = len(t.tool_calls)
        for i in range(rounds):
            for t in targets:
                if t.failed:
                    continue
                try:
                    t.rounds.append(r := measure_round(t, args, key))
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    if t.name in ("direct", "sophia"):
                        raise
                    t.failed = f"failed in round {i + 1}: {e!r}"
                    print(f"{t.name}: {t.failed}", flush=True)
                    continue
                t.requests += r["requests"]
                if t is s:
                    r["recorded"] = recorded_live(port, key, s.requests)
                    r["answered"] = s.requests
                print(f"round {i + 1}: {t.name} done", flush=True)
        stop(sophia)
        recorded = {"final": count_records(cfg, db), "answered": s.requests}
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    if os.environ.get("BENCH_JSON"):
        print(json.dumps([t.__dict__ for t in targets], indent=1, default=float))
    return 0 if report(targets, peers_missing, recorded, args, rounds) else 1


def _mark(good: bool, bad: str) -> str:
    return "ok" if good else bad


def _x(a: float, b: float, fmt: str = ".2f") -> str:
    """a / b, or n/a when b is zero (too few clock ticks to count)."""
    return format(a / b, fmt) if b else "n/a"


def report(targets: list[Target], peers_missing: dict[str, str], recorded: dict, args, rounds: int) -> bool:
    """Print each figure beside its same-run baseline and against its target; whether every target was met."""
    d, s = targets[0], targets[1]
    peers = [t for t in targets[2:] if t.rounds and not t.failed]
    how = "1 round" if rounds == 1 else f"median of {rounds} interleaved rounds"
    met = True
    print(f"\n== figures ({how}; {os.cpu_count()} cores; baseline: the same load straight to the upstream)")

    # 1. CPU per proxied request.
    cpu = {t.name: med(t, "cpu", "ms") for t in [d, s, *peers]}
    ok = cpu["sophia"] <= CPU_MS and not any(r["cpu"]["errors"] for r in s.rounds)
    met &= ok
    print(
        f"\nCPU per proxied request (plain, non-streamed; {args.cpu_requests:,} requests, direct {DIRECT_CPU_X}x as "
        f"many, closed-loop at {CPU_CONNS} connections; the server's process tree, utime+stime from /proc):"
    )
    for t in [d, s, *peers]:
        runs = [round(r["cpu"]["ms"], 3) for r in t.rounds]
        extra = "" if t is d else f"  = {_x(cpu[t.name], cpu['direct'], '.1f')}x direct"
        if t in peers:
            extra += f" · sophia/{t.name} {_x(cpu['sophia'], cpu[t.name])}"
        errors = sum(r["cpu"]["errors"] for r in t.rounds)
        print(f"  {t.name:8s} {cpu[t.name]:7.3f} ms/request  rounds {runs}  errors {errors}{extra}")
    print(f"  target sophia <= {CPU_MS} ms: {'OK' if ok else 'OVER'}")

    # 2. Throughput at each connection count.
    print("\nthroughput, non-streamed, closed-loop:")
    for sc in SCENARIOS:
        for c in args.conns:
            k = f"tput_{sc}_{c}"
            rps = {t.name: med(t, k, "rps") for t in [d, s, *peers] if sc in t.scenarios}
            errors = sum(r[k]["errors"] for r in s.rounds)
            ok = rps["sophia"] >= MIN_RPS and not errors
            met &= ok
            line = (
                f"  {sc:5s} {c:3d} conns: direct {rps['direct']:7,.0f} · sophia {rps['sophia']:6,.0f} req/s "
                f"(p50 {med(s, k, 'p50'):.1f} ms, runs {[round(r[k]['rps']) for r in s.rounds]}, errors {errors}) "
                f"= {rps['sophia'] / rps['direct']:.3f} of direct"
            )
            for t in peers:
                if t.name in rps:
                    line += f" · {t.name} {rps[t.name]:,.0f} (sophia/{t.name} {rps['sophia'] / rps[t.name]:.2f}x)"
            print(line + f"  [{'OK' if ok else 'UNDER'} vs >= {MIN_RPS:,}]")

    # 3. Added latency at the open-loop rates.
    print("\nadded latency, open-loop at 100 connections (percentile through - percentile direct, same rate):")
    added: dict[tuple[str, int], dict[int, float]] = {}
    for sc in SCENARIOS:
        for rate in args.rates:
            k = f"open_{sc}_{rate}"
            a = {q: med(s, k, q) for q in (50, 90, 99)}
            b = {q: med(d, k, q) for q in (50, 90, 99)}
            add = added[sc, rate] = {q: a[q] - b[q] for q in a}
            errors = sum(r[k]["errors"] for r in s.rounds)
            line = (
                f"  {sc:5s} {rate:4d} req/s: direct p50 {b[50]:.2f} p99 {b[99]:.2f} ms · sophia p50 {a[50]:.2f} "
                f"p99 {a[99]:.2f} ms · added p50 {add[50]:.2f} ms, p99 {add[99]:.2f} ms (errors {errors})"
            )
            for t in peers:
                if sc in t.scenarios:
                    line += f" · {t.name} added p50 {med(t, k, 50) - b[50]:.2f} p99 {med(t, k, 99) - b[99]:.2f} ms"
            ok = add[50] <= ADDED_P50 and add[99] <= ADDED_P99 and not errors
            met &= ok
            print(line + f"  [{'OK' if ok else 'OVER'} vs p50 <= {ADDED_P50:g}, p99 <= {ADDED_P99:g}]")

    # 4. Time to first token.
    tt = {t.name: (med(t, "ttft", 50), med(t, "ttft", 99)) for t in [d, s, *peers]}
    ttft_added = tt["sophia"][0] - tt["direct"][0]
    errors = sum(r["ttft"]["errors"] for r in s.rounds)
    ok = ttft_added <= TTFT_ADDED and not errors
    met &= ok
    print(
        f"\ntime to first token, streams open-loop at {args.ttft_rate:g}/s (from the scheduled send to the first "
        "data: event with content):"
    )
    for t in [d, s, *peers]:
        extra = "" if t is d else f" · added p50 {tt[t.name][0] - tt['direct'][0]:.2f} ms"
        errs = sum(r["ttft"]["errors"] for r in t.rounds)
        print(f"  {t.name:8s} p50 {tt[t.name][0]:.2f} ms, p99 {tt[t.name][1]:.2f} ms (errors {errs}){extra}")
    print(f"  target sophia added p50 <= {TTFT_ADDED:g} ms: {'OK' if ok else 'OVER'}")

    # The concurrent streams (issue 7's target).
    print(f"\n{args.streams} concurrent streams ({STREAM_CHUNKS} events each, {args.gap * 1000:.0f} ms apart):")
    for sc in SCENARIOS:
        for t in [d, s, *peers]:
            if sc not in t.scenarios:
                continue
            k = f"streams_{sc}"
            ok_n = min(r[k]["ok"] for r in t.rounds)
            errs = sum(r[k]["errors"] for r in t.rounds)
            print(
                f"  {sc:5s} {t.name:8s} complete {ok_n}/{args.streams} (worst round), errors {errs}, "
                f"{med(t, k, 's'):.2f} s for all"
            )
            if t is s:
                met &= ok_n == args.streams and not errs

    # 5. Every request recorded: per round from the running server, then from the log after it stopped.
    per_round = [f"{r['recorded']:,}/{r['answered']:,}" for r in s.rounds]
    every = recorded["final"] == recorded["answered"] and all(r["recorded"] == r["answered"] for r in s.rounds)
    met &= every
    print(
        f"\nrecords written by sophia: {recorded['final']:,} for {recorded['answered']:,} requests answered "
        f"(after each round: {', '.join(per_round)}) ({'every one recorded' if every else 'MISMATCH'})"
    )

    # 6. The peers.
    for name, why in peers_missing.items():
        print(f"peer {name}: {why}")
    for t in targets[2:]:
        if t.failed:
            print(f"peer {t.name}: {t.failed}")
    if peers:
        print(
            f"\nsophia against its peers (same upstream, same load, {args.workers} worker(s) where they have workers):"
        )
        for t in peers:
            tputs = ", ".join(
                f"{c} conns {med(s, f'tput_plain_{c}', 'rps') / med(t, f'tput_plain_{c}', 'rps'):.2f}x"
                for c in args.conns
            )
            print(
                f"  sophia/{t.name}: throughput {tputs} · CPU per request {_x(cpu['sophia'], cpu[t.name])} · "
                f"tool calls {'ok' if all(v == 'ok' for v in t.tool_calls.values()) else t.tool_calls}"
            )

    # The summary: one line per figure, beside its baseline.
    print(f"\nsummary ({how}):")
    cols = ("figure", "direct", "sophia", "sophia/direct", "target", "")
    widths = (34, 12, 12, 13, 14, 4)
    rows = [
        (
            "CPU per request, ms",
            f"{cpu['direct']:.3f}",
            f"{cpu['sophia']:.3f}",
            f"{_x(cpu['sophia'], cpu['direct'], '.1f')}x",
            f"<= {CPU_MS}",
            _mark(cpu["sophia"] <= CPU_MS, "OVER"),
        )
    ]
    for sc in SCENARIOS:
        for c in args.conns:
            k = f"tput_{sc}_{c}"
            a, b = med(s, k, "rps"), med(d, k, "rps")
            rows.append(
                (
                    f"{sc} req/s at {c} conns",
                    f"{b:,.0f}",
                    f"{a:,.0f}",
                    f"{a / b:.3f}",
                    f">= {MIN_RPS:,}",
                    _mark(a >= MIN_RPS, "UNDER"),
                )
            )
        for rate in args.rates:
            add = added[sc, rate]
            k = f"open_{sc}_{rate}"
            for q, lim in ((50, ADDED_P50), (99, ADDED_P99)):
                a, b = med(s, k, q), med(d, k, q)
                rows.append(
                    (
                        f"{sc} p{q} ms at {rate}/s (added {add[q]:.2f})",
                        f"{b:.2f}",
                        f"{a:.2f}",
                        f"+{add[q]:.2f} ms",
                        f"added <= {lim:g}",
                        _mark(add[q] <= lim, "OVER"),
                    )
                )
    rows.append(
        (
            f"TTFT p50 ms at {args.ttft_rate:g}/s (added {ttft_added:.2f})",
            f"{tt['direct'][0]:.2f}",
            f"{tt['sophia'][0]:.2f}",
            f"+{ttft_added:.2f} ms",
            f"added <= {TTFT_ADDED:g}",
            _mark(ttft_added <= TTFT_ADDED, "OVER"),
        )
    )
    print("  " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  " + "-+-".join("-" * w for w in widths))
    for row in rows:
        cells = (c.rjust(w) if 0 < j < 4 else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True)))
        print("  " + " | ".join(cells))
    bad = {k: v for k, v in s.tool_calls.items() if v != "ok"}
    print(
        "tool calls through sophia: "
        + ("ok (non-streamed and streamed)" if not bad else f"WARNING, not passed through: {bad}")
    )
    print("all targets met" if met else "TARGET MISSED")
    return met


if __name__ == "__main__":
    sys.exit(main())
