"""Running the API server: `sophia serve` (one process, or N workers on one socket), the
exposure check, the backends on the lean transport, and a graceful stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import uvicorn

from sophia import config as config_mod
from sophia.config import Config, ConfigError
from sophia.config.diagnostics import setup_logging
from sophia.config.server import ServerSettings
from sophia.log.db import DatabaseBusy, DatabaseError
from sophia.routing.backends.transport import FastTransport
from sophia.routing.router import make_backends
from sophia.runtime import Runtime
from sophia.server.app import FastPath, create_app
from sophia.server.metrics import MULTIPROC_ENV

WORKER_APP = "sophia.server.run:worker_app"  # what each uvicorn worker process imports


def is_loopback(host: str) -> bool:
    """Whether listening on `host` stays on this machine."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: ServerSettings) -> None:
    """Refuse to listen beyond loopback without API keys."""
    if not is_loopback(host) and not settings.api_keys:
        raise ConfigError(
            f"--host {host} listens beyond this machine, and [server] api_keys is empty: anyone could spend "
            "through the router. Add keys (python -m sophia.apikeys NAME prints one and its hash) or listen "
            "on 127.0.0.1"
        )


def server_backends(cfg: Config, settings: ServerSettings) -> dict:
    """The router's backends; real endpoints on the lean transport unless `upstream_http = "httpx"`."""
    transport = None
    if settings.upstream_http == "fast" and not all(e.simulated for e in cfg.endpoints):
        ctx = httpx.create_ssl_context()  # verifying; built once (it costs milliseconds)
        transport = lambda: FastTransport(ctx)  # noqa: E731
    return make_backends(cfg, secrets=config_mod.load_secrets(), transport=transport)


def open_runtime(cfg: Config, settings: ServerSettings, config_path: str | None, db_path: str | None) -> Runtime:
    return Runtime.open(config_path, db_path, cfg=cfg, backends=server_backends(cfg, settings))


def worker_app() -> FastPath:
    """The app of one worker process of `sophia serve --workers N` (paths come from the environment)."""
    setup_logging()
    cfg = config_mod.load(os.environ.get("SOPHIA_CONFIG"))
    settings = cfg.server
    return FastPath(create_app(open_runtime(cfg, settings, cfg.path, os.environ.get("SOPHIA_DB")), settings))


def _bind(host: str, port: int) -> socket.socket:
    h = host.strip("[]")
    family = socket.AF_INET6 if ":" in h else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on TCP-typed sockets (else: 40 ms delayed ACKs)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((h, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; every record is flushed by then,
    so `sophia serve` simply returns and exits 0 after a clean stop."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _err(msg: str) -> int:
    """The command's one-line user error (the CLI's convention)."""
    print(f"sophia: error: {msg}", file=sys.stderr)
    return 1


def _banner(host: str, port: int, workers: int, cfg: Config, settings: ServerSettings, db_path: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    sim = sum(e.simulated for e in cfg.endpoints)
    return (
        f"sophia: serving http://{shown}:{port}/v1 (docs at /docs) · {len(cfg.endpoints)} endpoints"
        f"{f' ({sim} simulated)' if sim else ''} · API keys: "
        f"{f'{len(settings.api_keys)} configured' if settings.api_keys else 'none (loopback only)'} · "
        f"log: {db_path} · {workers} worker{'s' if workers > 1 else ''}"
    )


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    config_path: str | None = None,
    db_path: str | None = None,
) -> int:
    """`sophia serve`: run until SIGTERM or SIGINT, then finish in-flight requests and flush every record."""
    try:
        setup_logging()
        cfg = config_mod.load(config_path)
        settings = cfg.server
        check_exposure(host, settings)
    except ConfigError as e:
        return _err(str(e))
    if not 1 <= port <= 65535:
        return _err(f"--port {port} is not allowed: expected a port from 1 to 65535")
    try:
        rt = open_runtime(cfg, settings, config_path, db_path)
    except (ValueError, DatabaseBusy, DatabaseError, OSError) as e:  # ConfigError is a ValueError
        return _err(str(e))
    try:
        sock = _bind(host, port)
    except OSError as e:
        rt.close()
        return _err(f"cannot listen on {host}:{port}: {e.strerror or e}")
    # The command's status line (user output, like uvicorn's own "running on" line).
    print(_banner(host, port, workers, cfg, settings, rt.db.path), file=sys.stderr, flush=True)
    uv = dict(
        lifespan="on",
        access_log=settings.access_log,
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=settings.shutdown_timeout_s or None,
        proxy_headers=False,
    )
    try:
        if workers == 1:
            return _serve_one(rt, settings, sock, uv)
        return _serve_workers(rt, cfg, sock, workers, uv)
    except SystemExit as e:  # uvicorn exits on a failed start-up after logging why
        return e.code if isinstance(e.code, int) else 1
    finally:
        sock.close()


def _serve_one(rt: Runtime, settings: ServerSettings, sock: socket.socket, uv: dict) -> int:
    app = create_app(rt, settings)
    server = _Server(uvicorn.Config(FastPath(app), **uv))
    try:
        server.run(sockets=[sock])
    finally:
        app.state.sophia.close()
    return 0 if server.started else 1


def _serve_workers(rt: Runtime, cfg: Config, sock: socket.socket, workers: int, uv: dict) -> int:
    # Each worker opens its own runtime (writer, database handle); the parent only checked them.
    db = rt.db.path
    rt.close()
    os.environ["SOPHIA_CONFIG"] = str(Path(cfg.path).resolve()) if cfg.path else ""
    os.environ["SOPHIA_DB"] = db if db == ":memory:" else str(Path(db).resolve())
    # /metrics sums every worker's figures from one folder (prometheus_client's multiprocess mode);
    # a fresh one per start, so a restart does not add up the last run's counters.
    metrics_dir = tempfile.mkdtemp(prefix="sophia-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(WORKER_APP, factory=True, workers=workers, **uv)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
