"""Shared test helpers: configurations as data, TOML files, free ports, servers in subprocesses,
log rows and synthetic records.

Every configuration a test uses is built here from data and written with tomli_w; no test reads
the developer's sophia.toml or data/sophia.duckdb (tests/test_config.py alone validates the
shipped file, and checks that `reference()` is what it ships).
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import tomli_w

from sophia.config import Config, parse
from sophia.log.db import Database
from sophia.log.writer import Writer
from sophia.vocab import BudgetAction, Period, Reason, Source, Status, Tier

ROOT = Path(__file__).resolve().parents[1]

# --- the reference deployment, as data ----------------------------------------------------------

SERVERLESS_MODELS = (
    "llama-4-scout-17b-16e-instruct",
    "llama-4-maverick-17b-128e-instruct-fp8",
    "llama3.1-8b-instruct",
)
PRICES = (  # tests read prices back from the Config, never from here
    {"name": "llama-4-scout-17b-16e-instruct", "input_per_mtok": 0.08, "output_per_mtok": 0.30},
    {"name": "llama-4-maverick-17b-128e-instruct-fp8", "input_per_mtok": 0.18, "output_per_mtok": 0.60},
    {"name": "llama3.1-8b-instruct", "input_per_mtok": 0.025, "output_per_mtok": 0.04},
)
DEDICATED_MODEL = "llama-3.3-70b-instruct"
DEDICATED = (  # name, hourly_usd, throughput_tps, prefill_tps, max_concurrency
    ("sophia-ai-core", 1.20, 1500, 12000, 32),
    ("sophia-data-pipeline", 0.90, 1100, 9000, 24),
    ("sophia-production", 0.78, 900, 8000, 16),
)
DEDICATED_NAMES = tuple(d[0] for d in DEDICATED)
# The simulated latencies of the shipped file: serverless first, then DEDICATED in order.
SIMULATION = ((350, 8), (120, 20), (150, 24), (160, 26))


def _endpoints(kind: str, base_urls: Sequence[str | None], simulated: bool) -> list[dict]:
    """The serverless endpoint and as many dedicated ones as there are URLs after the first."""
    out = [{"name": "serverless", "tier": Tier.SERVERLESS, "kind": kind, "models": list(SERVERLESS_MODELS)}]
    for (name, hourly, tps, prefill, conc), _ in zip(DEDICATED, base_urls[1:], strict=False):
        out.append(
            {
                "name": name,
                "tier": Tier.DEDICATED,
                "kind": kind,
                "model": DEDICATED_MODEL,
                "hourly_usd": hourly,
                "throughput_tps": tps,
                "prefill_tps": prefill,
                "max_concurrency": conc,
            }
        )
    for ep, url, (ttft, tpot) in zip(out, base_urls, SIMULATION, strict=False):
        if url is not None:
            ep["base_url"] = url
        if simulated:
            ep["simulation"] = {"ttft_ms": ttft, "tpot_ms": tpot, "error_rate": 0.01}
    return out


EMBEDDINGS_MODEL = "text-embedding-3-small"
CHAT_CAPABILITIES = ["chat", "tools", "json_mode", "json_schema", "vision", "audio", "logprobs", "n"]


def reference() -> dict:
    """The reference deployment on simulated backends: what the shipped sophia.toml declares."""
    data = _reference()
    serverless = data["endpoints"][0]
    serverless["models"].append(EMBEDDINGS_MODEL)
    serverless["capabilities"] = list(CHAT_CAPABILITIES)
    data["models"][2]["capabilities"] = ["chat", "tools", "json_mode", "logprobs", "n"]
    data["models"].append(
        {"name": EMBEDDINGS_MODEL, "input_per_mtok": 0.02, "output_per_mtok": 0, "capabilities": ["embeddings"]}
    )
    data["routing"]["embeddings_model"] = EMBEDDINGS_MODEL
    data["scorer"].update(score_system=True, score_history=True)
    data["cache"]["sampled"] = False
    return data


def _reference() -> dict:
    return {
        "privacy": {"store_prompts": "off"},
        "log": {"flush_interval_s": 0.1},
        "scorer": {
            "length_bands": [[10000, 0.3], [5000, 0.2], [1000, 0.1]],
            "max_tokens_over": 1000,
            "max_tokens_weight": 0.3,
            "cap": 1.0,
            "keywords": [
                {"name": "analysis", "words": ["analyze", "process", "generate", "training"], "weight": 0.1},
                {"name": "context", "words": ["remember", "context", "session", "stream"], "weight": 0.2},
            ],
        },
        "routing": {
            "complexity_threshold": 0.7,
            "cost_threshold_usd": 0.1,
            "serverless_model": SERVERLESS_MODELS[0],
            "premium_model": SERVERLESS_MODELS[1],
            "budget_model": SERVERLESS_MODELS[2],
            "dedicated_endpoint": DEDICATED_NAMES[0],
            "bulk_endpoint": DEDICATED_NAMES[1],
            "default_max_tokens": 512,
        },
        "failover": {
            "max_retries": 1,
            "retry_backoff_s": 0.2,
            "failure_threshold": 3,
            "cooldown_s": 30,
            "connect_timeout_s": 5,
            "first_token_timeout_s": 30,
            "timeout_s": 60,
        },
        "cache": {"enabled": True, "ttl_s": 3600, "max_entries": 10000},
        "endpoints": _endpoints("simulated", [None] * 4, simulated=True),
        "models": [dict(p) for p in PRICES],
        "alerts": {"timezone": "UTC", "forecast_window_hours": 24},
        "budgets": [
            {
                "name": "monthly-total",
                "scope": "global",
                "period": Period.MONTH,
                "amount_usd": 3000,
                "soft_limit": 0.8,
                "action": BudgetAction.DOWNGRADE,
                "sources": [Source.PLAYGROUND, Source.CLI, Source.API],
            },
            {
                "name": "serverless-daily",
                "scope": "tier:serverless",
                "period": Period.DAY,
                "amount_usd": 5,
                "action": BudgetAction.DOWNGRADE,
            },
        ],
    }


def simulate(data: dict, **settings) -> dict:
    """Set simulation settings (ttft_ms, tpot_ms, error_rate, reply_tokens, ...) on every endpoint."""
    for ep in data["endpoints"]:
        ep.setdefault("simulation", {}).update(settings)
    return data


def fast(data: dict | None = None) -> dict:
    """Quick, fault-free simulated endpoints (the reference deployment unless `data` is given)."""
    return simulate(reference() if data is None else data, ttft_ms=2, tpot_ms=0, error_rate=0.0)


def all_openai(data: dict, base_url: str, key_env: str | None = None) -> dict:
    """Every endpoint an OpenAI-compatible server at `base_url` (optionally with a key variable)."""
    for ep in data["endpoints"]:
        ep.update(kind="openai", base_url=base_url)
        ep.pop("simulation", None)
        if key_env:
            ep["api_key_env"] = key_env
    return data


def fast_config(**failover) -> dict:
    """The reference deployment with quick, fault-free simulated endpoints; `failover` settings merged."""
    return merge(fast(), failover=failover)


def openai_config(base_url: str, key_env: str | None = None) -> dict:
    """Every endpoint an OpenAI-compatible server at `base_url`; fast failover."""
    data = fast_config(max_retries=0, retry_backoff_s=0, connect_timeout_s=2, timeout_s=5)
    return all_openai(data, base_url, key_env)


def merge(data: dict, **overrides) -> dict:
    """TOML sections merged key by key (`failover={"max_retries": 0}`); a non-dict replaces a section."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def config_dict(serverless_url: str, dedicated_urls: Sequence[str] = ()) -> dict:
    """The reference deployment with every endpoint an OpenAI-compatible server (kind = "openai")."""
    if len(dedicated_urls) > len(DEDICATED):
        raise ValueError(f"at most {len(DEDICATED)} dedicated URLs")
    return {
        "privacy": {"store_prompts": "off"},
        # Short timeouts so a test that goes wrong fails fast instead of hanging for a minute.
        "failover": {
            "max_retries": 1,
            "retry_backoff_s": 0.2,
            "failure_threshold": 3,
            "cooldown_s": 30,
            "connect_timeout_s": 2,
            "timeout_s": 5,
        },
        "cache": {"enabled": False, "ttl_s": 3600, "max_entries": 1000},
        "endpoints": _endpoints("openai", [serverless_url, *dedicated_urls], simulated=False),
        "models": [dict(p) for p in PRICES],
    }


