"""Helpers for request-log tests: synthetic records and child processes that write them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

BASE = datetime(2026, 1, 1)


def record(i: int, source: str = "test", cost: float = 0.000001) -> dict:
    return {
        "request_id": uuid.uuid4().hex,
        "ts": BASE + timedelta(seconds=i),
        "source": source,
        "prompt_chars": 100,
        "est_prompt_tokens": 25,
        "max_tokens": 100,
        "n_messages": 1,
        "keywords": [],
        "tier": "serverless",
        "endpoint": "serverless",
        "model": "m",
        "complexity": 0.0,
        "breakdown": "{}",
        "estimated_cost_usd": 0.00001,
        "reason": "cost-optimized",
        "policy_reason": "cost-optimized",
        "status": "ok",
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
from tests.logutil import record
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
