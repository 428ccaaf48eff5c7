"""Shared fixtures: fake OpenAI-compatible servers, configs pointing at them, a tmp request log."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import pytest

from sophia.config import Config, parse
from sophia.log.db import Database
from sophia.log.writer import Writer
from tests.fakeopenai import FakeOpenAI

SERVERLESS_MODELS = (
    "llama-4-scout-17b-16e-instruct",
    "llama-4-maverick-17b-128e-instruct-fp8",
    "llama3.1-8b-instruct",
)
PRICES = (  # as in sophia.toml; tests read them back from the Config, never from here
    {"name": "llama-4-scout-17b-16e-instruct", "input_per_mtok": 0.08, "output_per_mtok": 0.30},
    {"name": "llama-4-maverick-17b-128e-instruct-fp8", "input_per_mtok": 0.18, "output_per_mtok": 0.60},
    {"name": "llama3.1-8b-instruct", "input_per_mtok": 0.025, "output_per_mtok": 0.04},
)
DEDICATED_MODEL = "llama-3.3-70b-instruct"
DEDICATED = (  # name, hourly_usd, throughput_tps, prefill_tps, max_concurrency (sophia.toml)
    ("sophia-ai-core", 1.20, 1500, 12000, 32),
    ("sophia-data-pipeline", 0.90, 1100, 9000, 24),
    ("sophia-production", 0.78, 900, 8000, 16),
)
DEDICATED_NAMES = tuple(d[0] for d in DEDICATED)


def config_dict(serverless_url: str, dedicated_urls: Sequence[str] = ()) -> dict:
    """The reference deployment as a parsed-TOML dict, every endpoint kind = "openai"."""
    if len(dedicated_urls) > len(DEDICATED):
        raise ValueError(f"at most {len(DEDICATED)} dedicated URLs")
    endpoints = [
        {
            "name": "serverless",
            "tier": "serverless",
            "kind": "openai",
            "base_url": serverless_url,
            "models": list(SERVERLESS_MODELS),
        }
    ]
    for (name, hourly, tps, prefill, conc), url in zip(DEDICATED, dedicated_urls, strict=False):
        endpoints.append(
            {
                "name": name,
                "tier": "dedicated",
                "kind": "openai",
                "base_url": url,
                "model": DEDICATED_MODEL,
                "hourly_usd": hourly,
                "throughput_tps": tps,
                "prefill_tps": prefill,
                "max_concurrency": conc,
            }
        )
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
        "endpoints": endpoints,
        "models": [dict(p) for p in PRICES],
    }


def make_config(serverless_url: str, dedicated_urls: Sequence[str] = (), **overrides) -> Config:
    """A validated Config (through sophia.config.parse) with the reference endpoints at these URLs.

    `dedicated_urls` go to sophia-ai-core, sophia-data-pipeline, sophia-production in that order
    (fewer URLs, fewer dedicated endpoints). Overrides are TOML sections merged key by key, e.g.
    `failover={"max_retries": 0}`, `cache={"enabled": True}`, `privacy={"store_prompts": "on"}`;
    a non-dict override replaces the section. The response cache is off unless enabled here.
    """
    data = copy.deepcopy(config_dict(serverless_url, dedicated_urls))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return parse(data)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def read_rows(writer: Writer, db: Database, where: str = "", params: Sequence = ()) -> list[dict]:
    """Every record of the `requests` table (optionally filtered), flushed first, as dicts."""
    assert writer.flush(10), "the writer did not flush in time"
    sql = "SELECT * FROM requests" + (f" WHERE {where}" if where else "") + " ORDER BY ts, request_id"
    with db.cursor() as cur:
        cur.execute(sql, list(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(tmp_path):
    """(db, writer) on a fresh DuckDB file; everything is flushed and closed afterwards."""
    db = Database(tmp_path / "t.duckdb")
    writer = Writer(db, flush_interval_s=0.01)
    yield db, writer
    writer.close()
    db.close()
    assert not writer.errors, writer.errors
