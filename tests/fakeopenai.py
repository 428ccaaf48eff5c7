"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with faults on demand.

    with FakeOpenAI() as fake:
        fake.mode = "http500"      # any time; see MODES
        fake.fail_times = 2        # the next 2 requests fail as `mode` says, then "ok"
        ... point a client at fake.base_url ...
        fake.requests              # JSON bodies received on /v1/chat/completions, in order
        fake.raw                   # ... and the same bodies as the bytes received
        fake.responses             # what each of them was answered (see below)
        fake.embedding_requests    # JSON bodies received on /v1/embeddings (embedding_of: the vectors)
        fake.calls                 # chat plus embeddings requests so far

It serves POST /v1/chat/completions (plain, or server-sent events when the body asks for
`stream`), POST /v1/embeddings and GET /v1/models. Usage is counted the same way every time so
tests can assert it: prompt_tokens = characters of all message contents // 4 + 1 (text parts
only), completion_tokens = the number of whitespace-separated words of the reply; with several
choices or tool calls, see `message_tokens` (summed over the choices).

What a chat request is answered, choice by choice (`n` choices when the body asks for them):

- the body has `tools`, `tool_choice` is not "none" and the last message is not a tool message:
  a call of the first tool (or the one `tool_choice` names) with arguments `{"q": <the last
  user text>}`, finish_reason "tool_calls" (legacy `functions`: a `function_call`, "function_call");
- the last message is a tool (or function) message: the text `TOOL_REPLY` with its content;
- otherwise `reply`; as JSON (`{"reply": ...}`) when response_format asks for json_object or
  json_schema. Choice i > 0 says the same followed by " #i";
- `logprobs: true`: each choice has logprobs, one entry per streamed piece, with
  `top_logprobs` alternatives.

Programmable answers (kept until `reset()`): `next_choices` (the next answered request gets
exactly these choices, then it is cleared), `finish_reason` (every choice ends so),
`usage_extra` (merged into usage, e.g. prompt_tokens_details), `fingerprint`
(system_fingerprint of completions and chunks).

Streams use chunked transfer encoding like real servers, one choice per event: a role event per
choice, the content in word pieces (or the refusal), tool calls in fragments (the first with id,
type, name and empty arguments, then argument pieces), a finish event per choice, and the usage
chunk when `stream_options.include_usage`. Several choices' events are interleaved. The "cut"
mode closes the socket mid-body, so clients see a truncated chunked body (not merely a missing
[DONE]).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "no_usage", "http500", "http429", "http400", "slow", "cut", "malformed", "hang")
DEFAULT_REPLY = "Hello from the fake server."
TOOL_REPLY = "The tool said: {}"  # the answer after a tool message, with that message's content
EMBEDDING_DIMENSIONS = 8
ARGUMENT_PIECES = 3  # a streamed tool call's arguments come in this many fragments
MAX_CHOICES = 16

_ERRORS = {
    "http500": (500, "server_error", "the fake server broke (simulated internal error)"),
    "http429": (429, "rate_limit_exceeded", "too many requests (simulated rate limit)"),
    "http400": (400, "invalid_request_error", "the request is not valid (simulated bad request)"),
}
_ANSWERING = ("ok", "no_usage", "slow", "cut")  # modes whose request consumes `next_choices`


# --- counting ----------------------------------------------------------------------------------


def prompt_tokens_of(body: dict) -> int:
    """The fake's prompt token count: total characters of message contents // 4 + 1."""
    chars = 0
    messages = body.get("messages")
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, dict)]
            chars += sum(len(t) for t in texts if isinstance(t, str))
    return chars // 4 + 1


def completion_tokens_of(reply: str) -> int:
    return len(reply.split())


def _words(v: object) -> int:
    return len(v.split()) if isinstance(v, str) else 0


