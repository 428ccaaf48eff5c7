"""The page's presets: server types (configured endpoints, then published GPUs) and serverless prices.

Each preset fills editable fields; `page_fleet` turns the fields back into a `Fleet`.
"""

from __future__ import annotations

from sophia.config import Config
from sophia.money import presets
from sophia.sim import fleet as fleet_mod
from sophia.sim.fleet import Fleet, GPUPool
from sophia.vocab import Tier

CONFIGURED_PRICES = "Configured (sophia.toml)"


def gpu_choices(cfg: Config, usd=lambda x: f"${x:,.2f}") -> dict[str, dict]:
    """Label -> the GPU fields (name, hourly_usd, throughput_tps, prefill_tps, max_concurrency, itl_ms,
    source, model): the configured dedicated endpoints first, then the published presets."""
    out: dict[str, dict] = {}
    for e in cfg.tier_endpoints(Tier.DEDICATED):
        p = fleet_mod.pool_from_endpoint(e)
        out[f"{e.name} · configured ({usd(e.hourly_usd)}/h)"] = dict(
            name=p.name,
            hourly_usd=p.hourly_usd,
            throughput_tps=p.throughput_tps,
            prefill_tps=p.prefill_tps,
            max_concurrency=p.slots,
            itl_ms=p.itl_ms,
            source="sophia.toml",
            model=e.models[0],
        )
    for label, f in presets.gpu_presets().items():
        out[label] = f | {"model": fleet_mod.DEDICATED_MODEL}
    return out


def serverless_choices(cfg: Config) -> dict[str, dict]:
    """Label -> primary and premium (USD per 1M input, output tokens), source: the configured prices
    first, then the published presets."""
    primary, premium = (
        next(m for m in cfg.models if m.name == name)
        for name in (cfg.routing.serverless_model, cfg.routing.premium_model)
    )
    return {
        CONFIGURED_PRICES: dict(
            primary=(primary.input_per_mtok, primary.output_per_mtok),
            premium=(premium.input_per_mtok, premium.output_per_mtok),
            source="sophia.toml",
        ),
        **presets.serverless_presets(),
    }


def serverless_prices(cfg: Config, primary: tuple[float, float], premium: tuple[float, float]) -> dict:
    """The price overrides of a run: model -> (input, output) USD per 1M tokens."""
    return {cfg.routing.serverless_model: primary, cfg.routing.premium_model: premium}


def page_fleet(
    gpu: dict,
    gpus: int,
    hourly_usd: float,
    throughput_tps: float,
    prefill_tps: float,
    max_concurrency: int,
    itl_ms: float,
    other_monthly: dict[str, float],
    serverless_ttft_ms: float,
    serverless_tpot_ms: float,
    rate_limit_rpm: float,
) -> Fleet:
    """`gpus` servers of one type (named and serving the model of the preset `gpu`) with these fields,
    the other fixed costs that are not 0, and the serverless latency and rate limit (0: none)."""
    pool = GPUPool(
        name=gpu["name"],
        count=int(gpus),
        hourly_usd=hourly_usd,
        throughput_tps=throughput_tps,
        prefill_tps=prefill_tps,
        max_concurrency=int(max_concurrency),
        itl_ms=itl_ms,
        model=gpu["model"],
    )
    return Fleet(
        (pool,),
        other_monthly=tuple((k, v) for k, v in other_monthly.items() if v != 0),
        serverless_ttft_ms=serverless_ttft_ms,
        serverless_tpot_ms=serverless_tpot_ms,
        rate_limit_rpm=rate_limit_rpm if rate_limit_rpm != 0 else None,
        label=f"{int(gpus)} × {gpu['name']}",
    ).check()
