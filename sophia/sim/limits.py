"""The simulator's input ranges, and the work a run may take.

Every numeric input of the simulator (a field of the Cost simulator page, a flag of `sophia
simulate`, a key of a profile file) has a range in `RANGES`, checked before any work with a
one-line error that states it. The work a run's inputs imply is then estimated (`estimate`) and
refused before it starts when it would not fit:

* memory: each simulated request takes BYTES_PER_REQUEST at the peak of a full run (traffic
  arrays, the event simulation's per-request lists, the routes, latencies and costs kept for
  the charts) and each minute of the span BYTES_PER_MINUTE (per-second work spread, per-minute
  series of both models). Both are peaks measured over full runs (simulation, fluid model,
  month projection, optimizer and break-even) with a margin; their sum must stay within
  MEMORY_BUDGET_BYTES, so at most MAX_REQUESTS requests are simulated.
* time: the fluid model's sweeps (the optimizer prices every fleet size, break-even sizes fleets
  at every volume) cost about batch slots × minutes per evaluation, the event simulation about
  requests × servers; the estimate must stay within WORK_LIMIT_S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from sophia.money.periods import MONTH_DAYS
from sophia.routing.features import MAX_TOKENS_LIMIT

MEMORY_BUDGET_BYTES = 1_000_000_000
BYTES_PER_REQUEST = 400  # measured: at most ~360 B at the peak of a full run (every request on the GPUs)
BYTES_PER_MINUTE = 1_800  # measured: ~1.2–1.5 KB (per-second spread of the simulation, per-minute series)
MONTH_MINUTES = MONTH_DAYS * 1440
# The most requests a run simulates: the budget less a month of minutes (the month projection), rounded down.
MAX_REQUESTS = (MEMORY_BUDGET_BYTES - MONTH_MINUTES * BYTES_PER_MINUTE) // BYTES_PER_REQUEST // 10_000 * 10_000
WORK_LIMIT_S = 600.0  # estimated seconds of computation a run may take (the estimate errs high)
VOLUMES_DEFAULT = 26  # break-even's volume grid (25 points and the traffic's own volume)


def _num(v: float) -> str:
    """A bound or a value as people write it: 1,000,000, 0.5, 1e-09."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return repr(v)
    if not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.6g}"


