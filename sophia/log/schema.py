"""The request log's one schema: column names, DuckDB types and Arrow types together."""

from __future__ import annotations

import pyarrow as pa

# (name, DuckDB type, Arrow type). Timestamps are UTC, stored without a zone.
COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("request_id", "VARCHAR", pa.string()),
    ("ts", "TIMESTAMP", pa.timestamp("us")),
    ("source", "VARCHAR", pa.string()),
    ("policy_version", "INTEGER", pa.int32()),
    # decision inputs (features)
    ("prompt_chars", "INTEGER", pa.int32()),
    ("est_prompt_tokens", "INTEGER", pa.int32()),
    ("max_tokens", "INTEGER", pa.int32()),
    ("n_messages", "INTEGER", pa.int32()),
    ("keywords", "VARCHAR[]", pa.list_(pa.string())),
    # decision
    ("tier", "VARCHAR", pa.string()),
    ("endpoint", "VARCHAR", pa.string()),
    ("model", "VARCHAR", pa.string()),
    ("complexity", "DOUBLE", pa.float64()),
    ("breakdown", "VARCHAR", pa.string()),
    ("estimated_cost_usd", "DOUBLE", pa.float64()),
    ("reason", "VARCHAR", pa.string()),
    ("policy_reason", "VARCHAR", pa.string()),
    # outcome
    ("status", "VARCHAR", pa.string()),
    ("error_kind", "VARCHAR", pa.string()),
    ("error", "VARCHAR", pa.string()),
    ("attempts", "INTEGER", pa.int32()),
    ("failover_path", "VARCHAR[]", pa.list_(pa.string())),
    # 64-bit since migration m011: an upstream may report any count, and the row must hold it.
    ("prompt_tokens", "BIGINT", pa.int64()),
    ("completion_tokens", "BIGINT", pa.int64()),
    ("usage_estimated", "BOOLEAN", pa.bool_()),
    ("metered_cost_usd", "DOUBLE", pa.float64()),
    ("amortized_cost_usd", "DOUBLE", pa.float64()),
    ("latency_ms", "DOUBLE", pa.float64()),
    ("ttft_ms", "DOUBLE", pa.float64()),
    ("streamed", "BOOLEAN", pa.bool_()),
    ("cached", "BOOLEAN", pa.bool_()),
    ("simulated", "BOOLEAN", pa.bool_()),
    ("api_key_id", "VARCHAR", pa.string()),
    ("prompt_text", "VARCHAR", pa.string()),
    ("response_text", "VARCHAR", pa.string()),
    ("instance", "VARCHAR", pa.string()),  # added by migration m005
    # added by migration m008: what the request used, what came back
    ("operation", "VARCHAR", pa.string()),
    ("finish_reason", "VARCHAR", pa.string()),
    ("tool_calls", "INTEGER", pa.int32()),
    ("choices", "INTEGER", pa.int32()),
    ("uses_tools", "BOOLEAN", pa.bool_()),
    ("response_format", "VARCHAR", pa.string()),
    ("images", "INTEGER", pa.int32()),
    ("cached_prompt_tokens", "BIGINT", pa.int64()),
    ("reasoning_tokens", "BIGINT", pa.int64()),
    ("failover_cause", "VARCHAR", pa.string()),  # added by migration m010
    ("usage_anomaly", "VARCHAR", pa.string()),  # m011: why reported usage is far past the request's bound
)

NAMES: tuple[str, ...] = tuple(c[0] for c in COLUMNS)
ARROW_SCHEMA = pa.schema([(n, t) for n, _, t in COLUMNS])


# The columns of the first version of the table; later ones come from migrations.
ORIGINAL = NAMES[: NAMES.index("response_text") + 1]


def create_requests_sql() -> str:
    cols = ",\n  ".join(f"{n} {t}" for n, t, _ in COLUMNS if n in ORIGINAL)
    return f"CREATE TABLE IF NOT EXISTS requests (\n  {cols}\n)"


def to_arrow(rows: list[dict]) -> pa.Table:
    """A batch of record dicts as an Arrow table in schema order (missing keys are null)."""
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
