"""The OpenAI-compatible chat backend over httpx: any serverless provider, vLLM, SGLang, Ollama."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping

import httpx

from sophia import jsonio
from sophia.config import Endpoint, FailoverSettings
from sophia.config.privacy import redact
from sophia.routing.backends.base import BackendError, CallToken, Chunk, Embeddings, Reply, Usage, upstream_body

PIECE = 6  # the shortest run of the key's characters that is removed wherever it appears


def scrub(text: str, secret: str | None) -> str:
    """Upstream text made safe to log: the endpoint's own key and anything key-like removed.
    A server may echo the bearer token it refused, whole or cut short ("sk-abc…"), so every
    run of at least PIECE consecutive characters of the key goes, not only the whole key."""
    if secret and len(secret) >= PIECE:
        hidden = bytearray(len(text))
        for i in range(len(secret) - PIECE + 1):
            piece = secret[i : i + PIECE]
            at = text.find(piece)
            while at >= 0:
                hidden[at : at + PIECE] = b"\x01" * PIECE
                at = text.find(piece, at + 1)
        if any(hidden):
            out, i = [], 0
            while i < len(text):
                if hidden[i]:
                    while i < len(text) and hidden[i]:
                        i += 1
                    out.append("[secret]")
                else:
                    out.append(text[i])
                    i += 1
            text = "".join(out)
    elif secret:
        text = text.replace(secret, "[secret]")
    return redact(text)


def _status_error(name: str, resp: httpx.Response, secret: str | None = None) -> BackendError:
    try:
        body = resp.read().decode("utf-8", "replace")
    except httpx.HTTPError:
        body = ""
    try:
        detail = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = body
    detail = scrub(" ".join(str(detail).split()), secret)[:200]
    code = resp.status_code
    retryable = code in (408, 409, 429) or code >= 500
    return BackendError(
        "http_status",
        f"{name} answered HTTP {code}" + (f": {detail}" if detail else ""),
        status=code,
        retryable=retryable,
    )


def _count(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _detail(obj: Mapping, key: str, field: str) -> int:
    d = obj.get(key)
    return (_count(d.get(field)) or 0) if isinstance(d, Mapping) else 0


def _usage(obj: object, embeddings: bool = False) -> Usage | None:
    if not isinstance(obj, Mapping):
        return None
    p = _count(obj.get("prompt_tokens"))
    c = 0 if embeddings else _count(obj.get("completion_tokens"))
    if p is None or c is None:
        return None
    return Usage(
        p,
        c,
        _detail(obj, "prompt_tokens_details", "cached_tokens"),
        _detail(obj, "completion_tokens_details", "reasoning_tokens"),
        obj,
    )


def _meaningful(ch: object) -> bool:
    """A streamed choice that says something: not the role-only opening delta."""
    if not isinstance(ch, Mapping):
        return False
    if ch.get("finish_reason") is not None or ch.get("logprobs") is not None:
        return True
    delta = ch.get("delta")
    return isinstance(delta, Mapping) and any(v not in (None, "") for k, v in delta.items() if k != "role")


def _malformed(name: str, what: str) -> BackendError:
    return BackendError("malformed", f"{name} sent {what}", retryable=False)


def _json(raw: bytes | str):
    """An endpoint's JSON: orjson, else the standard library (which also takes NaN and integers
    beyond 64 bits, as endpoints have been seen to send)."""
    try:
        return jsonio.loads(raw)
    except ValueError:
        return json.loads(raw)


def _ext(token: CallToken | None) -> dict | None:
    return None if token is None else {"sophia.token": token}


class OpenAIBackend:
    """Any OpenAI-compatible server: a serverless provider, vLLM, SGLang, Ollama."""

    simulated = False

    def __init__(
        self,
        endpoint: Endpoint,
        api_key: str | None,
        failover: FailoverSettings,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = endpoint.name
        self._drop = endpoint.drop_params
        self._secret = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # TLS verification stays on: there is deliberately no setting to turn it off.
        timeout = httpx.Timeout(failover.timeout_s, connect=failover.connect_timeout_s)
        self._client = httpx.Client(
            base_url=endpoint.base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        # The non-streamed call goes straight to the transport: the client's per-call work (URL
        # merging, cookies, auth and redirect handling) was a tenth of the server's CPU per request,
        # and an endpoint needs none of it. The client's own headers are sent all the same.
        self._transport = transport
        self._headers = [*self._client.headers.raw, (b"Content-Type", b"application/json")]
        self._urls = {p: httpx.URL(endpoint.base_url.rstrip("/") + p) for p in ("/chat/completions", "/embeddings")}
        self._timeouts = timeout.as_dict()


    def _errors(self, e: Exception, token: CallToken | None = None) -> BackendError:
        if token is not None and token.cancelled:
            return BackendError("cancelled", "the client went away", retryable=False)
        if isinstance(e, httpx.TimeoutException) and token is not None and not isinstance(e, httpx.ConnectTimeout):
            return BackendError("timeout", f"{self.name} did not send {token.which()}", retryable=False)
        if isinstance(e, httpx.TimeoutException):
            # Not retried on the same endpoint: a retry would double the wait (timeout_s) before
            # failover; only 429/5xx, connect and dropped connections are retried (sophia.toml).
            return BackendError("timeout", f"{self.name} did not answer in time ({type(e).__name__})", retryable=False)
        if isinstance(e, (httpx.ConnectError, httpx.UnsupportedProtocol)):
            return BackendError("connect", f"{self.name} cannot be reached: {e}")
        return BackendError("cut_stream", f"{self.name} dropped the connection: {type(e).__name__}")

    def _request(self, path: str, content: bytes, token: CallToken | None) -> httpx.Request:
        """A POST for the transport itself: the client's headers and timeouts, already merged."""
        ext = {"timeout": self._timeouts, **(_ext(token) or {})}
        return httpx.Request("POST", self._urls[path], headers=self._headers, content=content, extensions=ext)

    def _send(self, path: str, content: bytes, token: CallToken | None) -> httpx.Response:
        if self._transport is None:  # httpx's own transport: through the client
            return self._client.post(path, content=content, headers=self._headers[-1:], extensions=_ext(token))
        req = self._request(path, content, token)
        resp = self._transport.handle_request(req)
        try:
            resp.read()
        finally:
            resp.close()
        return resp

    @contextlib.contextmanager
    def _open_stream(self, path: str, content: bytes, token: CallToken | None) -> Iterator[httpx.Response]:
        """A streamed call, its body read as it comes; straight to the transport like `_send`."""
        if self._transport is None:
            with self._client.stream(
                "POST", path, content=content, headers=self._headers[-1:], extensions=_ext(token)
            ) as resp:
                yield resp
            return
        req = self._request(path, content, token)
        resp = self._transport.handle_request(req)
        try:
            yield resp
        finally:
            resp.close()

    def _post(self, path: str, body: dict, token: CallToken | None = None) -> dict:
        try:
            resp = self._send(path, jsonio.dumps(body), token)
        except httpx.HTTPError as e:
            raise self._errors(e, token) from None
        if resp.status_code >= 400:
            raise _status_error(self.name, resp, self._secret)
        try:
            data = _json(resp.content)
        except ValueError:
            raise _malformed(self.name, "a reply that is not JSON") from None
        if not isinstance(data, Mapping):
            raise _malformed(self.name, "a reply that is not a JSON object")
        return data

    def complete(self, model, messages, max_tokens, body=None, token=None) -> Reply:
        if token is not None:
            token.stream = False
        data = self._post(
            "/chat/completions", upstream_body(model, messages, max_tokens, body, False, self._drop), token
        )
        choices = data.get("choices")
        if not (isinstance(choices, list) and choices and all(isinstance(c, Mapping) for c in choices)):
            raise _malformed(self.name, "a reply that is not an OpenAI chat completion (no choices)")
        msg = choices[0].get("message")
        if not isinstance(msg, Mapping):
            raise _malformed(self.name, "a reply that is not an OpenAI chat completion (no message)")
        if not isinstance(msg.get("content"), str | None):
            raise _malformed(self.name, "a non-text message content")
        fp = data.get("system_fingerprint")
        return Reply(choices, _usage(data.get("usage")), fp if isinstance(fp, str) else None)

    def embed(self, model: str, body: Mapping) -> Embeddings:
        data = self._post("/embeddings", upstream_body(model, (), None, body, False, self._drop))
        items = data.get("data")
        if not (isinstance(items, list) and all(isinstance(d, Mapping) for d in items)):
            raise _malformed(self.name, "a reply that is not an OpenAI embeddings list")
        return Embeddings(items, _usage(data.get("usage"), embeddings=True))

    def stream(self, model, messages, max_tokens, body=None, token=None):
        body = upstream_body(model, messages, max_tokens, body, True, self._drop)
        if token is not None:
            token.stream = True
        try:
            with self._open_stream("/chat/completions", jsonio.dumps(body), token) as resp:
                if resp.status_code >= 400:
                    raise _status_error(self.name, resp, self._secret)
                done = False
                for line in resp.iter_lines():
                    if token is not None and token.expired():  # keep-alives do not extend a deadline
                        raise httpx.ReadTimeout("the request's deadline passed")
                    if not line.startswith("data:"):
                        continue  # comments, event names, keep-alives
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        event = _json(payload)
                    except ValueError:
                        raise BackendError(
                            "malformed", f"{self.name} sent a stream event that is not JSON", retryable=False
                        ) from None
                    if not isinstance(event, Mapping):
                        raise BackendError(
                            "malformed", f"{self.name} sent a stream event that is not an object", retryable=False
                        )
                    if "error" in event:
                        err = event["error"]
                        msg = err.get("message", "") if isinstance(err, Mapping) else err
                        raise BackendError(
                            "http_status",
                            f"{self.name} reported an error mid-stream: {scrub(str(msg), self._secret)[:200]}",
                        )
                    choices = event.get("choices")
                    if not isinstance(choices, list) or not any(_meaningful(c) for c in choices):
                        choices = None
                    text = ""
                    if choices:
                        first = choices[0]
                        delta = first.get("delta") if first.get("index", 0) == 0 else None
                        content = delta.get("content") if isinstance(delta, Mapping) else None
                        text = content if isinstance(content, str) else ""
                    usage = _usage(event.get("usage"))
                    if choices and token is not None:
                        token.first_token()
                    if choices or usage:
                        fp = event.get("system_fingerprint")
                        yield Chunk(text, usage, choices, fp if isinstance(fp, str) else None)
                if not done:
                    if token is not None and token.cancelled:
                        raise BackendError("cancelled", "the client went away", retryable=False)
                    raise BackendError("cut_stream", f"{self.name} ended the stream before [DONE]")
        except httpx.HTTPError as e:
            raise self._errors(e, token) from None

    def check(self) -> bool:
        try:
            return self._client.get("/models", timeout=5.0).status_code < 500
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._client.close()
