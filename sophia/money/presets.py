"""Published prices the cost simulator offers as presets, read from `presets.toml` beside this module.

GPU presets are per GPU-hour with assumed performance; serverless presets are per 1M input and
output tokens for the primary and premium models; `reference` is the reference deployment's
published before/after table.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any


@cache
def _data() -> dict[str, Any]:
    return tomllib.loads(resources.files("sophia.money").joinpath("presets.toml").read_text(encoding="utf-8"))


def gpu_presets() -> dict[str, dict]:
    """Label -> name, hourly_usd, throughput_tps, prefill_tps, max_concurrency, itl_ms, source."""
    return {g["label"]: {k: v for k, v in g.items() if k != "label"} for g in _data()["gpu"]}


def serverless_presets() -> dict[str, dict]:
    """Label -> primary (input, output USD per 1M tokens), premium (the same), source."""
    return {
        s["label"]: {"primary": tuple(s["primary"]), "premium": tuple(s["premium"]), "source": s["source"]}
        for s in _data()["serverless"]
    }


def reference_table() -> dict[str, dict[str, float]]:
    """before/after -> monthly_cost_usd, requests_per_s, latency_ms, as published."""
    return {k: dict(v) for k, v in _data()["reference"].items()}
