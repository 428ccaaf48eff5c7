"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with faults on demand.

    with FakeOpenAI() as fake:
        fake.mode = "http500"      # any time; see MODES
        fake.fail_times = 2        # the next 2 requests fail as `mode` says, then "ok"
        ... point a client at fake.base_url ...
        fake.requests              # JSON bodies received on /v1/chat/completions, in order

It serves POST /v1/chat/completions (plain, or server-sent events when the body asks for
`stream`) and GET /v1/models. Usage is counted the same way every time so tests can assert
it: prompt_tokens = characters of all message contents // 4 + 1, completion_tokens = the
number of whitespace-separated words of the reply.

Streams use chunked transfer encoding like real servers; the "cut" mode closes the socket
mid-body, so clients see a truncated chunked body (not merely a missing [DONE]).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "no_usage", "http500", "http429", "http400", "slow", "cut", "malformed", "hang")
DEFAULT_REPLY = "Hello from the fake server."

_ERRORS = {
    "http500": (500, "server_error", "the fake server broke (simulated internal error)"),
    "http429": (429, "rate_limit_exceeded", "too many requests (simulated rate limit)"),
    "http400": (400, "invalid_request_error", "the request is not valid (simulated bad request)"),
}


def prompt_tokens_of(body: dict) -> int:
    """The fake's prompt token count: total characters of message contents // 4 + 1."""
    chars = 0
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return chars // 4 + 1


def completion_tokens_of(reply: str) -> int:
    return len(reply.split())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes connections itself; never wait on a hung client
    allow_reuse_address = True
    request_queue_size = 256  # many concurrent clients in budget and server tests

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away (timeout, cancel): expected in tests
            return
        self.fake.errors.append(repr(exc))
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections do not linger forever
    server: _Server

    # --- plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json", extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, code: int, obj: object, extra: dict | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), extra=extra)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: str) -> None:
        self._chunk(f"data: {payload}\n\n".encode())

    def _cut(self) -> None:
        """Close the socket now, mid-body."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- routes ---------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        fake = self.server.fake
        if self.path.rstrip("/") != "/v1/models":
            return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        with fake._lock:
            fake.model_requests += 1
        mode = fake._current_mode()
        if mode == "hang":
            fake._released.wait()
            return self._cut()
        if mode in _ERRORS:
            code, kind, msg = _ERRORS[mode]
            return self._json(code, {"error": {"message": msg, "type": kind}})
        self._json(
            200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in fake.models]}
        )

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return self._json(400, {"error": {"message": "body is not a JSON object", "type": "invalid_request_error"}})
        mode, reply, delay = fake._take(body, dict(self.headers))
        if mode == "hang":
            fake._released.wait()
            return self._cut()
        if mode == "slow":
            if fake._released.wait(delay):
                return self._cut()
            mode = "ok"
        if mode in _ERRORS:
            code, kind, msg = _ERRORS[mode]
            extra = {"Retry-After": "0"} if code == 429 else None
            return self._json(code, {"error": {"message": msg, "type": kind, "code": code}}, extra)
        if body.get("stream"):
            return self._stream(body, mode, reply)
        return self._complete(body, mode, reply)

    def _usage(self, body: dict, reply: str) -> dict:
        p, c = prompt_tokens_of(body), completion_tokens_of(reply)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _complete(self, body: dict, mode: str, reply: str) -> None:
        if mode == "malformed":
            return self._send(200, b"<html><body>this is not JSON</body></html>")
        obj = {
            "id": f"chatcmpl-fake-{id(body):x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        }
        if mode != "no_usage":
            obj["usage"] = self._usage(body, reply)
        data = json.dumps(obj).encode()
        if mode == "cut":  # promise the whole body, send half of it, hang up
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            return self._cut()
        self._send(200, data)

    def _stream(self, body: dict, mode: str, reply: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {
            "id": f"chatcmpl-fake-{id(body):x}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }

        def chunk(delta: dict, finish: str | None = None) -> str:
            return json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        if mode == "malformed":
            self._event("{this is not JSON")
            self._event("[DONE]")
            self._chunk(b"")
            return
        self._event(chunk({"role": "assistant", "content": ""}))
        words = reply.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        if mode == "cut":
            for p in pieces[: max(1, len(pieces) // 2)]:
                self._event(chunk({"content": p}))
            return self._cut()
        for p in pieces:
            self._event(chunk({"content": p}))
        self._event(chunk({}, "stop"))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if wants_usage and mode != "no_usage":
            self._event(json.dumps({**base, "choices": [], "usage": self._usage(body, reply)}))
        self._event("[DONE]")
        self._chunk(b"")  # the terminating zero-length chunk


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 with a free port; a context manager."""

    def __init__(
        self,
        mode: str = "ok",
        reply: str = DEFAULT_REPLY,
        delay_s: float = 2.0,
        models: tuple[str, ...] = ("fake-model",),
    ) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.mode = mode
        self.reply = reply
        self.delay_s = delay_s
        self.models = list(models)
        self.requests: list[dict] = []
        self.headers: list[dict] = []  # request headers of each chat request, in order
        self.model_requests = 0
        self.errors: list[str] = []  # unexpected exceptions inside the server (bugs of the fake)
        self._fail_left = 0
        self._limited = False
        self.base_url = ""
        self.port = 0

    # --- settings -------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode {value!r} is not one of {', '.join(MODES)}")
        self._mode = value

    @property
    def fail_times(self) -> int:
        """Failures left before the server behaves "ok" (0 when not limited)."""
        return self._fail_left

    @fail_times.setter
    def fail_times(self, n: int) -> None:
        with self._lock:
            self._fail_left = max(0, int(n))
            self._limited = self._fail_left > 0

    def reset(self) -> None:
        """Back to defaults: mode "ok", the default reply, no recorded requests."""
        with self._lock:
            self._mode = "ok"
            self.reply = DEFAULT_REPLY
            self.delay_s = 2.0
            self.requests.clear()
            self.headers.clear()
            self.model_requests = 0
            self._fail_left, self._limited = 0, False

    def _current_mode(self) -> str:
        with self._lock:
            return "ok" if self._limited and self._fail_left == 0 else self._mode

    def _take(self, body: dict, headers: dict) -> tuple[str, str, float]:
        """Record a chat request and decide how to answer it."""
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            if self._limited:
                if self._fail_left > 0:
                    self._fail_left -= 1
                    mode = self._mode
                else:
                    mode = "ok"
            else:
                mode = self._mode
            return mode, self.reply, self.delay_s

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        if self._server is not None:
            return self
        self._released.clear()
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._released.set()  # wake "hang" and "slow" handlers
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:  # unblock handlers waiting on keep-alive connections
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.base_url

    def __repr__(self) -> str:
        return f"FakeOpenAI({self.base_url or 'stopped'}, mode={self._mode!r})"


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"
