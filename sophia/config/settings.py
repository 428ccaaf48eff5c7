"""The settings types: what `sophia.toml` declares, each field with the rule it is checked by."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sophia.config.budgets import AlertSettings, Budget
from sophia.config.checks import FLAG, in_range, whole
from sophia.config.server import ServerSettings
from sophia.vocab import CHAT_CAPABILITIES

# Tokens an image part counts for in a cost estimate when its model does not say (OpenAI's
# high-detail 1024 x 1024 image: 85 base + 4 tiles x 170).
IMAGE_TOKENS = 765

PRIVACY_MODES = ("off", "redacted", "on")
ENDPOINT_KINDS = ("simulated", "openai")


@dataclass(frozen=True)
class KeywordGroup:
    name: str
    words: tuple[str, ...]
    weight: float


@dataclass(frozen=True)
class ScorerSettings:
    # (minimum characters, weight), highest band first; the first band exceeded applies.
    length_bands: tuple[tuple[int, float], ...] = ((10_000, 0.3), (5_000, 0.2), (1_000, 0.1))
    keyword_groups: tuple[KeywordGroup, ...] = (
        KeywordGroup("analysis", ("analyze", "process", "generate", "training"), 0.1),
        KeywordGroup("context", ("remember", "context", "session", "stream"), 0.2),
    )
    max_tokens_over: int = field(default=1_000, metadata=whole(0, 10_000_000))
    max_tokens_weight: float = field(default=0.3, metadata=in_range(0, 1))
    cap: float = field(default=1.0, metadata=in_range(0, 1, lo_open=True))
    # Which text is scored: a system prompt (system / developer messages) and earlier turns can
    # make a plain "hi" look complex. Off, only the conversation's last turn is scored.
    score_system: bool = field(default=True, metadata=FLAG)
    score_history: bool = field(default=True, metadata=FLAG)


@dataclass(frozen=True)
class RoutingSettings:
    complexity_threshold: float = field(default=0.7, metadata=in_range(0, 1))
    cost_threshold_usd: float = field(default=0.10, metadata=in_range(0, 10_000))
    serverless_model: str = "llama-4-scout-17b-16e-instruct"
    premium_model: str = "llama-4-maverick-17b-128e-instruct-fp8"
    budget_model: str = "llama3.1-8b-instruct"
    dedicated_endpoint: str = "sophia-ai-core"
    bulk_endpoint: str = "sophia-data-pipeline"
    default_max_tokens: int = field(default=512, metadata=whole(1, 1_000_000))
    embeddings_model: str | None = None  # what /v1/embeddings serves for an alias; None: no embeddings


@dataclass(frozen=True)
class FailoverSettings:
    max_retries: int = field(default=1, metadata=whole(0, 10))
    retry_backoff_s: float = field(default=0.2, metadata=in_range(0, 60))
    failure_threshold: int = field(default=3, metadata=whole(1, 1000))
    cooldown_s: float = field(default=30.0, metadata=in_range(0, 86_400))
    connect_timeout_s: float = field(default=5.0, metadata=in_range(0, 600, lo_open=True))
    # Deadlines of one attempt that no trickle of bytes or keep-alive comments extends: its first
    # token (a whole reply's headers, a stream's first data event), and its whole reply.
    first_token_timeout_s: float = field(default=30.0, metadata=in_range(0, 3600, lo_open=True))
    timeout_s: float = field(default=60.0, metadata=in_range(0, 3600, lo_open=True))


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = field(default=True, metadata=FLAG)
    ttl_s: float = field(default=3600.0, metadata=in_range(0, 31_536_000, lo_open=True))  # up to a year
    max_entries: int = field(default=10_000, metadata=whole(1, 10_000_000))
    # A request that samples (temperature > 0, or unset: the APIs' default is 1) without a seed
    # would get another answer each time; it is cached only when this says so.
    sampled: bool = field(default=False, metadata=FLAG)


@dataclass(frozen=True)
class Simulation:
    """How a built-in simulated endpoint behaves."""

    ttft_ms: float = field(default=250.0, metadata=in_range(0, 600_000))
    tpot_ms: float = field(default=12.0, metadata=in_range(0, 60_000))
    error_rate: float = field(default=0.0, metadata=in_range(0, 1))
    slow_rate: float = field(default=0.0, metadata=in_range(0, 1))
    slow_factor: float = field(default=10.0, metadata=in_range(1, 1000))
    cut_rate: float = field(default=0.0, metadata=in_range(0, 1))
    reply_tokens: int = field(default=120, metadata=whole(1, 100_000))
    report_usage: bool = field(default=True, metadata=FLAG)
    seed: int = field(default=7, metadata=whole(0, 2**63 - 1))


@dataclass(frozen=True)
class ModelPrice:
    name: str
    input_per_mtok: float
    output_per_mtok: float
    capabilities: tuple[str, ...] | None = None  # None: the endpoint's
    context_window: int = field(default=0, metadata=whole(0, 100_000_000))  # tokens; 0: the endpoint's
    image_tokens: int = field(default=IMAGE_TOKENS, metadata=whole(0, 1_000_000))  # per image part


@dataclass(frozen=True)
class Endpoint:
    name: str
    tier: str
    kind: str
    models: tuple[str, ...]
    base_url: str | None = None
    api_key_env: str | None = None
    hourly_usd: float = 0.0
    throughput_tps: float = 0.0
    prefill_tps: float = field(default=0.0, metadata=in_range(0, 1e9))
    max_concurrency: int = field(default=0, metadata=whole(0, 100_000))
    simulation: Simulation = field(default_factory=Simulation)
    capabilities: tuple[str, ...] = CHAT_CAPABILITIES  # what its models serve unless a model says
    context_window: int = field(default=0, metadata=whole(0, 100_000_000))  # tokens; 0: unknown
    drop_params: tuple[str, ...] = ()  # request fields it does not accept: removed before sending

    @property
    def simulated(self) -> bool:
        return self.kind == "simulated"


@dataclass(frozen=True)
class Config:
    endpoints: tuple[Endpoint, ...]
    models: tuple[ModelPrice, ...]
    scorer: ScorerSettings = field(default_factory=ScorerSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    failover: FailoverSettings = field(default_factory=FailoverSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    store_prompts: str = "off"
    flush_interval_s: float = 0.1
    path: str | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    budgets: tuple[Budget, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)

    def tier_endpoints(self, tier: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.tier == tier)

    def endpoint_for_model(self, model: str) -> Endpoint:
        for e in self.endpoints:
            if model in e.models:
                return e
        raise KeyError(model)

    def price(self, model: str) -> ModelPrice | None:
        for m in self.models:
            if m.name == model:
                return m
        return None

    def capabilities(self, endpoint: Endpoint, model: str) -> tuple[str, ...]:
        """What `model` on `endpoint` can serve: the model's own list, else the endpoint's."""
        m = self.price(model)
        return m.capabilities if m is not None and m.capabilities is not None else endpoint.capabilities

    def context_window(self, endpoint: Endpoint, model: str) -> int:
        """Prompt plus completion tokens `model` on `endpoint` takes; 0 when unknown."""
        m = self.price(model)
        return m.context_window if m is not None and m.context_window else endpoint.context_window

    def image_tokens(self, model: str) -> int:
        m = self.price(model)
        return m.image_tokens if m is not None else IMAGE_TOKENS

    @property
    def serverless(self) -> Endpoint:
        return self.endpoint_for_model(self.routing.serverless_model)

    def with_routing(self, **changes: Any) -> Config:
        return replace(self, routing=replace(self.routing, **changes))