def message_tokens(message: dict) -> int:
    """Completion tokens of one choice's message: words of its content and refusal, and of each
    tool call's (or function call's) name and arguments."""
    n = _words(message.get("content")) + _words(message.get("refusal"))
    calls = [c.get("function") for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    calls.append(message.get("function_call"))
    return n + sum(_words(f.get("name")) + _words(f.get("arguments")) for f in calls if isinstance(f, dict))


def input_tokens_of(inp: object) -> int:
    """Prompt tokens of an embeddings input: characters // 4 + 1 per text, the length of a token array."""
    if isinstance(inp, str):
        return len(inp) // 4 + 1
    if isinstance(inp, list) and inp and all(isinstance(t, int) for t in inp):
        return len(inp)
    if isinstance(inp, list):
        return sum(input_tokens_of(x) for x in inp)
    return 0


def embedding_of(text: str | list, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's embedding of one input: multiples of 1/128, exact in float32 (so base64 round-trips)."""
    seed = json.dumps(text).encode("utf-8", "surrogatepass")
    out: list[float] = []
    block = 0
    while len(out) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        out.extend((b - 128) / 128 for b in digest)
        block += 1
    return out[:dimensions]


def pieces_of(text: str) -> list[str]:
    """The content deltas a stream sends for `text`: its words, each after the first with its space."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


# --- what a chat request is answered ------------------------------------------------------------------


def _last(messages: list, role: str | None = None) -> dict | None:
    for m in reversed(messages):
        if isinstance(m, dict) and (role is None or m.get("role") == role):
            return m
    return None


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _names(items: object, key: str | None) -> list[str]:
    """The function names of a `tools` list (key "function") or of a legacy `functions` list (None)."""
    out = []
    for t in items if isinstance(items, list) else []:
        f = t.get(key) if key and isinstance(t, dict) else t
        if isinstance(f, dict) and isinstance(f.get("name"), str) and f["name"]:
            out.append(f["name"])
    return out


def _chosen(choice: object, names: list[str], key: str | None) -> str | None:
    """Which function a tool_choice / function_call picks: None for "none", else a name."""
    if choice == "none" or not names:
        return None
    if isinstance(choice, dict):
        f = choice.get(key) if key else choice
        if isinstance(f, dict) and f.get("name") in names:
            return f["name"]
    return names[0]


def _logprob_entry(token: str, j: int, top: int) -> dict:
    lp = -round(0.05 * (j + 1), 4)

    def tok(t: str, p: float) -> dict:
        return {"token": t, "logprob": p, "bytes": list(t.encode("utf-8", "surrogatepass"))}

    alts = [tok(token, lp)] + [tok(f"alt{m}", lp - m) for m in range(1, top)]
    return {**tok(token, lp), "top_logprobs": alts[:top]}


def logprobs_of(text: str, top: int = 0) -> dict:
    """The logprobs object of a choice whose content is `text`: one entry per streamed piece."""
    return {"content": [_logprob_entry(p, j, top) for j, p in enumerate(pieces_of(text))], "refusal": None}


def auto_choices(body: dict, reply: str, number: int) -> list[dict]:
    """The choices the fake answers `body` with when nothing is programmed (see the module doc)."""
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_CHOICES else 1
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    last = _last(messages)
    last_role = last.get("role") if last else None
    after_tool = last_role in ("tool", "function")
    user = _text((_last(messages, "user") or {}).get("content"))
    tool = None if after_tool else _chosen(body.get("tool_choice"), _names(body.get("tools"), "function"), "function")
    function = None
    if tool is None and not after_tool:
        function = _chosen(body.get("function_call"), _names(body.get("functions"), None), None)
    fmt = body.get("response_format")
    as_json = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
    wants_logprobs = body.get("logprobs") is True
    top = body.get("top_logprobs")
    top = top if isinstance(top, int) and not isinstance(top, bool) and 0 <= top <= 20 else 0
    choices = []
    for i in range(n):
        if tool is not None or function is not None:
            call = {"name": tool or function, "arguments": json.dumps({"q": user})}
            if tool is not None:
                msg = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": f"call_fake{number}_{i}", "type": "function", "function": call}],
                }
                finish = "tool_calls"
            else:
                msg, finish = {"role": "assistant", "content": None, "function_call": call}, "function_call"
            choices.append({"index": i, "message": msg, "finish_reason": finish})
            continue
        text = TOOL_REPLY.format(_text(last.get("content"))) if after_tool else reply
        if i > 0:
            text = f"{text} #{i}"
        if as_json:
            text = json.dumps({"reply": text})
        choice = {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if wants_logprobs:
            choice["logprobs"] = logprobs_of(text, top)
        choices.append(choice)
    return choices


def _programmed(choices: list[dict]) -> list[dict]:
    """`next_choices` as sent: each with its index, role and a finish reason filled in when missing."""
    out = []
    for i, c in enumerate(copy.deepcopy(choices)):
        c.setdefault("index", i)
        msg = c.setdefault("message", {})
        msg.setdefault("role", "assistant")
        msg.setdefault("content", None)
        natural = "tool_calls" if msg.get("tool_calls") else "function_call" if msg.get("function_call") else "stop"
        c.setdefault("finish_reason", natural)
        out.append(c)
    return out


def _split(s: str, parts: int) -> list[str]:
    """`s` in up to `parts` non-empty pieces, in order."""
    if not s:
        return []
    size = -(-len(s) // parts)
    return [s[k : k + size] for k in range(0, len(s), size)]


def choice_events(choice: dict) -> tuple[dict, list[dict], dict]:
    """A choice as stream events (`{index, delta, finish_reason[, logprobs]}` each): the role event,
    the body events (content pieces, refusal pieces, tool call fragments) and the finish event."""
    idx, msg = choice["index"], choice.get("message") or {}
    content = msg.get("content")

    def ev(delta: dict, finish: str | None = None) -> dict:
        return {"index": idx, "delta": delta, "finish_reason": finish}

    role = ev({"role": "assistant", "content": "" if isinstance(content, str) else None})
    body: list[dict] = []
    lp = choice.get("logprobs")
    if isinstance(content, str):
        pieces = pieces_of(content)
        entries = lp.get("content") if isinstance(lp, dict) else None
        per_piece = isinstance(entries, list) and len(entries) == len(pieces)
        for j, p in enumerate(pieces):
            e = ev({"content": p})
            if per_piece:
                e["logprobs"] = {"content": [entries[j]], "refusal": None}
            elif lp is not None and j == 0:
                e["logprobs"] = lp
            body.append(e)
    if isinstance(msg.get("refusal"), str):
        body.extend(ev({"refusal": p}) for p in pieces_of(msg["refusal"]))
    for k, call in enumerate(msg.get("tool_calls") or []):
        f = call.get("function") or {}
        head = {"index": k, "id": call.get("id"), "type": call.get("type", "function")}
        body.append(ev({"tool_calls": [{**head, "function": {"name": f.get("name"), "arguments": ""}}]}))
        for piece in _split(f.get("arguments") or "", ARGUMENT_PIECES):
            body.append(ev({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}))
    fc = msg.get("function_call")
    if isinstance(fc, dict):
        body.append(ev({"function_call": {"name": fc.get("name"), "arguments": ""}}))
        body.extend(ev({"function_call": {"arguments": p}}) for p in _split(fc.get("arguments") or "", ARGUMENT_PIECES))
    finish = ev({}, choice.get("finish_reason"))
    if lp is not None and not isinstance(content, str):
        finish["logprobs"] = lp
    return role, body, finish


@dataclass
class _Plan:
    """How one request is answered, decided under the lock when it arrives."""

    index: int  # in requests / raw / headers / responses
    mode: str
    reply: str
    delay: float
    choices: list[dict] | None
    finish_reason: str | None
    usage_extra: dict
    fingerprint: str | None


# --- the HTTP server ---------------------------------------------------------------------------------


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

    def _body(self, raw: bytes) -> dict | None:
        """The request body as a JSON object; None after answering 400."""
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self._json(400, {"error": {"message": "body is not a JSON object", "type": "invalid_request_error"}})
            return None
        return body

    def _fault(self, mode: str, delay: float) -> str | None:
        """Act out "hang", "slow" and the HTTP error modes; the mode left to answer with, or None when done."""
        fake = self.server.fake
        if mode == "hang":
            fake._released.wait()
            self._cut()
            return None
        if mode == "slow":
            if fake._released.wait(delay):
                self._cut()
                return None
            mode = "ok"
        if mode in _ERRORS:
            code, kind, msg = _ERRORS[mode]
            extra = {"Retry-After": "0"} if code == 429 else None
            self._json(code, {"error": {"message": msg, "type": kind, "code": code}}, extra)
            return None
        return mode

    def _whole(self, obj: dict, mode: str) -> bool:
        """Send a JSON answer as the mode says ("malformed", "cut" or whole); whether it went out whole."""
        if mode == "malformed":
            self._send(200, b"<html><body>this is not JSON</body></html>")
            return False
        data = json.dumps(obj).encode()
        if mode == "cut":  # promise the whole body, send half of it, hang up
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._cut()
            return False
        self._send(200, data)
        return True

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
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.rstrip("/")
        if path == "/v1/chat/completions":
            return self._chat(raw)
        if path == "/v1/embeddings":
            return self._embeddings(raw)
        return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    # --- chat completions -----------------------------------------------------------------

    def _chat(self, raw: bytes) -> None:
        fake = self.server.fake
        body = self._body(raw)
        if body is None:
            return
        plan = fake._take(body, raw, dict(self.headers))
        mode = self._fault(plan.mode, plan.delay)
        if mode is None:
            return
        if plan.choices is not None:
            choices = _programmed(plan.choices)
        else:
            choices = auto_choices(body, plan.reply, plan.index + 1)
        if plan.finish_reason is not None:
            for c in choices:
                c["finish_reason"] = plan.finish_reason
        usage = None if mode == "no_usage" else self._usage(body, choices, plan.usage_extra)
        if body.get("stream"):
            return self._stream(body, mode, plan, choices, usage)
        obj = {
            "id": f"chatcmpl-fake-{id(body):x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": choices,
        }
        if plan.fingerprint is not None:
            obj["system_fingerprint"] = plan.fingerprint
        if usage is not None:
            obj["usage"] = usage
        # Recorded before it goes out: the client may read it and ask before this thread runs on.
        if mode not in ("malformed", "cut"):
            fake._answered(plan.index, obj)
        self._whole(obj, mode)

    @staticmethod
    def _usage(body: dict, choices: list[dict], extra: dict) -> dict:
        p = prompt_tokens_of(body)
        c = sum(message_tokens(ch.get("message") or {}) for ch in choices)
        usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        usage.update(copy.deepcopy(extra))
        if "total_tokens" not in extra:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return usage

    def _stream(self, body: dict, mode: str, plan: _Plan, choices: list[dict], usage: dict | None) -> None:
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
        if plan.fingerprint is not None:
            base["system_fingerprint"] = plan.fingerprint
        if mode == "malformed":
            self._event("{this is not JSON")
            self._event("[DONE]")
            self._chunk(b"")
            return
        # One choice per event; several choices' events interleaved, each choice's in order.
        rows = []
        for c in choices:
            role, events, finish = choice_events(c)
            rows.append([("role", role), *(("body", e) for e in events), ("finish", finish)])
        flat = [row[j] for j in range(max(map(len, rows), default=0)) for row in rows if j < len(row)]
        body_total = sum(kind == "body" for kind, _ in flat)
        sent: list[dict] = []
        sent_body = 0
        for kind, choice in flat:
            if mode == "cut" and (kind == "finish" or (kind == "body" and sent_body >= max(1, body_total // 2))):
                return self._cut()
            chunk = {**base, "choices": [choice]}
            self._event(json.dumps(chunk))
            sent.append(chunk)
            sent_body += kind == "body"
        if mode == "cut":
            return self._cut()
        opts = body.get("stream_options")
        wants_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        if wants_usage and usage is not None:
            chunk = {**base, "choices": [], "usage": usage}
            self._event(json.dumps(chunk))
            sent.append(chunk)
        self.server.fake._answered(plan.index, sent)  # before the end goes out (see above)
        self._event("[DONE]")
        self._chunk(b"")  # the terminating zero-length chunk

    # --- embeddings -----------------------------------------------------------------------

    def _embeddings(self, raw: bytes) -> None:
        fake = self.server.fake
        body = self._body(raw)
        if body is None:
            return
        mode, delay = fake._take_embeddings(body, raw)
        mode = self._fault(mode, delay)
        if mode is None:
            return
        inp = body.get("input")
        inputs = [inp] if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)) else inp
        if not isinstance(inputs, list) or not inputs or not all(isinstance(x, (str, list)) for x in inputs):
            msg = "input must be a string, an array of strings or an array of token arrays"
            return self._json(400, {"error": {"message": msg, "type": "invalid_request_error", "param": "input"}})
        dims = body.get("dimensions")
        dims = dims if isinstance(dims, int) and not isinstance(dims, bool) and 1 <= dims <= 4096 else fake.dimensions
        data = []
        for i, x in enumerate(inputs):
            vec: object = embedding_of(x, dims)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        p = sum(input_tokens_of(x) for x in inputs)
        obj = {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": p, "total_tokens": p},
        }
        if mode == "no_usage":
            del obj["usage"]
        self._whole(obj, mode)


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
        self.raw: list[bytes] = []  # the bytes of each chat request, as received (aligned with requests)
        self.headers: list[dict] = []  # request headers of each chat request, in order
        # What each chat request was answered: the chat.completion dict, or the list of chunk dicts
        # of a stream; None while unanswered, or when it failed, was cut or malformed.
        self.responses: list[dict | list[dict] | None] = []
        self.embedding_requests: list[dict] = []  # JSON bodies received on /v1/embeddings
        self.embedding_raw: list[bytes] = []
        self.model_requests = 0
        self.errors: list[str] = []  # unexpected exceptions inside the server (bugs of the fake)
        self._fail_left = 0
        self._limited = False
        self._defaults()
        self.base_url = ""
        self.port = 0

    def _defaults(self) -> None:
        self.next_choices: list[dict] | None = None  # the next answered chat request's choices, once
        self.finish_reason: str | None = None  # every choice's finish_reason, instead of the natural one
        self.usage_extra: dict = {}  # merged into usage (e.g. {"prompt_tokens_details": {"cached_tokens": 4}})
        self.fingerprint: str | None = None  # system_fingerprint of completions and chunks
        self.dimensions = EMBEDDING_DIMENSIONS  # embeddings' length unless the request says

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
        """Back to defaults: mode "ok", the default reply, nothing programmed, no recorded requests."""
        with self._lock:
            self._mode = "ok"
            self.reply = DEFAULT_REPLY
            self.delay_s = 2.0
            self.requests.clear()
            self.raw.clear()
            self.headers.clear()
            self.responses.clear()
            self.embedding_requests.clear()
            self.embedding_raw.clear()
            self.model_requests = 0
            self._fail_left, self._limited = 0, False
            self._defaults()

    @property
    def calls(self) -> int:
        """Chat and embeddings requests received so far."""
        with self._lock:
            return len(self.requests) + len(self.embedding_requests)

    def _current_mode(self) -> str:
        with self._lock:
            return "ok" if self._limited and self._fail_left == 0 else self._mode

    def _decide(self) -> str:
        """The mode this request gets (caller holds _lock); counts down fail_times."""
        if not self._limited:
            return self._mode
        if self._fail_left > 0:
            self._fail_left -= 1
            return self._mode
        return "ok"

    def _take(self, body: dict, raw: bytes, headers: dict) -> _Plan:
        """Record a chat request and decide how to answer it."""
        with self._lock:
            self.requests.append(body)
            self.raw.append(raw)
            self.headers.append(headers)
            self.responses.append(None)
            mode = self._decide()
            choices = None
            if self.next_choices is not None and mode in _ANSWERING:
                choices, self.next_choices = self.next_choices, None
            return _Plan(
                len(self.requests) - 1,
                mode,
                self.reply,
                self.delay_s,
                choices,
                self.finish_reason,
                dict(self.usage_extra),
                self.fingerprint,
            )

    def _take_embeddings(self, body: dict, raw: bytes) -> tuple[str, float]:
        with self._lock:
            self.embedding_requests.append(body)
            self.embedding_raw.append(raw)
            return self._decide(), self.delay_s

    def _answered(self, index: int, answer: dict | list[dict]) -> None:
        with self._lock:
            if index < len(self.responses):  # not reset meanwhile
                self.responses[index] = answer

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
