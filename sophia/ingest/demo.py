"""Realistic demo traffic, written through the same policy and cost code via the bulk path.

Arrivals follow a daily and weekly rhythm; prompts are drawn from templates (with and
without the scorer's keywords) padded to log-normal lengths; a few requests fail over or
fail. Everything is vectorized, so a million rows take seconds.

Request ids depend on the seed and the row's index alone, so writing the same seed's traffic
again adds nothing; another seed adds new traffic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sophia.config import Config
from sophia.ingest import records as bulk
from sophia.log import append as log_append
from sophia.log import fleet_store
from sophia.log.db import Database
from sophia.money import pricing
from sophia.routing import features, policy
from sophia.routing.backends import simulated
from sophia.vocab import Reason, Source, Status

TEMPLATES = (
    "Hello! How are you today?",
    "Summarize this paragraph in two sentences.",
    "Translate the following email into French.",
    "Write a haiku about autumn.",
    "What is the capital of Australia?",
    "Fix the bug in this Python function.",
    "Analyze the quarterly sales figures below and explain the trend.",
    "Process these log lines and list the failing services.",
    "Generate ten test cases for the parser described here.",
    "Remember the context of our session and continue the story.",
    "Given the context above, analyze the stream of events and generate a report.",
    "Plan the training schedule for the model and process the evaluation results.",
)
# Relative frequency of each template: simple questions dominate, as in real traffic.
WEIGHTS = np.array([14, 12, 10, 6, 10, 9, 6, 5, 5, 4, 3, 2], dtype=float)
MAX_TOKENS = np.array([64, 128, 256, 512, 1024, 2048, 4096])
MAX_TOKENS_P = np.array([0.08, 0.2, 0.25, 0.27, 0.12, 0.06, 0.02])
HOURLY = np.array([2, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 11, 12, 12, 11, 9, 7, 6, 5, 4, 3, 2], dtype=float)
WEEKDAY = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.45, 0.4])
# The ranges of `sophia demo`'s options (a million rows take seconds and about a GB).
MAX_REQUESTS = 10_000_000
MAX_DAYS = 3_650
MAX_SEED = 2**32 - 1


BATCH = 250_000  # rows per generated part: memory stays bounded whatever --requests says


def batches(
    cfg: Config, n: int, days: int, seed: int = 0, end: datetime | None = None, size: int = BATCH
) -> Iterator[pa.Table]:
    """`n` demo records in parts of at most `size` rows, each over the whole period (so each is a
    sample of the same traffic), with the ids `generate` would give row by row. A run of up to
    `size` requests is exactly `generate`'s."""
    check(n, days, seed)
    end = end or datetime.now(UTC).replace(tzinfo=None)
    for part, offset in enumerate(range(0, n, size)):
        yield generate(cfg, min(size, n - offset), days, seed, end, part=part, offset=offset)


