"""The product's words: tiers, reasons, statuses, sources, budget actions and periods.

Each is a `StrEnum`, so a member is the string itself: it compares equal to the word stored in
the log and the configuration, and goes into SQL, JSON and Arrow unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    SERVERLESS = "serverless"
    DEDICATED = "dedicated"


class Reason(StrEnum):
    # decided by the policy from the request alone (replay reproduces these)
    COST_OPTIMIZED = "cost-optimized"
    HIGH_COMPLEXITY = "high-complexity"
    COST_OPTIMIZATION = "cost-optimization"
    # known only to live routing
    FAILOVER = "failover"
    BUDGET = "budget"
    FORCED = "forced"
    CACHE = "cache"
    CAPABILITY = "capability"  # the policy's choice cannot serve what the request uses (tools, images, ...)


# Order matters: the policy's reason code indexes this tuple.
POLICY_REASONS = (Reason.COST_OPTIMIZED, Reason.HIGH_COMPLEXITY, Reason.COST_OPTIMIZATION)
RUNTIME_REASONS = (Reason.FAILOVER, Reason.BUDGET, Reason.FORCED, Reason.CACHE, Reason.CAPABILITY)


class Status(StrEnum):
    OK = "ok"
    ERROR = "error"
    REFUSED = "refused"
    CANCELLED = "cancelled"


class Source(StrEnum):
    PLAYGROUND = "playground"
    CLI = "cli"
    API = "api"
    IMPORT = "import"
    DEMO = "demo"


# Live traffic: what budgets count by default.
LIVE_SOURCES = (Source.PLAYGROUND, Source.CLI, Source.API)


class Capability(StrEnum):
    """What an endpoint's model can serve; a request needs some of them (`routing.needs`)."""

    CHAT = "chat"  # chat completions at all (an embeddings-only model lacks it)
    TOOLS = "tools"  # tools / functions
    JSON_MODE = "json_mode"  # response_format json_object
    JSON_SCHEMA = "json_schema"  # response_format json_schema (structured outputs)
    VISION = "vision"  # image_url content parts
    AUDIO = "audio"  # input_audio content parts
    LOGPROBS = "logprobs"
    N = "n"  # several choices (n > 1)
    EMBEDDINGS = "embeddings"  # /v1/embeddings


# What a model can do when its configuration does not say: every chat capability.
CHAT_CAPABILITIES = tuple(c for c in Capability if c is not Capability.EMBEDDINGS)


class Operation(StrEnum):
    """Which API a logged request used."""

    CHAT = "chat"
    EMBEDDINGS = "embeddings"


class BudgetAction(StrEnum):
    DOWNGRADE = "downgrade"
    DEDICATED_ONLY = "dedicated-only"
    BLOCK = "block"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def words(enum: type[StrEnum]) -> tuple[str, ...]:
    """The plain words of an enum, in order (for choices, messages and SQL lists)."""
    return tuple(m.value for m in enum)