def make_config(serverless_url: str, dedicated_urls: Sequence[str] = (), **overrides) -> Config:
    """A validated Config (through sophia.config.parse) with the reference endpoints at these URLs.

    `dedicated_urls` go to sophia-ai-core, sophia-data-pipeline, sophia-production in that order
    (fewer URLs, fewer dedicated endpoints). Overrides as in `merge`, e.g. `cache={"enabled": True}`.
    The response cache is off unless enabled here.
    """
    return parse(merge(copy.deepcopy(config_dict(serverless_url, dedicated_urls)), **overrides))


def reference_config() -> Config:
    """The reference deployment as a validated Config (no file behind it)."""
    return parse(reference())


def write_toml(path: str | os.PathLike, data: dict) -> Path:
    """Write a configuration dict as TOML; returns the path."""
    p = Path(path)
    p.write_text(tomli_w.dumps(data), encoding="utf-8")
    return p


def drain(it) -> tuple[list, Exception | None]:
    """A backend stream's chunks, and the BackendError that ended it early (or None)."""
    from sophia.routing.backends.base import BackendError

    got: list = []
    try:
        for c in it:
            got.append(c)
    except BackendError as e:
        return got, e
    return got, None


def hello(text: str = "Say hello in one short sentence.") -> list[dict]:
    """A one-message chat."""
    return [{"role": "user", "content": text}]


