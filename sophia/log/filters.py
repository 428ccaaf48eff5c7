"""Selections of the request log as SQL: the one WHERE builder, every value a bound parameter.

`where` turns a selection (sources, a [start, end) range of naive UTC, allowed values per
facet, a text search) into a clause and its parameters. `Filters` is the app's selection
(hashable, so it can key a cache), validated before it becomes SQL. Column names come only
from `FACETS`, never from the caller's values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from sophia.vocab import Operation

# Columns a filter may select on, with the label the app shows for each.
FACETS: dict[str, str] = {
    "source": "Source",
    "tier": "Tier",
    "endpoint": "Endpoint",
    "model": "Model",
    "reason": "Reason",
    "status": "Status",
}
MAX_TEXT = 200  # characters of a text search
_TEXT_SQL = (
    "(starts_with(request_id, ?) OR contains(lower(coalesce(prompt_text, '')), ?)"
    " OR contains(lower(coalesce(response_text, '')), ?) OR contains(lower(coalesce(error, '')), ?))"
)


class FilterError(ValueError):
    """A filter the user gave that cannot be applied; the message says why and what to do."""


def in_list(column: str, values: Sequence, *, negate: bool = False) -> tuple[str, list]:
    """`column [NOT] IN (?, ...)` for a known facet column, with its parameters."""
    if column not in FACETS:
        raise FilterError(f"cannot filter on {column!r}: expected one of {', '.join(FACETS)}")
    marks = ", ".join("?" for _ in values)
    return f"{column} {'NOT IN' if negate else 'IN'} ({marks})", list(values)


def where(
    sources: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    facets: Mapping[str, Sequence[str]] | None = None,
    exclude_sources: Sequence[str] = (),
    text: str = "",
    exclude_instance: str | None = None,
    chat_only: bool = False,
) -> tuple[str, list]:
    """A WHERE clause (with its parameters) selecting the log's rows; empty selections mean any.

    `chat_only` leaves out embeddings requests: what the routing policy decides (replay, tuning,
    the simulator's traffic)."""
    parts, params = ["TRUE"], []

    def add(clause: str, values: list) -> None:
        parts.append(clause)
        params.extend(values)

    if sources:
        add(*in_list("source", sources))
    if start is not None:
        add("ts >= ?", [start])
    if end is not None:
        add("ts < ?", [end])
    for column, values in (facets or {}).items():
        if values:
            add(*in_list(column, values))
    if exclude_sources:
        add(*in_list("source", exclude_sources, negate=True))
    needle = text.strip().lower()
    if needle:
        add(_TEXT_SQL, [needle] * 4)
    if exclude_instance:
        add("coalesce(instance, '') <> ?", [exclude_instance])
    if chat_only:
        add("coalesce(operation, ?) = ?", [Operation.CHAT, Operation.CHAT])
    return " AND ".join(parts), params


@dataclass(frozen=True)
class Filters:
    """A selection of the log: a [start, end) range (naive UTC) and allowed values per facet.

    An empty tuple means "any value". Hashable, so it can key a cache.
    """

    start: datetime | None = None
    end: datetime | None = None
    source: tuple[str, ...] = ()
    tier: tuple[str, ...] = ()
    endpoint: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    reason: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    text: str = ""
    exclude_source: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # accept lists from widgets; keep the dataclass hashable
                object.__setattr__(self, f.name, tuple(v))

    def validate(self) -> Filters:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise FilterError(
                f"the range ends ({self.end:%Y-%m-%d %H:%M}) before it starts ({self.start:%Y-%m-%d %H:%M}): "
                "pick an end after the start"
            )
        if len(self.text) > MAX_TEXT:
            raise FilterError(f"the search text is {len(self.text)} characters long: keep it to {MAX_TEXT}")
        for name in FACETS:
            for v in getattr(self, name):
                if not isinstance(v, str):
                    raise FilterError(f"{FACETS[name].lower()} filter value {v!r} is not text")
        return self

    def where(self) -> tuple[str, list]:
        """The WHERE clause (with parameters) for this selection."""
        self.validate()
        facets = {name: getattr(self, name) for name in FACETS if name != "source"}
        return where(
            self.source or None,
            self.start,
            self.end,
            facets=facets,
            exclude_sources=self.exclude_source,
            text=self.text,
        )