def generate(
    cfg: Config, n: int, days: int, seed: int = 0, end: datetime | None = None, *, part: int = 0, offset: int = 0
) -> pa.Table:
    """`n` demo records over the `days` days before `end` (default now, UTC); `part` and
    `offset` make the next part of a larger run (`batches`): its own random stream, later ids."""
    check(n, days, seed)
    rng = np.random.default_rng(seed if part == 0 else [seed, part])
    end = end or datetime.now(UTC).replace(tzinfo=None)
    start = end - timedelta(days=days)
    # Arrivals: pick minutes with weight = hour-of-day rhythm x day-of-week rhythm.
    minutes = np.arange(days * 24 * 60)
    t = np.array(start, dtype="datetime64[us]") + minutes.astype("timedelta64[m]")
    hours = (t.astype("datetime64[h]").astype(np.int64)) % 24
    weekday = (t.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    w = HOURLY[hours] * WEEKDAY[weekday]
    picked = rng.choice(len(minutes), size=n, p=w / w.sum())
    ts = np.sort(t[picked] + rng.integers(0, 60_000_000, n).astype("timedelta64[us]"))

    tmpl = rng.choice(len(TEMPLATES), size=n, p=WEIGHTS / WEIGHTS.sum())
    vocab = features.vocabulary(cfg.scorer)
    found = [features.features_of_text(s, 1, 1, vocab).keywords for s in TEMPLATES]
    keywords = [found[i] for i in tmpl]
    # Prompt lengths: log-normal around 600 characters, a long tail past 10,000.
    chars = np.maximum(
        np.array([len(s) for s in TEMPLATES])[tmpl], rng.lognormal(np.log(600), 1.1, n).astype(np.int64)
    ).clip(max=60_000)
    max_tokens = rng.choice(MAX_TOKENS, size=n, p=MAX_TOKENS_P)
    est_tokens = features.estimate_tokens(chars)
    # keyword counts per template, then per row (the policy's own counting)
    counts = {k: v[tmpl] for k, v in policy.group_counts_from_keywords(found, cfg.scorer).items()}
    d = policy.decide_table(chars, est_tokens, max_tokens, counts, cfg)

    tier, endpoint, model = d["tier"].copy(), d["endpoint"].copy(), d["model"].copy()
    reason = d["reason"].copy()
    # A few failovers (first choice failed, the next in the chain served) and errors.
    fail = rng.random(n)
    failover = fail < 0.02
    error = (fail >= 0.02) & (fail < 0.025)
    paths = [[e] for e in endpoint]
    for i in np.flatnonzero(failover):
        chain = policy.failover_chain(tier[i], endpoint[i], model[i], cfg)
        if len(chain) > 1:
            nxt_ep, nxt_model = chain[1]
            paths[i] = [endpoint[i], nxt_ep]
            endpoint[i], model[i] = nxt_ep, nxt_model
            tier[i] = cfg.endpoint(nxt_ep).tier
            reason[i] = Reason.FAILOVER
    moved = reason == Reason.FAILOVER
    status = np.where(error, Status.ERROR, Status.OK).astype(object)

    # Usage: prompt tokens near the estimate, replies log-normal, capped by max_tokens.
    prompt_tokens = np.maximum(1, (est_tokens * rng.normal(1.0, 0.08, n)).astype(np.int64))
    completion = np.minimum(max_tokens, np.maximum(1, rng.lognormal(np.log(180), 0.9, n).astype(np.int64)))
    prompt_tokens = np.where(error, 0, prompt_tokens)
    completion = np.where(error, 0, completion)
    metered, amortized = pricing.costs_for(cfg, endpoint, model, prompt_tokens, completion)
    latency = np.zeros(n)
    slow = rng.random(n) < 0.03
    for ep in cfg.endpoints:
        m = endpoint == ep.name
        latency[m] = simulated.latency_ms(ep.simulation, completion[m], slow[m]) * rng.normal(1, 0.1, m.sum()).clip(0.5)
    ttft = np.array([cfg.endpoint(e).simulation.ttft_ms for e in endpoint]) * rng.normal(1, 0.15, n).clip(0.3)
    latency = np.maximum(latency, ttft)
    breakdowns = bulk.breakdowns(chars, max_tokens, counts, cfg)
    ids = request_ids(seed, n, offset)
    cols = {
        "request_id": ids,
        "ts": ts,
        "source": np.full(n, Source.DEMO, dtype=object),
        "policy_version": None,
        "prompt_chars": chars,
        "est_prompt_tokens": est_tokens,
        "max_tokens": max_tokens,
        "n_messages": np.ones(n, dtype=np.int32),
        "keywords": [list(k) for k in keywords],
        "tier": tier,
        "endpoint": endpoint,
        "model": model,
        "complexity": d["complexity"],
        "breakdown": breakdowns,
        "estimated_cost_usd": d["estimated_cost_usd"],
        "reason": reason,
        "policy_reason": d["reason"],
        "status": status,
        "error_kind": np.where(error, "http_status", None).astype(object),
        "error": np.where(error, "every endpoint failed (simulated HTTP 503)", None).astype(object),
        # Why the first endpoint failed, from the same draw (no new one: a seed's traffic stays the same).
        "failover_cause": np.select(
            [error, moved & (fail < 0.012), moved & (fail < 0.017), moved],
            ["http_status", "http_status", "timeout", "connect"],
            None,
        ).astype(object),
        "attempts": np.array([len(p) for p in paths]),
        "failover_path": paths,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "usage_estimated": np.zeros(n, dtype=bool),
        "metered_cost_usd": metered,
        "amortized_cost_usd": amortized,
        "latency_ms": latency.round(1),
        "ttft_ms": ttft.round(1),
        "streamed": rng.random(n) < 0.6,
        "cached": np.zeros(n, dtype=bool),
        "simulated": np.ones(n, dtype=bool),
    }
    return bulk.to_table(cols, n)


def check(n: int, days: int, seed: int) -> None:
    """The documented ranges, in one line for the first value outside its range."""
    for name, v, hi in (("--requests", n, MAX_REQUESTS), ("--days", days, MAX_DAYS)):
        if not 1 <= v <= hi:
            raise ValueError(f"demo {name} {v} is not allowed: expected a whole number from 1 to {hi:,}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"demo --seed {seed} is not allowed: expected a whole number from 0 to {MAX_SEED:,}")


def request_ids(seed: int, n: int, offset: int = 0) -> list[str]:
    """32 hex digits each, a function of the seed and the row's index alone: the same seed gives
    the same ids whatever the other options and the time of the run. The index goes through a
    bijective 64-bit mix under two keys of the seed, so ids are distinct and look random."""
    keys = np.frombuffer(hashlib.sha256(f"sophia-demo-seed-{seed}".encode()).digest()[:16], dtype=">u8")
    index = np.arange(offset, offset + n, dtype=np.uint64)
    words = np.stack([_mix(index + np.uint64(k)) for k in keys], axis=1)
    raw = words.astype(">u8").tobytes().hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer, a bijection of 64-bit words (arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def summary(written: int, requested: int, seed: int, days: int, where: str) -> str:
    """What a run of `sophia demo` did, saying so when the seed's traffic was already logged."""
    if written == 0:
        return f"the demo traffic of seed {seed} is already in {where}: nothing added (another --seed adds new traffic)"
    s = f"wrote {written:,} demo requests over {days} days into {where} (source '{Source.DEMO}')"
    if written < requested:
        s += f"; {requested - written:,} of seed {seed}'s requests were already in the log"
    return s


def write(db: Database, table: pa.Table, policy_version: int | None = None, cfg: Config | None = None) -> int:
    """Append a whole table in one statement: the bulk path. With `cfg`, the configured fleet's
    GPU-hours are charged over the demo traffic's span (it stands for a fleet that served it)."""
    if policy_version is not None:
        table = table.set_column(
            table.schema.get_field_index("policy_version"),
            "policy_version",
            pa.array(np.full(table.num_rows, policy_version), type=pa.int32()),
        )
    with db.cursor() as cur:
        if cfg is not None and table.num_rows:
            first, last = pc.min(table["ts"]).as_py(), pc.max(table["ts"]).as_py()
            fleet_store.charge_span(cur, cfg, Source.DEMO.value, first, last + timedelta(microseconds=1))
        table = _unlogged(cur, table)
        return log_append.append(cur, table) if table.num_rows else 0


def _unlogged(cur, table: pa.Table) -> pa.Table:
    """The rows whose id the log does not hold. A seed's requests come again with other times
    (the traffic ends now), and the log's own check looks only within the batch's time span."""
    cur.register("_demo_ids", table.select(["request_id"]))
    try:
        held = cur.execute(
            "SELECT request_id FROM requests WHERE source = ? AND request_id IN (SELECT request_id FROM _demo_ids)",
            [Source.DEMO.value],
        ).fetchnumpy()["request_id"]
    finally:
        cur.unregister("_demo_ids")
    if len(held) == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table["request_id"], value_set=pa.array(held, pa.string()))))
