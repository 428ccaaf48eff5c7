"""The fleet the simulator sizes: pools of dedicated GPU servers, other fixed costs, the serverless tier.

A `GPUPool` is `count` identical servers. Each serves up to `max_concurrency` requests at once
(continuous batching); a request's inter-token latency is the unloaded one (`itl_ms`) plus a
step for every other request in the batch, so that a full batch produces `throughput_tps`
output tokens per second:

    itl(n) = itl0 + (n - 1) · alpha,   alpha = max(0, (B / T - itl0) / (B - 1))

(B = max_concurrency, T = throughput_tps). When B / itl0 < T the throughput cannot be reached
and the server saturates at B / itl0 instead (`saturation_tps`).

Prices are whatever the configuration (or the page's editable presets) says; the costs are
computed by `sophia.money.pricing` from the `Endpoint` each pool stands for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from sophia.config import Config, Endpoint, ModelPrice, Simulation
from sophia.vocab import Tier

DEDICATED_MODEL = "dedicated-model"


def _num(value, what: str, fix: str, lo: float = 0.0, lo_open: bool = False, hi: float | None = None) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
        raise ValueError(f"{what} must be a number {bound} (got {value!r}): {fix}")
    return float(value)


@dataclass(frozen=True)
class GPUPool:
    name: str
    count: int = 1
    hourly_usd: float = 0.0  # per server, busy or idle
    throughput_tps: float = 0.0  # output tokens/s per server at saturation
    prefill_tps: float = 0.0  # prompt tokens/s per server (0: prefill takes no time)
    max_concurrency: int = 0  # requests in one batch (0: the knee, throughput × unloaded ITL)
    itl_ms: float = 20.0  # unloaded inter-token latency
    model: str = DEDICATED_MODEL

    def check(self) -> GPUPool:
        n = self.name or "the GPU pool"
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"{n}: the number of GPUs must be a whole number >= 0 (got {self.count!r})")
        if self.count:
            _num(
                self.hourly_usd,
                f"{n}: the hourly price",
                "enter the provider's price per GPU-hour (dedicated GPUs are never free)",
                lo_open=True,
            )
            _num(
                self.throughput_tps,
                f"{n}: the throughput",
                "enter the output tokens per second one server produces at saturation",
                lo_open=True,
            )
        else:
            _num(self.hourly_usd, f"{n}: the hourly price", "enter the provider's price per GPU-hour")
            _num(self.throughput_tps, f"{n}: the throughput", "enter the output tokens per second at saturation")
        _num(self.prefill_tps, f"{n}: the prefill speed", "enter prompt tokens per second, or 0 to ignore prefill")
        if (
            isinstance(self.max_concurrency, bool)
            or not isinstance(self.max_concurrency, int)
            or self.max_concurrency < 0
        ):
            raise ValueError(
                f"{n}: the maximum concurrency must be a whole number >= 1, or 0 for the batch size "
                f"where the throughput is reached (got {self.max_concurrency!r})"
            )
        _num(
            self.itl_ms,
            f"{n}: the unloaded inter-token latency",
            "enter milliseconds per output token at batch size 1",
            lo_open=True,
            hi=60_000,
        )
        return self

    # --- the service-time model ------------------------------------------------------

    @property
    def itl0_s(self) -> float:
        return self.itl_ms / 1000.0

    @property
    def slots(self) -> int:
        """Requests one server holds in its batch."""
        if self.max_concurrency:
            return self.max_concurrency
        return max(1, round(self.throughput_tps * self.itl0_s)) if self.throughput_tps > 0 else 1

    @property
    def alpha_s(self) -> float:
        """Seconds the inter-token latency grows for each other request in the batch."""
        b = self.slots
        if b <= 1 or self.throughput_tps <= 0:
            return 0.0
        return max(0.0, (b / self.throughput_tps - self.itl0_s) / (b - 1))

    def itl_s(self, batch):
        return self.itl0_s + (batch - 1) * self.alpha_s

    @property
    def saturation_tps(self) -> float:
        """Output tokens/s of one server with a full batch."""
        return self.slots / self.itl_s(self.slots)

    @property
    def prefill_s_per_token(self) -> float:
        return 1.0 / self.prefill_tps if self.prefill_tps > 0 else 0.0

    @property
    def reachable(self) -> bool:
        return self.saturation_tps >= self.throughput_tps * (1 - 1e-9)

    def endpoint(self) -> Endpoint:
        """The dedicated endpoint one server of this pool stands for (prices, policy targets)."""
        return Endpoint(
            name=self.name,
            tier=Tier.DEDICATED,
            kind="simulated",
            models=(self.model,),
            hourly_usd=self.hourly_usd,
            throughput_tps=self.throughput_tps,
            prefill_tps=self.prefill_tps,
            max_concurrency=self.slots,
            simulation=Simulation(ttft_ms=0.0, tpot_ms=self.itl_ms),
        )

    def with_count(self, n: int) -> GPUPool:
        return replace(self, count=n)


@dataclass(frozen=True)
class Fleet:
    """Dedicated pools, other fixed monthly costs, and the serverless tier's latency and rate limit."""

    pools: tuple[GPUPool, ...] = ()
    other_monthly: tuple[tuple[str, float], ...] = ()  # (line item, USD per month): servers, storage, network
    serverless_ttft_ms: float | None = None  # None: the configured serverless endpoint's simulation
    serverless_tpot_ms: float | None = None
    rate_limit_rpm: float | None = None  # serverless requests per minute (None: no limit)
    label: str = field(default="", compare=False)

    def check(self) -> Fleet:
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"GPU pools need distinct names (got {names}): rename one")
        for p in self.pools:
            p.check()
        for item, usd in self.other_monthly:
            _num(usd, f"the fixed cost {item!r}", "enter USD per month, 0 or more")
        if self.serverless_ttft_ms is not None:
            _num(self.serverless_ttft_ms, "the serverless time to first token", "enter milliseconds, 0 or more")
        if self.serverless_tpot_ms is not None:
            _num(self.serverless_tpot_ms, "the serverless time per output token", "enter milliseconds, 0 or more")
        if self.rate_limit_rpm is not None:
            _num(
                self.rate_limit_rpm,
                "the serverless rate limit",
                "enter requests per minute, or leave it empty for no limit",
                lo_open=True,
            )
        return self

    @property
    def gpus(self) -> int:
        return sum(p.count for p in self.pools)

    @property
    def active(self) -> tuple[GPUPool, ...]:
        return tuple(p for p in self.pools if p.count > 0)

    @property
    def other_monthly_usd(self) -> float:
        return float(sum(usd for _, usd in self.other_monthly))

    def endpoints(self) -> list[Endpoint]:
        """One dedicated endpoint per server: what `sophia.money.pricing` charges by the hour."""
        return [p.endpoint() for p in self.active for _ in range(p.count)]

    def resized(self, gpus: int) -> Fleet:
        """This fleet with its first pool's server type only, `gpus` of them (what the optimizer varies)."""
        if not self.pools:
            raise ValueError("the fleet has no GPU type to size: add a GPU pool (price, throughput) first")
        return replace(self, pools=(self.pools[0].with_count(gpus),))


