"""GPU-hours from the fleet's history: an endpoint is paid only while it was part of the fleet.

A fleet period says that a dedicated endpoint ran at an hourly price from `start` until `end`
(None: it still runs). Periods come from the configuration (the live fleet, `source` None,
opened when an endpoint appears in the file and closed when it leaves it or changes price)
and from traffic that asked to be charged for its own span (demo traffic, an import with
`--charge-fleet`: `source` names that traffic). Overlapping periods of one endpoint are paid
once. Everything here is pure: periods in, USD out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sophia.money.periods import HOUR_S
from sophia.money.pricing import DIGITS

LIVE = None  # the source of the configured fleet's periods


@dataclass(frozen=True)
class FleetPeriod:
    endpoint: str
    hourly_usd: float
    start: datetime
    end: datetime | None  # None: still part of the fleet
    source: str | None = LIVE  # None: the configured fleet; else the traffic that asked for it


def in_step(
    periods: Sequence[FleetPeriod], configured: dict[str, float], now: datetime, first_live: datetime | None
) -> list[FleetPeriod]:
    """The periods once the configured fleet (`configured`: endpoint -> hourly USD) is in step at
    `now`: the same periods in the same order, an open live one closed at `now` when its endpoint
    left the configuration or changed price, then a new open period for each configured endpoint
    not running. The first fleet ever starts at the first live request (`first_live`), if that is
    earlier: it served that traffic."""
    out, running = [], set()
    for p in periods:
        if p.source is LIVE and p.end is None:
            if configured.get(p.endpoint) != p.hourly_usd:
                p = replace(p, end=now)
            else:
                running.add(p.endpoint)
        out.append(p)
    any_before = any(p.source is LIVE for p in periods)
    start = now if any_before or first_live is None else min(now, first_live)
    out += [FleetPeriod(ep, hourly, start, None, LIVE) for ep, hourly in configured.items() if ep not in running]
    if first_live is not None:
        # Live traffic logged before the first period began (an older log, a back-dated clock)
        # was served by that first fleet: it ran from then.
        live = [p.start for p in out if p.source is LIVE]
        first = min(live) if live else None
        if first is not None and first > first_live:
            out = [replace(p, start=first_live) if p.source is LIVE and p.start == first else p for p in out]
    return out


def _counts(p: FleetPeriod, sources: Sequence[str] | None, live_sources: Sequence[str]) -> bool:
    """Whether a period is paid by a selection of traffic sources (None: every source)."""
    if sources is None:
        return True
    if p.source is LIVE:
        return any(s in live_sources for s in sources)
    return p.source in sources


def _spans(periods: Iterable[FleetPeriod], start: datetime, end: datetime, now: datetime):
    """Per endpoint, the paid intervals inside [start, min(end, now)), overlaps merged (the
    higher price wins where two periods of one endpoint overlap, so nothing is under-billed)."""
    stop = min(end, now)
    by_ep: dict[str, list[tuple[datetime, datetime, float]]] = {}
    for p in periods:
        lo, hi = max(p.start, start), min(p.end or stop, stop)
        if hi > lo:
            by_ep.setdefault(p.endpoint, []).append((lo, hi, p.hourly_usd))
    out: dict[str, list[tuple[datetime, datetime, float]]] = {}
    for ep, ivs in by_ep.items():
        # Cut at every boundary; each piece is paid at the highest price covering it.
        cuts = sorted({t for lo, hi, _ in ivs for t in (lo, hi)})
        pieces = []
        for a, b in zip(cuts, cuts[1:], strict=False):
            prices = [h for lo, hi, h in ivs if lo <= a and hi >= b]
            if prices:
                price = max(prices)
                if pieces and pieces[-1][1] == a and pieces[-1][2] == price:
                    pieces[-1] = (pieces[-1][0], b, price)
                else:
                    pieces.append((a, b, price))
        out[ep] = pieces
    return out


def charged_by_endpoint(
    periods: Iterable[FleetPeriod],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    sources: Sequence[str] | None = None,
    live_sources: Sequence[str] = (),
    whole_hours: bool = False,
) -> dict[str, float]:
    """USD of GPU-hours per endpoint over [start, end), never past `now`.

    `whole_hours` charges every started hour of each continuous run in full (how budgets and
    the spend export charge, so that they never run behind the bill); otherwise exact time.
    """
    chosen = [p for p in periods if _counts(p, sources, live_sources)]
    out: dict[str, float] = {}
    for ep, pieces in _spans(chosen, start, end, now).items():
        usd = 0.0
        for a, b, price in pieces:
            hours = (b - a).total_seconds() / HOUR_S
            usd += price * (math.ceil(hours - 1e-9) if whole_hours else hours)
        out[ep] = round(usd, DIGITS)
    return out


def charged(periods: Iterable[FleetPeriod], start: datetime, end: datetime, now: datetime, **kw) -> float:
    """USD of GPU-hours of the whole fleet over [start, end) (see `charged_by_endpoint`)."""
    return round(sum(charged_by_endpoint(periods, start, end, now, **kw).values()), DIGITS)


def hours_by_endpoint(
    periods: Iterable[FleetPeriod], start: datetime, end: datetime, now: datetime, **kw
) -> dict[str, float]:
    """Hours each endpoint was part of the fleet over [start, end) (exact)."""
    kw.pop("whole_hours", None)
    chosen = [p for p in periods if _counts(p, kw.get("sources"), kw.get("live_sources", ()))]
    return {
        ep: sum((b - a).total_seconds() for a, b, _ in pieces) / HOUR_S
        for ep, pieces in _spans(chosen, start, end, now).items()
    }


def hourly_now(periods: Iterable[FleetPeriod], now: datetime, **kw) -> float:
    """What the fleet costs an hour at `now`: the periods running then."""
    chosen = [p for p in periods if _counts(p, kw.get("sources"), kw.get("live_sources", ()))]
    by_ep: dict[str, float] = {}
    for p in chosen:
        if p.start <= now and (p.end is None or p.end > now):
            by_ep[p.endpoint] = max(by_ep.get(p.endpoint, 0.0), p.hourly_usd)
    return sum(by_ep.values())
