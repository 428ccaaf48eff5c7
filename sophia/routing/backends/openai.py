"""The OpenAI-compatible chat backend over httpx: any serverless provider, vLLM, SGLang, Ollama."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx

from sophia.config import Endpoint, FailoverSettings
from sophia.config.privacy import redact
from sophia.routing.backends.base import BackendError, Chunk, Usage


def scrub(text: str, secret: str | None) -> str:
    """Upstream text made safe to log: the endpoint's own key and anything key-like removed
    (a server may echo the bearer token it refused)."""
    if secret:
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


def _usage(obj: object) -> Usage | None:
    if not isinstance(obj, Mapping):
        return None
    p, c = obj.get("prompt_tokens"), obj.get("completion_tokens")
    if isinstance(p, int) and isinstance(c, int) and not isinstance(p, bool) and p >= 0 and c >= 0:
        return Usage(p, c)
    return None


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
        self._secret = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # TLS verification stays on: there is deliberately no setting to turn it off.
        self._client = httpx.Client(
            base_url=endpoint.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(failover.timeout_s, connect=failover.connect_timeout_s),
            transport=transport,
        )

    def _body(self, model, messages, max_tokens, stream):
        body = {"model": model, "messages": list(messages), "max_tokens": max_tokens, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _errors(self, e: Exception) -> BackendError:
        if isinstance(e, httpx.TimeoutException):
            # Not retried on the same endpoint: a retry would double the wait (timeout_s) before
            # failover; only 429/5xx, connect and dropped connections are retried (sophia.toml).
            return BackendError("timeout", f"{self.name} did not answer in time ({type(e).__name__})", retryable=False)
        if isinstance(e, (httpx.ConnectError, httpx.UnsupportedProtocol)):
            return BackendError("connect", f"{self.name} cannot be reached: {e}")
        return BackendError("cut_stream", f"{self.name} dropped the connection: {type(e).__name__}")

    def complete(self, model, messages, max_tokens):
        try:
            resp = self._client.post("/chat/completions", json=self._body(model, messages, max_tokens, False))
        except httpx.HTTPError as e:
            raise self._errors(e) from None
        if resp.status_code >= 400:
            raise _status_error(self.name, resp, self._secret)
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(
                "malformed", f"{self.name} sent a reply that is not an OpenAI chat completion", retryable=False
            ) from None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise BackendError("malformed", f"{self.name} sent a non-text message content", retryable=False)
        return text, _usage(data.get("usage"))

    def stream(self, model, messages, max_tokens):
        body = self._body(model, messages, max_tokens, True)
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as resp:
                if resp.status_code >= 400:
                    raise _status_error(self.name, resp, self._secret)
                done = False
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue  # comments, event names, keep-alives
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        event = json.loads(payload)
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
                    text = ""
                    choices = event.get("choices") or []
                    if choices and isinstance(choices[0], Mapping):
                        delta = choices[0].get("delta") or {}
                        text = delta.get("content") or "" if isinstance(delta, Mapping) else ""
                    usage = _usage(event.get("usage"))
                    if text or usage:
                        yield Chunk(text if isinstance(text, str) else "", usage)
                if not done:
                    raise BackendError("cut_stream", f"{self.name} ended the stream before [DONE]")
        except httpx.HTTPError as e:
            raise self._errors(e) from None

    def check(self) -> bool:
        try:
            return self._client.get("/models", timeout=5.0).status_code < 500
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._client.close()
