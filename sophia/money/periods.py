"""Calendar periods and the length of a month: one definition for budgets, spend, charts and the simulator.

Periods are calendar ones (a day, an ISO week starting on Monday, a month), truncated the way
DuckDB's `date_trunc` does, so Python-side buckets line up with SQL-side ones. "A month" in a
monthly figure (a projection, a GPU bill) is always `MONTH_DAYS` days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sophia.vocab import Period, words

MONTH_DAYS = 30  # a month, as every monthly figure in Sophia counts it
MONTH_HOURS = MONTH_DAYS * 24
DAY_S = 86_400
HOUR_S = 3600.0

PERIODS = words(Period)  # budget and spend periods
GRAINS = ("hour", *PERIODS)  # chart buckets
_FIXED_STEP = {"hour": timedelta(hours=1), Period.DAY: timedelta(days=1), Period.WEEK: timedelta(weeks=1)}
MAX_BUCKETS = 100_000


def per_month(amount: float, days: float) -> float:
    """`amount` observed over `days`, scaled to a month of the same rate."""
    return amount * MONTH_DAYS / days


def truncate(t: datetime, grain: str) -> datetime:
    """The start of the hour, day, ISO week or month holding `t` (like DuckDB's date_trunc)."""
    if grain == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == Period.DAY:
        return day
    if grain == Period.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_start(start: datetime, grain: str) -> datetime:
    """The start of the period after the one starting at `start` (wall-clock time)."""
    if grain == Period.MONTH:
        return start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return start + _FIXED_STEP[grain]


def starts(start: datetime, end: datetime, grain: str) -> list[datetime]:
    """Every period start that overlaps [start, end), at most MAX_BUCKETS of them."""
    out, t = [], truncate(start, grain)
    while t < end and len(out) < MAX_BUCKETS:
        out.append(t)
        t = next_start(t, grain)
    return out


def granularity(start: datetime, end: datetime) -> str:
    """A bucket size that gives a readable number of points for the range."""
    span = end - start
    if span <= timedelta(days=3):
        return "hour"
    if span <= timedelta(days=92):
        return Period.DAY
    if span <= timedelta(days=731):
        return Period.WEEK
    return Period.MONTH


def local_to_utc(t: datetime, tz: ZoneInfo) -> datetime:
    """Local wall time in `tz` → naive UTC, across DST changes."""
    return t.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def bounds(period: str, at_utc: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar period of `tz` holding `at_utc` (naive UTC), as naive UTC [start, end)."""
    local = at_utc.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)
    start = truncate(local, period)
    return local_to_utc(start, tz), local_to_utc(next_start(start, period), tz)