def pool_from_endpoint(e: Endpoint, count: int = 1) -> GPUPool:
    return GPUPool(
        name=e.name,
        count=count,
        hourly_usd=e.hourly_usd,
        throughput_tps=e.throughput_tps,
        prefill_tps=e.prefill_tps,
        max_concurrency=e.max_concurrency,
        itl_ms=e.simulation.tpot_ms if e.simulation.tpot_ms > 0 else 20.0,
        model=e.models[0],
    )


def from_config(cfg: Config) -> Fleet:
    """The configured deployment: one server per dedicated endpoint."""
    return Fleet(tuple(pool_from_endpoint(e) for e in cfg.tier_endpoints(Tier.DEDICATED)), label="configured fleet")


def template(cfg: Config) -> GPUPool | None:
    """The server type of the configured primary dedicated endpoint (None when there is none)."""
    dedicated = cfg.tier_endpoints(Tier.DEDICATED)
    if not dedicated:
        return None
    names = [e.name for e in dedicated]
    name = cfg.routing.dedicated_endpoint if cfg.routing.dedicated_endpoint in names else names[0]
    return pool_from_endpoint(cfg.endpoint(name))


def homogeneous(
    cfg: Config,
    gpus: int | None = None,
    hourly_usd: float | None = None,
    throughput_tps: float | None = None,
    max_concurrency: int | None = None,
    name: str | None = None,
) -> Fleet:
    """`gpus` servers of the configured primary type, with any of its figures overridden.

    With no override at all, the configured fleet is returned as it is. Overrides without
    `gpus` apply to every configured server.
    """
    overrides = {
        k: v
        for k, v in (
            ("hourly_usd", hourly_usd),
            ("throughput_tps", throughput_tps),
            ("max_concurrency", max_concurrency),
        )
        if v is not None
    }
    if gpus is None and not overrides:
        return from_config(cfg).check()
    if gpus is None:
        fleet = from_config(cfg)
        if not fleet.pools:
            raise ValueError("the configuration has no dedicated endpoint: say how many GPUs with --gpus")
        return replace(fleet, pools=tuple(replace(p, **overrides) for p in fleet.pools)).check()
    base = template(cfg)
    if base is None:
        missing = [flag for flag, v in (("--gpu-hourly", hourly_usd), ("--throughput", throughput_tps)) if v is None]
        if missing and gpus:
            raise ValueError(
                f"the configuration has no dedicated endpoint to copy: give {' and '.join(missing)} for the GPUs"
            )
        base = GPUPool(name="gpu", hourly_usd=hourly_usd or 0.0, throughput_tps=throughput_tps or 0.0)
    pool = replace(base, name=name or base.name, count=gpus, **overrides)
    return Fleet((pool,), label=f"{gpus} × {pool.name}").check()


