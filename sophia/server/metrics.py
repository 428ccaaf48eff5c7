"""`GET /metrics`: the gateway's figures in the Prometheus text format (prometheus_client).

Counters and histograms are fed by the router's observer hook, once per finished request (the
same moment the request is recorded), so they count what the log counts. The routing pool's
busy and queued jobs and the budgets' spend against their limits are read at scrape time.

With `sophia serve --workers N` every worker writes its figures to the folder named by
PROMETHEUS_MULTIPROC_DIR (set by `run` before the workers start) and a scrape of any worker
sums them all, as prometheus_client's multiprocess mode does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sophia.routing.result import ChatRequest, Result

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. The gateway's own time is sub-millisecond when all is well: fine buckets at the bottom.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def multiprocess_dir() -> str | None:
    """The shared folder of multi-worker mode, when it is set and exists."""
    d = os.environ.get(MULTIPROC_ENV)
    return d if d and os.path.isdir(d) else None


class _Budgets(Collector):
    """Each budget's spend (metered + GPU-hours) and limit now, read from the budget guard."""

    def __init__(self, snapshot: Callable[[], list[dict]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        spent = GaugeMetricFamily("sophia_budget_spend_usd", "Spend in the budget's current period", labels=["budget"])
        limit = GaugeMetricFamily("sophia_budget_limit_usd", "The budget's amount per period", labels=["budget"])
        for b in self.snapshot():
            spent.add_metric([b["name"]], b["spent_usd"])
            limit.add_metric([b["name"]], b["amount_usd"])
        yield spent
        yield limit


class _Pool(Collector):
    """Requests on a routing thread now, and requests waiting for one."""

    def __init__(self, busy: Callable[[], int], queued: Callable[[], int]) -> None:
        self.busy, self.queued = busy, queued

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("sophia_in_flight_requests", "Requests being routed now", value=self.busy())
        yield GaugeMetricFamily("sophia_queued_requests", "Requests waiting for a routing thread", value=self.queued())


class Metrics:
    """The figures of one server process, and its `/metrics` page."""

    def __init__(
        self,
        budgets: Callable[[], list[dict]] = list,
        busy: Callable[[], int] = lambda: 0,
        queued: Callable[[], int] = lambda: 0,
    ) -> None:
        self._multi = multiprocess_dir()
        # In multiprocess mode values live in the shared folder, not in a registry of this process.
        own = None if self._multi else CollectorRegistry()
        tier = ["tier", "endpoint", "model"]
        self.requests = Counter(
            "sophia_requests",
            "Requests routed, by where they went, why and how they ended",
            [*tier, "reason", "status"],
            registry=own,
        )
        self.tokens = Counter("sophia_tokens", "Tokens, prompt and completion", [*tier, "kind"], registry=own)
        self.cost = Counter("sophia_metered_cost_usd", "Metered (per-token) spend in USD", tier, registry=own)
        self.cache_hits = Counter("sophia_cache_hits", "Requests answered from the response cache", registry=own)
        self.anomalies = Counter(
            "sophia_usage_anomalies",
            "Requests whose reported usage is far past their bound",
            ["endpoint"],
            registry=own,
        )
        self.latency = Histogram(
            "sophia_request_latency_seconds",
            "Whole request, as the router saw it",
            ["tier"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.ttft = Histogram(
            "sophia_time_to_first_token_seconds",
            "Time to the first token",
            ["tier"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.overhead = Histogram(
            "sophia_gateway_overhead_seconds",
            "The gateway's own time: the request's time minus the time inside upstream calls",
            buckets=OVERHEAD_BUCKETS,
            registry=own,
        )
        self.registry = own if own is not None else CollectorRegistry()
        if self._multi:
            multiprocess.MultiProcessCollector(self.registry, path=self._multi)
        # What each process reads at scrape time (in multiprocess mode, the worker that answers).
        self.registry.register(_Budgets(budgets))
        self.registry.register(_Pool(busy, queued))

    def observe(self, req: ChatRequest, res: Result) -> None:
        """One finished request (the router's observer hook)."""
        where = (res.tier or "", res.endpoint or "", res.model or "")
        self.requests.labels(*where, res.reason or "", res.status or "").inc()
        if res.prompt_tokens:
            self.tokens.labels(*where, "prompt").inc(res.prompt_tokens)
        if res.completion_tokens:
            self.tokens.labels(*where, "completion").inc(res.completion_tokens)
        if res.metered_cost_usd:
            self.cost.labels(*where).inc(res.metered_cost_usd)
        if res.cached:
            self.cache_hits.inc()
        if res.usage_anomaly:
            self.anomalies.labels(where[1]).inc()
        if res.latency_ms is not None:
            self.latency.labels(where[0]).observe(res.latency_ms / 1000)
            self.overhead.observe(max(0.0, res.latency_ms - res.upstream_ms) / 1000)
        if res.ttft_ms is not None:
            self.ttft.labels(where[0]).observe(res.ttft_ms / 1000)

    def page(self) -> bytes:
        """The text exposition of every figure."""
        return generate_latest(self.registry)
