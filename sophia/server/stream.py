"""A streamed completion: one routing thread owns the router's generator (`Pump`) and hands each
text delta to the event loop, which sends it as a server-sent event (`Chunks`).

Only the pump's thread ever touches the generator, so it is never advanced and closed at once:
when the client goes away the response sets `cancelled`, and the thread closes the generator at
the next delta, which records the request as `cancelled` with the tokens it got.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from sophia import jsonio
from sophia.routing import views
from sophia.routing.backends.base import CallToken, Chunk
from sophia.routing.result import ChatRequest, Result
from sophia.routing.router import Router
from sophia.server.errors import ApiError, result_error
from sophia.vocab import Status

# Items on a pump's queue: ("first", Chunk, Routing), ("delta", Chunk), ("end", Result), ("raise", exc).
FIRST, DELTA, END, RAISE = "first", "delta", "end", "raise"


class Pump:
    """Runs one stream on a routing thread and hands its deltas to the event loop."""

    __slots__ = ("loop", "queue", "cancelled", "token")

    def __init__(self, loop: asyncio.AbstractEventLoop, token: CallToken | None = None) -> None:
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.token = token or CallToken()

    def _put(self, item: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone: nobody is listening any more
            self.cancelled = True

    def run(self, router: Router, req: ChatRequest) -> None:
        try:
            handle = router.stream(req)
        except Exception as e:  # validation (before anything is recorded) or a bug
            self._put((RAISE, e))
            return
        first = True
        try:
            for chunk in handle:
                if first:
                    # The routing is final at the first chunk: the response headers need it now.
                    self._put((FIRST, chunk, views.routing(handle.live)))
                    first = False
                else:
                    self._put((DELTA, chunk))
                if self.cancelled:
                    handle.close()  # records `cancelled` with what was received
                    break
        except Exception as e:  # the router records backend failures itself; this is a bug
            self._put((RAISE, e))
            return
        self._put((END, handle.result))


class EventStream:
    """A server-sent-event response, lean: the status and headers, then each piece as it comes.

    Starlette's StreamingResponse also starts a task group per stream to listen for the client
    leaving; here the request's own disconnect watch does that (it cancels the call, so the
    router ends the stream and records it), and the first token goes out sooner."""

    status_code = 200

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        self.body = body
        self.headers = {"content-type": "text/event-stream; charset=utf-8", **headers}
        self._raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]

    async def __call__(self, scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._raw})
            async for piece in self.body:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.body.aclose()  # its own clean-up runs whatever happened to the send


class Chunks:
    """Server-sent event bytes of one stream, in the OpenAI chat.completion.chunk format."""

    def __init__(
        self, request_id: str, model: str | None, include_usage: bool, fingerprint: str | None = None
    ) -> None:
        self.id = f"chatcmpl-{request_id}"
        self.created = int(time.time())
        self.include_usage = include_usage
        # The start of every delta event, rendered once: deltas are the hot part of a stream.
        self._head = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{json.dumps(model)},"system_fingerprint":{json.dumps(fingerprint)},"choices":[{{"index":0,'
        )
        self._open = self._head[: -len('[{"index":0,')]  # up to `"choices":`
        self._open_b = self._open.encode()
        self._delta_b = (self._head + '"delta":{"content":').encode()

    def role(self) -> bytes:
        return (
            self._head + '"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
        ).encode()

    def delta(self, chunk: Chunk) -> bytes:
        """A delta event: the upstream's choices as sent, in Sophia's envelope (id, model)."""
        if chunk.choices is None:
            return self._delta_b + jsonio.dumps(chunk.text) + b'},"logprobs":null,"finish_reason":null}]}\n\n'
        return self._open_b + jsonio.dumps(chunk.choices) + b"}\n\n"

    @staticmethod
    def _event(obj: dict) -> bytes:
        return b"data: " + jsonio.dumps(obj) + b"\n\n"

    def end(self, res: Result, max_tokens: int | None) -> bytes:
        """The final chunk (and the usage chunk), or an error event if the reply broke off; then [DONE]."""
        base = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": res.model,
            "system_fingerprint": res.fingerprint,
        }
        out = []
        if res.status == Status.OK:
            if res.finish_reason is None:  # the upstream sent no finish reason: Sophia's own
                reason = views.finish_reason(res, max_tokens)
                finish = [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}]
            else:
                finish = []
            out.append(self._event({**base, "choices": finish, "sophia": views.sophia_extension(res)}))
            if self.include_usage:
                out.append(self._event({**base, "choices": [], "usage": views.usage(res)}))
        else:  # the reply broke off after text was sent: an error event, as OpenAI streams do
            out.append(self._event({**result_error(res).body(), "sophia": views.sophia_extension(res)}))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def crash(self) -> bytes:
        err = ApiError(500, "internal error while streaming", "server_error")
        return self._event(err.body()) + b"data: [DONE]\n\n"