# --- time, ports ----------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """Whether GET `url` answers 200 now."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- processes: the CLI, `sophia serve`, `streamlit run` ---------------------------------------------


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m sophia.cli ARGS` as a user runs it (cwd the project, the test environment)."""
    return subprocess.run(
        [sys.executable, "-m", "sophia.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Process:
    """A server in a subprocess whose output is collected; `start` waits until `health_url` answers."""

    def __init__(self, cmd: list[str], health_url: str, env: dict | None = None, timeout_s: float = 60) -> None:
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not answers(health_url):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[2:4]} exited:\n" + self.output)
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{cmd[2:4]} did not answer:\n" + self.output)
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """Whatever happened: no server is left behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        """Send `sig` and wait for the exit; its return code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(5)
        return rc


class Server(Process):
    """`sophia serve` on a free port; stop() sends a signal and waits for the graceful exit."""

    def __init__(self, cfg: Path, db: Path, *extra: str) -> None:
        self.cfg, self.db, self.port = cfg, db, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "sophia.cli", "serve", "--config", str(cfg), "--db", str(db)]
        super().__init__([*cmd, "--port", str(self.port), *extra], self.url + "/openapi.json", timeout_s=30)

    def client(self, key: str | None, **kw):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or "none", max_retries=0, timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        rc = super().stop(sig, timeout_s)
        assert "Traceback" not in self.output, self.output
        return rc


class Streamlit(Process):
    """`streamlit run app.py` on a free port with its own configuration and database."""

    def __init__(self, cfg: Path, db: Path) -> None:
        self.cfg, self.db, self.port = cfg, db, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1"]
        cmd += ["--server.port", str(self.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        cmd += ["--server.fileWatcherType", "none"]
        env = dict(os.environ, SOPHIA_CONFIG=str(cfg), SOPHIA_DB=str(db))
        super().__init__(cmd, self.url + "/_stcore/health", env=env, timeout_s=60)

    def close(self) -> None:
        try:
            self.stop(signal.SIGTERM, timeout_s=15)
        except subprocess.TimeoutExpired:
            pass


# --- the request log ------------------------------------------------------------------------------


def read_rows(writer: Writer, db: Database, where: str = "", params: Sequence = ()) -> list[dict]:
    """Every record of the `requests` table (optionally filtered), flushed first, as dicts."""
    assert writer.flush(10), "the writer did not flush in time"
    sql = "SELECT * FROM requests" + (f" WHERE {where}" if where else "") + " ORDER BY ts, request_id"
    with db.cursor() as cur:
        cur.execute(sql, list(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def log_rows(db: Path, where: str = "TRUE") -> dict[str, dict]:
    """Records by request id, once the writing process has stopped. Opened like any process opens
    the log, so that segments a writer left in the inbox (while the file was busy) are ingested first."""
    database = Database(db)
    try:
        with database.cursor() as cur:
            cur.execute(f"SELECT * FROM requests WHERE {where}")
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        database.close()
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a request was recorded twice"
    return {r["request_id"]: r for r in rows}


def frame(db_path: Path, sql: str = "SELECT * FROM requests", params: Sequence = ()) -> pd.DataFrame:
    """A query's result as a DataFrame, on a plain DuckDB connection (the file must be free)."""
    con = duckdb.connect(str(db_path))
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


BASE = datetime(2026, 1, 1)


def record(i: int, source: str = "test", cost: float = 0.000001) -> dict:
    """A synthetic, complete request record, `i` seconds after BASE."""
    return {
        "request_id": uuid.uuid4().hex,
        "ts": BASE + timedelta(seconds=i),
        "source": source,
        "prompt_chars": 100,
        "est_prompt_tokens": 25,
        "max_tokens": 100,
        "n_messages": 1,
        "keywords": [],
        "tier": Tier.SERVERLESS,
        "endpoint": "serverless",
        "model": "m",
        "complexity": 0.0,
        "breakdown": "{}",
        "estimated_cost_usd": 0.00001,
        "reason": Reason.COST_OPTIMIZED,
        "policy_reason": Reason.COST_OPTIMIZED,
        "status": Status.OK,
        "attempts": 1,
        "failover_path": ["serverless"],
        "prompt_tokens": 25,
        "completion_tokens": 10,
        "usage_estimated": False,
        "metered_cost_usd": cost,
        "amortized_cost_usd": 0.0,
        "latency_ms": 5.0,
        "ttft_ms": 1.0,
        "streamed": False,
        "cached": False,
        "simulated": True,
    }


# Runs in a child process: write N records at a steady pace, print progress lines.
WRITER_CHILD = r"""
import sys, time
sys.path.insert(0, {root!r})
from tests.helpers import record
from sophia.log.db import Database
from sophia.log.writer import Writer
db = Database({path!r})
w = Writer(db, 0.05)
n, source, pace = {n}, {source!r}, {pace}
for i in range(n):
    w.put(record(i, source))
    if i % 500 == 499:
        if {confirm}:
            w.flush()
            print(i + 1, flush=True)
        time.sleep(pace)
w.close()
db.close()
print("done", w.written, w.spilled, flush=True)
"""
