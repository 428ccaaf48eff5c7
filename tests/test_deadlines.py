"""Deadlines that hold: an upstream that stays connected without progress (a trickle of bytes,
keep-alive comments) is cut at the request's first-token or total deadline, recorded once with
the deadline that fired; a client that leaves frees its routing slot while the request is still
waiting on the endpoint."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from sophia.config import parse
from sophia.routing.result import ChatRequest
from sophia.routing.router import Router, make_backends
from sophia.vocab import Status
from tests.fakeopenai import FakeOpenAI
from tests.helpers import DEDICATED_MODEL, Server, config_dict, hello, log_rows, write_toml


class ListWriter:
    """The router's writer, keeping records in a list."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def put(self, record: dict) -> None:
        self.rows.append(record)


class Drip:
    """An HTTP server on 127.0.0.1 that answers at once and then never finishes: an SSE stream of
    keep-alive comments (`sse`), or a JSON body one byte at a time (`body`), every `gap_s`."""

    def __init__(self, kind: str, gap_s: float = 0.05) -> None:
        self.kind, self.gap_s = kind, gap_s
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.stop = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            if self.kind == "sse":
                head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                conn.sendall(head)
                piece = b": keep-alive\n\n"
                while not self.stop.wait(self.gap_s):
                    conn.sendall(f"{len(piece):X}\r\n".encode() + piece + b"\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{")
                while not self.stop.wait(self.gap_s):
                    conn.sendall(b" ")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def drip_router(request):
    made = []

    def make(kind: str, first_s: float = 0.4, total_s: float = 0.9) -> tuple[Router, ListWriter]:
        drip = Drip(kind)
        request.addfinalizer(drip.close)
        data = config_dict(drip.url)  # serverless only: nothing to fail over to
        data["failover"].update(first_token_timeout_s=first_s, timeout_s=total_s, max_retries=0)
        cfg = parse(data)
        writer = ListWriter()
        router = Router(cfg, writer, make_backends(cfg))
        made.append(router)
        return router, writer

    yield make
    for r in made:
        r.close()


def test_keep_alives_do_not_extend_a_streams_first_token_deadline(drip_router):
    router, writer = drip_router("sse", first_s=0.4, total_s=5)
    t0 = time.monotonic()
    req = ChatRequest(hello(), 16, request_id="drip-stream")
    res = _drain(router.stream(req))
    took = time.monotonic() - t0
    assert res.status == Status.ERROR and res.error_kind == "timeout"
    assert "first token within 0.4 s" in res.error and "first_token_timeout_s" in res.error
    assert 0.35 <= took < 2.5  # the deadline, not the 5 s total and not forever
    assert [r["request_id"] for r in writer.rows] == [req.request_id]  # recorded once
    assert writer.rows[0]["error_kind"] == "timeout"


def test_keep_alives_after_the_headers_of_a_whole_reply_end_at_the_total_deadline(drip_router):
    router, writer = drip_router("sse", first_s=0.3, total_s=0.8)
    t0 = time.monotonic()
    res = router.chat(ChatRequest(hello(), 16, request_id="drip-whole"))
    assert res.error_kind == "timeout" and "whole reply within 0.8 s" in res.error
    assert 0.7 <= time.monotonic() - t0 < 2.5 and len(writer.rows) == 1


def test_a_body_trickling_in_is_cut_at_the_total_deadline(drip_router):
    router, writer = drip_router("body", first_s=0.3, total_s=0.8)
    t0 = time.monotonic()
    res = router.chat(ChatRequest(hello(), 16, request_id="trickle"))
    took = time.monotonic() - t0
    assert res.error_kind == "timeout" and "whole reply within 0.8 s" in res.error and "failover.timeout_s" in res.error
    assert 0.7 <= took < 2.5
    assert len(writer.rows) == 1


def _drain(handle):
    for _ in handle:
        pass
    return handle.result


@pytest.mark.slow
def test_a_client_that_leaves_frees_its_slot_while_the_endpoint_hangs(tmp_path, request):
    """One routing slot; a request hangs on the serverless endpoint; its client leaves; the next
    request (forced to a healthy GPU server) is served at once instead of waiting for the hang."""
    with FakeOpenAI(mode="hang") as hung, FakeOpenAI(reply="from the gpu") as gpu:
        data = config_dict(hung.base_url, [gpu.base_url] * 3)
        data["failover"].update(first_token_timeout_s=60, timeout_s=120, max_retries=0)
        data["server"] = {"max_concurrency": 1, "refresh_interval_s": 0}
        server = Server(write_toml(tmp_path / "sophia.toml", data), tmp_path / "log.duckdb")
        request.addfinalizer(server.kill)
        body = {"model": "sophia-auto", "messages": hello(), "max_tokens": 8}
        with httpx.Client(base_url=server.url, timeout=2) as leaving:
            with pytest.raises(httpx.ReadTimeout):
                leaving.post("/v1/chat/completions", json=body)  # gives up after 2 s and closes
        t0 = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=30) as next_client:
            r = next_client.post("/v1/chat/completions", json={**body, "model": DEDICATED_MODEL})
        assert r.status_code == 200 and time.monotonic() - t0 < 10
        assert server.stop() == 0
    rows = log_rows(server.db)
    statuses = sorted(row["status"] for row in rows.values())
    assert statuses == ["cancelled", "ok"], rows
