"""Routing decision speed (features + score + policy) and the policy over 1,000,000 rows.

Targets (issue 2): a 1,000-character prompt <= 50 us median; 10,000 characters <= 200 us;
the policy over a 1,000,000-record table <= 0.5 s. Reported as medians, with a baseline
(a bare `str.lower()` + length of the same prompt) measured in the same run.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sophia import config
from sophia.routing import (
    features,
    policy,
)

CFG = config.load(Path(__file__).resolve().parents[1] / "sophia.toml")


def median_us(fn, n=2000, rounds=7) -> float:
    per = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        per.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(per)


def prompt(chars: int) -> list[dict]:
    base = "Please analyze the following session context and summarize it. "
    text = (base * (chars // len(base) + 1))[:chars]
    return [{"role": "user", "content": text}]


def main() -> None:
    print("routing decision (features + score + policy), median of 7 rounds")
    for chars, target in ((1_000, 50), (10_000, 200)):
        msgs = prompt(chars)
        decide = lambda msgs=msgs: policy.decide(features.extract(msgs, 256, CFG.scorer, 512), CFG)  # noqa: E731
        base = median_us(lambda msgs=msgs: len(msgs[0]["content"].lower()))
        us = median_us(decide)
        print(
            f"  {chars:>6,} chars: {us:7.1f} us  (target <= {target} us; baseline lower() {base:.1f} us, "
            f"ratio {us / base:.1f}x)  {'OK' if us <= target else 'OVER'}"
        )

    n = 1_000_000
    rng = np.random.default_rng(0)
    chars = rng.lognormal(np.log(600), 1.2, n).astype(np.int64)
    est = -(-chars // 4)
    mt = rng.choice([64, 256, 512, 1024, 2048], n)
    counts = {g.name: rng.integers(0, 3, n) for g in CFG.scorer.keyword_groups}
    times = []
    for _ in range(5):
        t = time.perf_counter()
        out = policy.decide_table(chars, est, mt, counts, CFG)
        times.append(time.perf_counter() - t)
    base = []
    for _ in range(5):
        t = time.perf_counter()
        _ = (chars > 1000) & (mt > 1000)
        base.append(time.perf_counter() - t)
    med = statistics.median(times)
    split = {k: int(v) for k, v in zip(*np.unique(out["reason"], return_counts=True), strict=True)}
    print(
        f"policy over {n:,} rows: median {med:.3f} s (target <= 0.5 s; baseline two comparisons "
        f"{statistics.median(base) * 1000:.1f} ms)  {'OK' if med <= 0.5 else 'OVER'}"
    )
    print(f"  decisions: {split}")


if __name__ == "__main__":
    main()
