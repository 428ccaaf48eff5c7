"""The price catalog and every cost computation: money has one home.

Functions take scalars or numpy arrays alike, so live routing, demo traffic, replay and the
simulator compute costs with the same code. Metered costs are rounded to 1e-9 USD, the
precision the log keeps.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from sophia.config import Config, Endpoint, ModelPrice
from sophia.money.periods import HOUR_S
from sophia.vocab import Tier

PER_MTOK = 1_000_000
DIGITS = 9  # metered costs are exact to 1e-9 USD


def price_of(cfg: Config, model: str) -> ModelPrice:
    for m in cfg.models:
        if m.name == model:
            return m
    raise KeyError(f"model {model!r} has no price: add a [[models]] table for it")


def _round(x):
    """Round to 1e-9 the way numpy does (half to even on x * 1e9), for scalars and arrays alike."""
    if isinstance(x, np.ndarray):
        return np.round(x, DIGITS)
    return round(float(x) * 10**DIGITS) / 10**DIGITS


def metered_cost(prompt_tokens, completion_tokens, input_per_mtok, output_per_mtok):
    """Per-token cost in USD, rounded to 1e-9. Scalars or arrays."""
    if isinstance(prompt_tokens, np.ndarray) or isinstance(completion_tokens, np.ndarray):
        raw = (np.multiply(prompt_tokens, input_per_mtok) + np.multiply(completion_tokens, output_per_mtok)) / PER_MTOK
        return _round(raw)
    # The request path: plain floats, no numpy call overhead.
    return _round((prompt_tokens * input_per_mtok + completion_tokens * output_per_mtok) / PER_MTOK)


def at_price(prompt_tokens, completion_tokens, price: ModelPrice):
    """Tokens at one model's prices: what they cost, or would have cost there (a baseline)."""
    return metered_cost(prompt_tokens, completion_tokens, price.input_per_mtok, price.output_per_mtok)


def at_price_sql(
    price: ModelPrice, prompt_col: str = "prompt_tokens", completion_col: str = "completion_tokens"
) -> str:
    """`at_price` as SQL for aggregates in DuckDB, the prices written in: they are finite numbers
    the configuration checked, and a literal needs no parameter kept in step."""
    inp, outp = float(price.input_per_mtok), float(price.output_per_mtok)
    return f"(({prompt_col}) * {inp!r} + ({completion_col}) * {outp!r}) / {PER_MTOK}"


def estimated_cost(prompt_tokens, max_tokens, price: ModelPrice):
    """The decision's cost estimate: estimated prompt tokens and `max_tokens` at `price`."""
    return metered_cost(prompt_tokens, max_tokens, price.input_per_mtok, price.output_per_mtok)


def gpu_seconds(prompt_tokens, completion_tokens, throughput_tps, prefill_tps=0.0):
    """A request's share of a server's GPU time at its throughput at saturation."""
    out = np.divide(completion_tokens, throughput_tps)
    if np.any(np.asarray(prefill_tps) > 0):
        out = out + np.divide(prompt_tokens, np.where(np.asarray(prefill_tps) > 0, prefill_tps, np.inf))
    return float(out) if np.ndim(out) == 0 else out


def amortized_cost(prompt_tokens, completion_tokens, endpoint: Endpoint):
    """A dedicated request's share of its endpoint's hourly price."""
    secs = gpu_seconds(prompt_tokens, completion_tokens, endpoint.throughput_tps, endpoint.prefill_tps)
    out = np.round(np.multiply(secs, endpoint.hourly_usd / HOUR_S), DIGITS)
    return float(out) if np.ndim(out) == 0 else out


def charged_hours(start: datetime, end: datetime, *, whole_hours: bool = False) -> float:
    """GPU hours charged over [start, end): exact, or every started hour in full (how budgets
    and the spend export charge the current period, so that they never run behind the bill)."""
    hours = max((end - start).total_seconds(), 0.0) / HOUR_S
    return float(math.ceil(hours - 1e-9)) if whole_hours else hours


def fixed_cost(endpoints, start: datetime, end: datetime, *, whole_hours: bool = False) -> float:
    """GPU-hours of every dedicated endpoint between start and end, busy or idle."""
    return round(hourly_fixed(endpoints) * charged_hours(start, end, whole_hours=whole_hours), DIGITS)


def hourly_fixed(endpoints) -> float:
    return sum(e.hourly_usd for e in endpoints if e.tier == Tier.DEDICATED)


def cost_of(cfg: Config, endpoint: str, model: str, prompt_tokens, completion_tokens):
    """(metered, amortized) USD of requests all served by one endpoint and model."""
    ep = cfg.endpoint(endpoint)
    # One request (the live path) stays in plain floats.
    arrays = isinstance(prompt_tokens, np.ndarray) or isinstance(completion_tokens, np.ndarray)
    zeros = np.zeros(np.shape(prompt_tokens)) if arrays else 0.0
    if ep.tier == Tier.SERVERLESS:
        price = price_of(cfg, model)
        return metered_cost(prompt_tokens, completion_tokens, price.input_per_mtok, price.output_per_mtok), zeros
    return zeros, amortized_cost(prompt_tokens, completion_tokens, ep)


def costs_for(cfg: Config, endpoints, models, prompt_tokens, completion_tokens) -> tuple[np.ndarray, np.ndarray]:
    """(metered, amortized) USD for arrays of requests served by `endpoints` with `models`.

    Serverless rows are metered per token at their model's price; dedicated rows carry their
    share of the endpoint's GPU time. One pass per (endpoint, model) pair, never per row.
    """
    endpoints = np.asarray(endpoints, dtype=object)
    models = np.asarray(models, dtype=object)
    prompt_tokens = np.asarray(prompt_tokens)
    completion_tokens = np.asarray(completion_tokens)
    metered = np.zeros(len(endpoints))
    amortized = np.zeros(len(endpoints))
    for ep in cfg.endpoints:
        on_ep = endpoints == ep.name
        if not on_ep.any():
            continue
        for model in ep.models if ep.tier == Tier.SERVERLESS else ep.models[:1]:
            m = on_ep & (models == model) if ep.tier == Tier.SERVERLESS else on_ep
            if m.any():
                metered[m], amortized[m] = cost_of(cfg, ep.name, model, prompt_tokens[m], completion_tokens[m])
    return metered, amortized
