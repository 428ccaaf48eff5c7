"""The load for bench_server: a loopback upstream that answers at once, the request bodies, and
the load generators and probes (closed and open loop, streams, first token, CPU of a process tree,
tool-call pass-through) that measure a gateway or the upstream itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time

from bench.gateway_upstream import (
    STREAM_CHUNKS,
    TOOL_ARGS,
    TOOL_NAME,
    request_bytes,
)

try:  # the same event loop the server uses when it is installed
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


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


# --- starting the servers ----------------------------------------------------------------------------


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
