"""The price catalog and every cost computation: money has one home.

Functions take scalars or numpy arrays alike, so live routing, demo traffic, replay and the
simulator compute costs with the same code. Metered costs are rounded to 1e-9 USD, the
precision the log keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .config import Config, Endpoint, ModelPrice

PER_MTOK = 1_000_000
DIGITS = 9  # metered costs are exact to 1e-9 USD


@dataclass(frozen=True)
class PriceCatalog:
    models: dict[str, ModelPrice]
    endpoints: dict[str, Endpoint]

    @classmethod
    def from_config(cls, cfg: Config) -> PriceCatalog:
        return cls({m.name: m for m in cfg.models}, {e.name: e for e in cfg.endpoints})

    def model(self, name: str) -> ModelPrice:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"model {name!r} has no price in the catalog") from None

    def input_prices(self, names) -> np.ndarray:
        """Per-1M input prices for an array of model names (0 where unpriced, e.g. dedicated)."""
        return _lookup(names, {k: m.input_per_mtok for k, m in self.models.items()})

    def output_prices(self, names) -> np.ndarray:
        return _lookup(names, {k: m.output_per_mtok for k, m in self.models.items()})


def price_of(cfg: Config, model: str) -> ModelPrice:
    for m in cfg.models:
        if m.name == model:
            return m
    raise KeyError(f"model {model!r} has no price: add a [[models]] table for it")


def _lookup(names, table: dict[str, float]) -> np.ndarray:
    names = np.asarray(names, dtype=object)
    keys = np.array(list(table) or [""], dtype=object)
    vals = np.array(list(table.values()) or [0.0], dtype=float)
    out = np.zeros(len(names), dtype=float)
    for k, v in zip(keys, vals, strict=True):  # one pass per model, not per row
        out[names == k] = v
    return out


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
    out = np.round(np.multiply(secs, endpoint.hourly_usd / 3600.0), DIGITS)
    return float(out) if np.ndim(out) == 0 else out


def fixed_cost(endpoints, start: datetime, end: datetime) -> float:
    """GPU-hours of every dedicated endpoint between start and end, busy or idle."""
    hours = max((end - start).total_seconds(), 0.0) / 3600.0
    return round(sum(e.hourly_usd for e in endpoints if e.tier == "dedicated") * hours, DIGITS)


def hourly_fixed(endpoints) -> float:
    return sum(e.hourly_usd for e in endpoints if e.tier == "dedicated")


def cost_of(cfg: Config, endpoint: str, model: str, prompt_tokens, completion_tokens):
    """(metered, amortized) USD of requests all served by one endpoint and model."""
    ep = next(e for e in cfg.endpoints if e.name == endpoint)
    zeros = np.zeros(np.shape(prompt_tokens))
    if ep.tier == "serverless":
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
        for model in ep.models if ep.tier == "serverless" else ep.models[:1]:
            m = on_ep & (models == model) if ep.tier == "serverless" else on_ep
            if m.any():
                metered[m], amortized[m] = cost_of(cfg, ep.name, model, prompt_tokens[m], completion_tokens[m])
    return metered, amortized