@dataclass(frozen=True)
class Range:
    """The allowed values of one input: [lo, hi] (or (lo, hi] with `lo_open`), whole or not."""

    lo: float
    hi: float
    label: str  # the page's field
    flag: str | None = None  # the CLI's flag, when there is one
    lo_open: bool = False
    whole: bool = False
    hint: str = ""  # what the number means, or what to do

    def allowed(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.lo_open:
            return f"{kind} > {_num(self.lo)} and at most {_num(self.hi)}"
        return f"{kind} from {_num(self.lo)} to {_num(self.hi)}"

    def name(self, face: str = "page") -> str:
        return self.flag if face == "cli" and self.flag else self.label

    def check(self, value, face: str = "page", name: str | None = None):
        """`value` as a float (an int when whole), or a ValueError naming the input and its range."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.whole:
            ok = float(value).is_integer()
        if ok:
            ok = (value > self.lo if self.lo_open else value >= self.lo) and value <= self.hi
        if not ok:
            hint = f": {self.hint}" if self.hint else ""
            raise ValueError(f"{name or self.name(face)} must be {self.allowed()} (got {_num(value)}){hint}")
        return int(value) if self.whole else float(value)


RANGES: dict[str, Range] = {
    # traffic
    "scale": Range(
        0.001, 10_000, "Scale (× arrival rate)", "--scale", hint="1 keeps the traffic as recorded, 2 doubles its rate"
    ),
    "requests_per_day": Range(0, 100_000_000, "Requests per day", lo_open=True),
    "days": Range(0.001, 92, "Days to simulate", hint="the month projection extends a shorter sample"),
    "burstiness": Range(0, 10, "Burstiness", hint="the coefficient of variation of the per-minute rate"),
    "sigma": Range(0, 10, "Sigma (log)", hint="the spread of the log-normal token counts"),
    "median_tokens": Range(1, 1_000_000, "Median tokens"),
    "max_tokens": Range(1, MAX_TOKENS_LIMIT, "max_tokens", whole=True),
    "growth": Range(-0.99, 10, "Growth per month", hint="0.1 = 10% more traffic each month"),
    # fleet
    "gpus": Range(0, 1024, "GPUs", "--gpus", whole=True, hint="servers of the GPU type (0: none)"),
    "gpu_hourly": Range(
        0,
        1000,
        "USD per GPU-hour",
        "--gpu-hourly",
        lo_open=True,
        hint="the provider's price per GPU-hour (dedicated GPUs are never free)",
    ),
    "throughput": Range(
        0, 1_000_000, "Output tokens/s", "--throughput", lo_open=True, hint="one GPU's output tokens/s at saturation"
    ),
    "prefill": Range(0, 100_000_000, "Prefill tokens/s", hint="one GPU's prompt tokens/s; 0 ignores prefill"),
    "max_concurrency": Range(
        1, 4096, "Max concurrency", "--max-concurrency", whole=True, hint="requests in one GPU's batch"
    ),
    "itl_ms": Range(0, 60_000, "Unloaded ms per output token", lo_open=True, hint="at a batch of one request"),
    "other_usd": Range(0, 10_000_000, "Other fixed cost (USD/month)"),
    # serverless
    "price": Range(0, 1000, "Price (USD per 1M tokens)"),
    "serverless_ttft_ms": Range(0, 600_000, "First token (ms)", hint="the serverless tier's time to first token"),
    "serverless_tpot_ms": Range(0, 60_000, "ms per token", hint="the serverless tier's time per output token"),
    "rate_limit_rpm": Range(0, 100_000_000, "Rate limit (requests/min, 0 = none)"),
    # policy, target, sweeps
    "slo_ms": Range(0, 600_000, "Target p95 first token (ms)", "--slo-ms", lo_open=True, hint="e.g. 500"),
    "max_wait_ms": Range(
        0, 600_000, "Wait before overflow (ms)", hint="leave it empty for the target less an idle GPU's first token"
    ),
    "max_gpus": Range(
        1,
        1024,
        "Optimizer: up to GPUs",
        "--max-gpus",
        whole=True,
        hint="the largest fleet the optimizer and break-even try",
    ),
    # autoscaling (one GPU type: the fleet's first)
    "autoscale_min": Range(
        0,
        1024,
        "Autoscale: min instances",
        "--autoscale-min",
        whole=True,
        hint="instances always running (0: scale to zero)",
    ),
    "autoscale_max": Range(
        1, 1024, "Autoscale: max instances", "--autoscale-max", whole=True, hint="the most instances it may run"
    ),
    "target_utilization": Range(
        0.05,
        1,
        "Target utilization",
        "--target-utilization",
        hint="the share of a full batch the instances aim at, e.g. 0.7",
    ),
    "scale_up_delay_s": Range(
        0, 3600, "Scale-up delay (s)", "--scale-up-delay", hint="seconds from requesting an instance to its serving"
    ),
    "cool_down_s": Range(
        0, 3600, "Cool-down (s)", "--cool-down", hint="seconds the load must stay lower before instances are released"
    ),
    "volumes": Range(2, 200, "break-even volumes", whole=True, hint="points of the volume sweep"),
    "multiplier": Range(0, 1_000_000, "a break-even volume multiplier", lo_open=True),
    "reference_seconds": Range(1, 3600, "seconds of reference traffic", hint="each rate is simulated this long"),
}


def check(key: str, value, face: str = "page", name: str | None = None):
    """`RANGES[key].check`: the value, or a ValueError that states the range."""
    return RANGES[key].check(value, face, name)


def name(key: str, face: str = "page") -> str:
    return RANGES[key].name(face)


# --- work -----------------------------------------------------------------------------------

# Seconds per unit, measured on one core (a run uses one). The fluid model loops over the batch slots
# for every minute with dedicated arrivals; the event simulation loops over the dedicated requests in
# Python and handles the others in arrays.
FLUID_S_PER_SLOT = 3.0e-6
FLUID_S_PER_SLOT_MINUTE = 3.0e-9
FLUID_S_PER_MINUTE = 2.0e-5  # the TTFT quantiles, per minute with dedicated arrivals
DES_S_PER_REQUEST = 1.5e-6
DES_S_PER_DEDICATED = 5.0e-6
DES_S_PER_DEDICATED_SERVER = 1.0e-8


@dataclass(frozen=True)
class Work:
    """What a run's inputs imply, estimated before it starts."""

    requests: float  # requests the event simulation serves
    minutes: int  # minutes of the simulated span
    gpus: int  # servers of the fleet simulated
    slots: int  # batch slots of one server
    max_gpus: int = 0  # the largest fleet the optimizer and break-even try
    optimize: bool = False
    volumes: int = 0  # break-even's volume points (0: no break-even)
    project: bool = True  # the fluid model on the sample and a month projection
    dedicated_share: float = 1.0  # share of the requests the policy sends to the GPUs (1: every one)

    @property
    def memory_bytes(self) -> float:
        minutes = max(self.minutes, MONTH_MINUTES if self.project else 0)
        return self.requests * BYTES_PER_REQUEST + minutes * BYTES_PER_MINUTE

    def _live(self, minutes: int) -> float:
        """Minutes with dedicated arrivals, at most."""
        return min(minutes, self.requests * self.dedicated_share * minutes / max(self.minutes, 1))

    def _fluid_s(self, minutes: int, servers: float, quantiles: bool = True) -> float:
        k, live = servers * self.slots, self._live(minutes)
        return k * (FLUID_S_PER_SLOT + live * FLUID_S_PER_SLOT_MINUTE) + quantiles * live * FLUID_S_PER_MINUTE

    def _des_s(self, servers: int) -> float:
        dedicated = self.requests * self.dedicated_share if servers else 0.0
        return self.requests * DES_S_PER_REQUEST + dedicated * (
            DES_S_PER_DEDICATED + servers * DES_S_PER_DEDICATED_SERVER
        )

    @property
    def seconds(self) -> float:
        m, top = self.minutes, self.max_gpus
        s = self._des_s(self.gpus)
        if self.project:
            s += self._fluid_s(m, self.gpus) + self._fluid_s(MONTH_MINUTES, self.gpus)
        if self.optimize:
            # Every fleet size priced once, then a binary search and a short walk simulated near the answer.
            s += sum(self._fluid_s(m, g) for g in range(top + 1))
            s += (math.ceil(math.log2(top + 1)) + 6) * self._des_s(top)
        if self.volumes:
            # Per volume: a binary search for dedicated-only, a walk up from one GPU for the hybrid.
            per_volume = (math.ceil(math.log2(top + 1)) + 1) * self._fluid_s(m, top, False)
            per_volume += sum(self._fluid_s(m, g, False) for g in range(1, min(top, 25) + 1))
            s += self.volumes * per_volume
        return s

    def with_max_gpus(self, n: int) -> Work:
        return replace(self, max_gpus=n)


def largest_range(work: Work) -> int:
    """The largest fleet the optimizer and break-even may try, with the other inputs as they are (0: none fits)."""
    lo, hi = 0, int(RANGES["max_gpus"].hi)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if work.with_max_gpus(mid).seconds <= WORK_LIMIT_S:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_work(work: Work, face: str = "page") -> Work:
    """Refuse a run that would take more than the memory budget or the time limit, saying what to lower."""
    scale, sweep = name("scale", face), name("max_gpus", face)
    budget = f"{MEMORY_BUDGET_BYTES / 1e9:g} GB"
    if work.requests > MAX_REQUESTS:
        narrower = "pass fewer --source" if face == "cli" else "pick fewer sources or a shorter time range"
        raise ValueError(
            f"this run would simulate about {work.requests:,.0f} requests: at most {MAX_REQUESTS:,} fit in {budget} "
            f"(about {BYTES_PER_REQUEST} bytes each): lower {scale}, {narrower}, or simulate fewer days"
        )
    if work.memory_bytes > MEMORY_BUDGET_BYTES:
        most = (MEMORY_BUDGET_BYTES - work.requests * BYTES_PER_REQUEST) // BYTES_PER_MINUTE
        shorter = (
            "pass --source of one period" if face == "cli" else "pick a shorter time range or sources of one period"
        )
        raise ValueError(
            f"the traffic spans {work.minutes:,} minutes ({work.minutes / 1440:,.0f} days): with these requests at "
            f"most {max(0, most):,.0f} minutes ({max(0, most) / 1440:,.0f} days) fit in {budget}: {shorter}"
        )
    if work.seconds > WORK_LIMIT_S:
        est = _duration(work.seconds)
        if work.optimize or work.volumes:
            most = largest_range(work)
            what = "the optimizer's" if work.optimize else "break-even's"
            if 1 <= most < work.max_gpus:
                raise ValueError(
                    f"{what} range of 0–{work.max_gpus:,} GPUs over {work.minutes:,} minutes is about {est} of "
                    f"work (the limit is {_duration(WORK_LIMIT_S)}): set {sweep} to {most:,} or less, or "
                    "simulate a shorter span"
                )
        raise ValueError(
            f"this run is about {est} of work (the limit is {_duration(WORK_LIMIT_S)}): {work.requests:,.0f} "
            f"requests on {work.gpus:,} GPUs of {work.slots:,} slots over {work.minutes:,} minutes; use fewer GPUs, "
            f"a lower max concurrency, a lower {scale} or a shorter span"
        )
    return work


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:,.0f} s"
    if s < 7200:
        return f"{s / 60:,.0f} min"
    return f"{s / 3600:,.0f} h"