# --- the serverless tier ----------------------------------------------------------------


def serverless_simulation(cfg: Config, fleet: Fleet, model: str) -> Simulation:
    """The latency model of the serverless endpoint serving `model`, with the fleet's overrides."""
    sim = cfg.endpoint_for_model(model).simulation
    changes = {}
    if fleet.serverless_ttft_ms is not None:
        changes["ttft_ms"] = fleet.serverless_ttft_ms
    if fleet.serverless_tpot_ms is not None:
        changes["tpot_ms"] = fleet.serverless_tpot_ms
    return replace(sim, slow_rate=0.0, **changes)


def with_prices(cfg: Config, prices: dict[str, tuple[float, float]]) -> Config:
    """`cfg` with some serverless models' prices (USD per 1M input, output tokens) replaced."""
    known = {m.name for m in cfg.models}
    out = list(cfg.models)
    for model, (inp, outp) in prices.items():
        if model not in known:
            raise ValueError(
                f"model {model!r} has no price in the configuration: expected one of {', '.join(sorted(known))}"
            )
        _num(inp, f"{model}: the input price", "enter USD per 1M input tokens, 0 or more")
        _num(outp, f"{model}: the output price", "enter USD per 1M output tokens, 0 or more")
        out = [ModelPrice(model, float(inp), float(outp)) if m.name == model else m for m in out]
    return replace(cfg, models=tuple(out))


def policy_config(cfg: Config, fleet: Fleet) -> Config:
    """The configuration the routing policy (and the price catalog) sees with this fleet.

    Its dedicated endpoints are the fleet's pools: none when the fleet has no GPU (the policy
    then keeps everything serverless), and the routing targets point at pools of the fleet
    (the configured ones when they are in it, else the first pool).
    """
    serverless = cfg.tier_endpoints(Tier.SERVERLESS)
    active = fleet.active
    if not active:
        return replace(cfg, endpoints=serverless)
    names = [p.name for p in active]
    r = cfg.routing
    ded = r.dedicated_endpoint if r.dedicated_endpoint in names else names[0]
    bulk = r.bulk_endpoint if r.bulk_endpoint in names else ded
    taken = {e.name for e in serverless}
    clash = [n for n in names if n in taken]
    if clash:
        raise ValueError(f"GPU pool {clash[0]!r} has the name of a serverless endpoint: rename the pool")
    return replace(
        cfg,
        endpoints=serverless + tuple(p.endpoint() for p in active),
        routing=replace(r, dedicated_endpoint=ded, bulk_endpoint=bulk),
    )
