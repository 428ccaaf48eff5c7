"""A lean HTTP/1.1 transport for httpx: the standard library's http.client underneath.

The router's backends speak to endpoints through `httpx.Client`. Its default transport
(httpcore and h11, pure Python) costs about 0.3 ms of CPU per call and takes one pool lock
several times per call; under a hundred routing threads that made the upstream call most of
the API server's CPU time and its threads queue on the lock. This transport keeps httpx's API
(the backends do not change) and sends each request with http.client on a keep-alive
connection owned by the calling thread, so nothing is shared between threads.

It behaves like httpx's transport where the backends can tell: the same exception classes
(`ConnectError`, `ConnectTimeout`, `ReadTimeout`, `WriteTimeout`, `RemoteProtocolError`,
`ReadError`, `UnsupportedProtocol`), streamed bodies, a truncated body is an error, and TLS
certificates and host names are always verified (there is no setting to turn that off).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A connection idle for less than this is reused without first checking that the server kept it
# open (servers keep idle connections for seconds; if one closed it anyway, the request is sent
# again once on a new connection).
_FRESH_S = 1.0


def _dropped(sock: socket.socket | None) -> bool:
    """An idle keep-alive connection that is readable has been closed by the server (or is out of step)."""
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _bounded(read_timeout: float | None, token) -> float | None:
    """The socket wait: the read timeout, never past the request's deadline."""
    if token is None:
        return read_timeout
    left = token.remaining()
    if left <= 0:
        raise httpx.ReadTimeout("the request's deadline passed")
    return left if read_timeout is None else min(read_timeout, left)


class _Body(httpx.SyncByteStream):
    def __init__(
        self,
        owner: FastTransport,
        key: tuple,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        read_timeout: float | None = None,
        token=None,
    ) -> None:
        self._owner, self._key, self._conn, self._resp = owner, key, conn, resp
        self._read_timeout, self._token = read_timeout, token
        self._done = False
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        resp = self._resp
        token, sock = self._token, self._conn.sock
        try:
            while True:
                if token is not None and sock is not None:
                    sock.settimeout(_bounded(self._read_timeout, token))
                chunk = resp.read1(65536)
                if not chunk:
                    break
                yield chunk
        except TimeoutError:
            raise httpx.ReadTimeout("timed out while reading the response body") from None
        except http.client.IncompleteRead:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body") from None
        except (http.client.HTTPException, ValueError) as e:
            raise httpx.RemoteProtocolError(f"malformed response body: {type(e).__name__}") from None
        except OSError as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from None
        if resp.length:  # Content-Length promised more than arrived
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        self._done = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._token is not None:
            self._token.detach()
        reusable = self._done and not self._resp.will_close and self._conn.sock is not None
        self._resp.close()
        if reusable:
            self._owner._release(self._key, self._conn)
        else:
            self._owner._discard(self._conn)


class FastTransport(httpx.BaseTransport):
    """HTTP/1.1 with one keep-alive connection per (thread, origin)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context or httpx.create_ssl_context()  # verifies certificates and host names
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[http.client.HTTPConnection] = set()
        self._closed = False

    # --- connections ----------------------------------------------------------------------

    def _idle(self) -> dict:
        d = getattr(self._local, "idle", None)
        if d is None:
            d = self._local.idle = {}
        return d

    def _release(self, key: tuple, conn: http.client.HTTPConnection) -> None:
        if self._closed:
            self._discard(conn)
            return
        old = self._idle().pop(key, None)
        if old is not None:
            self._discard(old[0])
        self._idle()[key] = (conn, time.monotonic())

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._all.discard(conn)
        try:
            conn.close()
        except OSError:
            pass

    def _connect(self, scheme: str, host: str, port: int, timeout: float | None) -> http.client.HTTPConnection:
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError, ssl.CertificateError) as e:  # refused, unreachable, DNS, TLS
            raise httpx.ConnectError(str(e) or type(e).__name__) from None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._all.add(conn)
        return conn

    # --- a request --------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed (the server is shutting down)")
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        host, port = url.host, url.port or _DEFAULT_PORTS[scheme]
        timeouts = request.extensions.get("timeout") or {}
        token = request.extensions.get("sophia.token")
        if token is not None and token.cancelled:
            raise httpx.ReadError("the client went away before the request was sent")
        body = request.read()
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"transfer-encoding"]
        if body and not any(k.lower() == b"content-length" for k, _ in headers):
            headers.append((b"Content-Length", str(len(body)).encode()))
        key = (scheme, host, port)
        conn, last = self._idle().pop(key, (None, 0.0))
        if conn is not None and time.monotonic() - last > _FRESH_S and _dropped(conn.sock):
            self._discard(conn)
            conn = None
        for attempt in (0, 1):
            reused = conn is not None
            if conn is None:
                conn = self._connect(scheme, host, port, timeouts.get("connect"))
            if token is not None:
                token.attach(conn.sock)
            try:
                resp = self._exchange(conn, request.method, url.raw_path, headers, body, timeouts, token)
                break
            except _Stale:
                self._discard(conn)
                conn = None
                if not reused or attempt:
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None
            except BaseException:
                self._discard(conn)
                raise
        return httpx.Response(
            resp.status,
            headers=resp.getheaders(),
            stream=_Body(self, key, conn, resp, timeouts.get("read"), token),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": resp.reason.encode("latin-1", "replace")},
        )

    @staticmethod
    def _exchange(
        conn: http.client.HTTPConnection, method: str, target: bytes, headers, body: bytes, timeouts: dict, token=None
    ) -> http.client.HTTPResponse:
        try:
            conn.sock.settimeout(timeouts.get("write"))
            conn.putrequest(method, target.decode("ascii"), skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders(body or None)
        except TimeoutError:
            raise httpx.WriteTimeout("timed out while sending the request") from None
        except (BrokenPipeError, ConnectionResetError):
            raise _Stale() from None
        except OSError as e:
            raise httpx.WriteError(str(e) or type(e).__name__) from None
        try:
            conn.sock.settimeout(_bounded(timeouts.get("read"), token))
            resp = conn.getresponse()
            if token is not None and not token.stream:
                token.first_token()  # a whole reply: its headers are its first byte
            return resp
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the response") from None
        except http.client.RemoteDisconnected:
            raise _Stale() from None
        except http.client.HTTPException as e:
            raise httpx.RemoteProtocolError(f"malformed response: {type(e).__name__}") from None
        except OSError as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from None

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = list(self._all), set()
        for c in conns:
            try:
                if c.sock is not None:  # wakes a thread blocked reading from it
                    c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass


class _Stale(Exception):
    """The server closed a connection before answering (e.g. an idle keep-alive it timed out)."""
