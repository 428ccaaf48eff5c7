"""Traffic for the simulator: logged or imported requests, rescaled or repeated, or a synthetic profile.

A `Workload` is a table of requests with arrival times in seconds from its start, the tokens
they used and the features the routing policy reads (so the router's own policy can decide
them). It comes from a selection of the log (`from_traffic`), from a `Profile` (`synthetic`),
or from another workload scaled (`scale`) or repeated to a longer span (`extend`). Every random
step takes a seed: the same inputs and seed give the same workload.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from sophia.analysis.replay import Traffic
from sophia.ingest import demo
from sophia.money.periods import MONTH_DAYS
from sophia.routing import features
from sophia.sim import limits

DAY_S = 86_400.0
MINUTE_S = 60.0
MINUTES_PER_DAY = 1440
DEFAULT_START = np.datetime64("2025-01-06T00:00:00", "us")  # a Monday, 00:00 UTC
DAYS = limits.RANGES["days"]  # a profile's span


@dataclass
class Workload:
    """Requests in arrival order: what the simulator serves."""

    t: np.ndarray  # arrival, seconds after `start` (float64, sorted)
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    prompt_chars: np.ndarray
    est_prompt_tokens: np.ndarray
    max_tokens: np.ndarray
    word_flags: dict[str, np.ndarray]
    span_s: float  # the time the requests cover (a rate is n / span_s)
    start: np.datetime64 = DEFAULT_START
    label: str = ""

    @property
    def n(self) -> int:
        return len(self.t)

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.span_s / MINUTE_S - 1e-9))

    @property
    def rate_per_s(self) -> float:
        return self.n / self.span_s

    @property
    def monthly_factor(self) -> float:
        """How many times this span fits in a month."""
        return MONTH_DAYS * DAY_S / self.span_s

    def minute(self) -> np.ndarray:
        """Each request's minute (0-based) within the span."""
        return np.minimum((self.t // MINUTE_S).astype(np.int64), self.minutes - 1)

    def take(
        self, idx: np.ndarray, t: np.ndarray | None = None, span_s: float | None = None, label: str | None = None
    ) -> Workload:
        """The requests at `idx` (optionally with new arrival times), sorted by arrival."""
        idx = np.asarray(idx, dtype=np.int64)
        times = self.t[idx] if t is None else np.asarray(t, dtype=np.float64)
        order = np.argsort(times, kind="stable")
        idx, times = idx[order], times[order]
        return Workload(
            t=times,
            prompt_tokens=self.prompt_tokens[idx],
            completion_tokens=self.completion_tokens[idx],
            prompt_chars=self.prompt_chars[idx],
            est_prompt_tokens=self.est_prompt_tokens[idx],
            max_tokens=self.max_tokens[idx],
            word_flags={w: f[idx] for w, f in self.word_flags.items()},
            span_s=self.span_s if span_s is None else span_s,
            start=self.start,
            label=self.label if label is None else label,
        )

    def clock(self, minutes: np.ndarray | None = None) -> np.ndarray:
        """Wall-clock times (UTC) of minute indices."""
        m = np.arange(self.minutes) if minutes is None else np.asarray(minutes)
        return self.start + (m * 60_000_000).astype("timedelta64[us]")


def empty(span_s: float = DAY_S, start: np.datetime64 = DEFAULT_START, label: str = "no traffic") -> Workload:
    """A span with no request in it (costs only its fixed costs)."""
    z = np.zeros(0, dtype=np.int64)
    return Workload(np.zeros(0), z, z, z, z, z, {}, _check_span(span_s), start, label)


def _check_span(span_s: float) -> float:
    if not (isinstance(span_s, (int, float)) and math.isfinite(span_s) and span_s > 0):
        raise ValueError(f"the traffic's span must be a positive number of seconds (got {span_s!r})")
    return float(span_s)


def from_traffic(
    tr: Traffic, start: np.datetime64 | None = None, end: np.datetime64 | None = None, label: str = ""
) -> Workload:
    """A selection of the log (`sophia.analysis.replay.load`) with its real arrival times and tokens.

    The span runs from `start` (default: the first request's minute) to `end` (default: the
    end of the last request's minute), so that rates and per-minute figures line up with the
    clock.
    """
    if tr.n == 0:
        s = np.datetime64(start, "us") if start is not None else DEFAULT_START
        span = (np.datetime64(end, "us") - s) / np.timedelta64(1, "s") if end is not None else DAY_S
        return empty(float(span) if span > 0 else DAY_S, s, label)
    ts = tr.ts.astype("datetime64[us]")
    s = np.datetime64(start, "us") if start is not None else ts.min().astype("datetime64[m]").astype("datetime64[us]")
    if end is not None:
        e = np.datetime64(end, "us")
    else:
        last = ts.max().astype("datetime64[m]").astype("datetime64[us]")
        e = last + np.timedelta64(60, "s")
    t = (ts - s) / np.timedelta64(1, "s")
    span = float((e - s) / np.timedelta64(1, "s"))
    if span <= 0 or t.min() < 0 or t.max() > span:
        raise ValueError("the selection's requests lie outside its start and end: widen the range")
    order = np.argsort(t, kind="stable")
    return Workload(
        t=np.asarray(t, dtype=np.float64)[order],
        prompt_tokens=np.asarray(tr.prompt_tokens, dtype=np.int64)[order],
        completion_tokens=np.asarray(tr.completion_tokens, dtype=np.int64)[order],
        prompt_chars=np.asarray(tr.prompt_chars, dtype=np.int64)[order],
        est_prompt_tokens=np.asarray(tr.est_prompt_tokens, dtype=np.int64)[order],
        max_tokens=np.asarray(tr.max_tokens, dtype=np.int64)[order],
        word_flags={w: np.asarray(f, dtype=bool)[order] for w, f in tr.word_flags.items()},
        span_s=span,
        start=s,
        label=label,
    )


def check_scale(k, name: str = "scale") -> float:
    """The rate multiplier within its range (`limits.RANGES["scale"]`), or a ValueError that states it."""
    return limits.check("scale", k, name=name)


def scale(w: Workload, k: float, seed: int = 0, jitter_s: float = MINUTE_S) -> Workload:
    """The same traffic at `k` times its arrival rate, over the same span and the same daily rhythm.

    Rate scaling by superposition and thinning: whole copies of the traffic are laid over it,
    each shifted by a random offset within ±jitter_s/2 (wrapping inside the span), and a
    fraction `k - floor(k)` of the requests, drawn at random, is added as one more copy (or, for
    k < 1, kept alone). Tokens and features travel with their request, so the token
    distributions are unchanged; minute-level rhythm and bursts are kept.
    """
    k = check_scale(k)
    if k == 1 or w.n == 0:
        return w
    rng = np.random.default_rng(seed)
    whole, frac = int(k), k - int(k)
    idx_parts, t_parts = [], []
    for copy in range(whole):
        idx = np.arange(w.n)
        t = w.t if copy == 0 else _shift(w.t, rng, jitter_s, w.span_s)
        idx_parts.append(idx)
        t_parts.append(t)
    if frac > 0:
        pick = np.flatnonzero(rng.random(w.n) < frac)
        t = w.t[pick] if whole == 0 else _shift(w.t[pick], rng, jitter_s, w.span_s)
        idx_parts.append(pick)
        t_parts.append(t)
    label = f"{w.label} ×{k:g}" if w.label else f"×{k:g}"
    return w.take(np.concatenate(idx_parts), np.concatenate(t_parts), label=label)


def _shift(t: np.ndarray, rng: np.random.Generator, jitter_s: float, span: float) -> np.ndarray:
    return np.mod(t + rng.uniform(-jitter_s / 2, jitter_s / 2, len(t)), span)


def extend(w: Workload, days: float) -> Workload:
    """The traffic repeated back to back until it covers `days` (or cut to them)."""
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"days must be > 0 (got {days!r})")
    target = days * DAY_S
    if w.n == 0:
        return replace(w, span_s=target)
    reps = max(1, math.ceil(target / w.span_s - 1e-9))
    idx = np.tile(np.arange(w.n), reps)
    t = (w.t[None, :] + (np.arange(reps) * w.span_s)[:, None]).ravel()
    keep = t < target
    out = w.take(idx[keep], t[keep], span_s=target)
    return out


# --- synthetic profiles ---------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Synthetic traffic: a daily volume, its rhythm, its burstiness, its token distributions.

    The rate of minute m is requests_per_day / 1440 × hourly[hour] × weekly[weekday] (each
    rhythm normalised to a mean of 1) × (1 + growth_per_month)^(m / one month) × a gamma factor
    with mean 1 and coefficient of variation `burstiness` (0: plain Poisson arrivals). Prompt and
    output tokens are log-normal (median, sigma of the log), outputs capped at max_tokens.
    """

    requests_per_day: float = 100_000.0
    days: float = 1.0
    hourly: tuple[float, ...] = tuple(float(x) for x in demo.HOURLY)
    weekly: tuple[float, ...] = tuple(float(x) for x in demo.WEEKDAY)
    burstiness: float = 0.0
    prompt_tokens_median: float = 150.0
    prompt_tokens_sigma: float = 1.1
    completion_tokens_median: float = 180.0
    completion_tokens_sigma: float = 0.9
    max_tokens: int = 1024
    growth_per_month: float = 0.0
    start: str = str(DEFAULT_START.astype("datetime64[s]"))
    seed: int = 0
    keywords: dict[str, float] = field(default_factory=dict, hash=False, compare=False)  # word -> share

    def check(self) -> Profile:
        def bad(key, value, allowed):
            return ValueError(f"profile {key} = {value!r} is not allowed: expected {allowed}")

        def within(key, value, limit):
            try:
                limits.check(limit, value, name=f"profile {key}")
            except ValueError:
                raise bad(key, value, limits.RANGES[limit].allowed()) from None

        within("requests_per_day", self.requests_per_day, "requests_per_day")
        within("days", self.days, "days")
        within("prompt_tokens_median", self.prompt_tokens_median, "median_tokens")
        within("completion_tokens_median", self.completion_tokens_median, "median_tokens")
        if self.requests_per_day * self.days > 50_000_000:
            raise bad(
                "requests_per_day",
                self.requests_per_day,
                f"at most 50,000,000 requests in all ({self.days:g} days): simulate fewer days and "
                "project the month with the fluid model",
            )
        for key in ("prompt_tokens_sigma", "completion_tokens_sigma"):
            within(key, getattr(self, key), "sigma")
        within("burstiness", self.burstiness, "burstiness")
        within("growth_per_month", self.growth_per_month, "growth")
        if isinstance(self.max_tokens, float):
            raise bad("max_tokens", self.max_tokens, limits.RANGES["max_tokens"].allowed())
        within("max_tokens", self.max_tokens, "max_tokens")
        for key, n in (("hourly", 24), ("weekly", 7)):
            v = getattr(self, key)
            ok = len(v) == n and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1e6
                for x in v
            )
            if not ok or sum(v) <= 0:
                raise bad(key, list(v), f"{n} weights from 0 to 1,000,000, not all zero")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise bad("seed", self.seed, "a whole number from 0 to 4,294,967,295")
        try:
            np.datetime64(self.start, "us")
        except ValueError:
            raise bad("start", self.start, "an ISO time such as 2025-01-06T00:00:00") from None
        for w, share in self.keywords.items():
            if not (isinstance(share, (int, float)) and 0 <= share <= 1):
                raise bad(f"keywords.{w}", share, "a share from 0 to 1")
        return self


def load_profile(path: str | Path) -> Profile:
    """A profile from a TOML or JSON file; every key is optional, unknown keys are refused."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"profile file {p} not found: pass the path of a TOML or JSON profile")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{p} is not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {e}") from None
    return profile_from_dict(data, str(p))


def profile_from_dict(data: dict, where: str = "profile") -> Profile:
    known = {f.name for f in fields(Profile)}
    for key in data:
        if key not in known:
            raise ValueError(f"{where}: {key} is not a profile setting: expected one of {', '.join(sorted(known))}")
    kw = dict(data)
    for key in ("hourly", "weekly"):
        if key in kw:
            kw[key] = tuple(kw[key]) if isinstance(kw[key], list) else kw[key]
    if isinstance(kw.get("start"), (int, float)):
        raise ValueError(f"{where}: start = {kw['start']!r} is not allowed: expected an ISO time")
    if "start" in kw:
        kw["start"] = str(kw["start"])
    try:
        return Profile(**kw).check()
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def _rhythm(profile: Profile, minutes: np.ndarray, start: np.datetime64) -> np.ndarray:
    t = start + (minutes * 60_000_000).astype("timedelta64[us]")
    hours = t.astype("datetime64[h]").astype(np.int64) % 24
    weekday = (t.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    h = np.asarray(profile.hourly, dtype=float)
    d = np.asarray(profile.weekly, dtype=float)
    return (h / h.mean())[hours] * (d / d.mean())[weekday]


def minute_rates(profile: Profile, days: float | None = None) -> np.ndarray:
    """Expected requests in each minute of `days` (default: the profile's), no randomness."""
    profile.check()
    days = profile.days if days is None else days
    m = np.arange(max(1, int(round(days * 1440))))
    growth = (1 + profile.growth_per_month) ** (m / (MONTH_DAYS * MINUTES_PER_DAY))
    start = np.datetime64(profile.start, "us")
    return profile.requests_per_day / 1440 * _rhythm(profile, m, start) * growth


def expected_requests(profile: Profile) -> float:
    """The requests a profile draws on average (what the work estimate reads before drawing them)."""
    return float(minute_rates(profile).sum())


def tokens(profile: Profile, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output tokens of `n` requests drawn from the profile's log-normals."""
    pt = np.maximum(1, np.rint(rng.lognormal(np.log(profile.prompt_tokens_median), profile.prompt_tokens_sigma, n)))
    ct = np.rint(rng.lognormal(np.log(profile.completion_tokens_median), profile.completion_tokens_sigma, n))
    return pt.astype(np.int64), np.clip(ct, 1, profile.max_tokens).astype(np.int64)


def synthetic(profile: Profile, seed: int | None = None, label: str = "synthetic") -> Workload:
    """Requests drawn from a profile: Poisson counts per minute (gamma-mixed when bursty),
    arrival times uniform within their minute, tokens log-normal."""
    profile.check()
    rng = np.random.default_rng(profile.seed if seed is None else seed)
    rates = minute_rates(profile)
    if profile.burstiness > 0:
        shape = 1 / profile.burstiness**2
        rates = rates * rng.gamma(shape, 1 / shape, len(rates))
    counts = rng.poisson(rates)
    n = int(counts.sum())
    minute = np.repeat(np.arange(len(rates)), counts)
    t = np.sort(minute * MINUTE_S + rng.random(n) * MINUTE_S)
    pt, ct = tokens(profile, n, rng)
    flags = {w: rng.random(n) < share for w, share in profile.keywords.items()}
    return Workload(
        t=t,
        prompt_tokens=pt,
        completion_tokens=ct,
        prompt_chars=pt * features.CHARS_PER_TOKEN,
        est_prompt_tokens=pt.copy(),
        max_tokens=np.full(n, profile.max_tokens, dtype=np.int64),
        word_flags=flags,
        span_s=len(rates) * MINUTE_S,
        start=np.datetime64(profile.start, "us"),
        label=label,
    )


def poisson(
    rate_per_s: float, seconds: float, profile: Profile | None = None, seed: int = 0, label: str | None = None
) -> Workload:
    """Flat Poisson arrivals at `rate_per_s` for `seconds`, tokens from `profile` (default Profile())."""
    if not (math.isfinite(rate_per_s) and rate_per_s >= 0):
        raise ValueError(f"the arrival rate must be >= 0 requests/s (got {rate_per_s!r})")
    p = profile or Profile()
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate_per_s * seconds))
    t = np.sort(rng.random(n) * seconds)
    pt, ct = tokens(p, n, rng)
    return Workload(
        t,
        pt,
        ct,
        pt * features.CHARS_PER_TOKEN,
        pt.copy(),
        np.full(n, p.max_tokens, dtype=np.int64),
        {},
        _check_span(seconds),
        np.datetime64(p.start, "us"),
        label or f"{rate_per_s:g} req/s",
    )


def fit_profile(w: Workload, days: float | None = None) -> Profile:
    """A profile fitted to a selection: volume, rhythm (when the span shows it), burstiness and
    log-normal tokens (median and sigma of the log of the non-zero counts)."""
    if w.n < 2:
        raise ValueError("fitting a profile needs at least 2 requests: pick a larger selection")

    def lognormal(x):
        x = x[x > 0]
        if len(x) < 2:
            return 1.0, 0.0
        lx = np.log(x)
        return float(np.exp(lx.mean())), float(lx.std())

    pm, ps = lognormal(w.prompt_tokens)
    cm, cs = lognormal(w.completion_tokens)
    counts = np.bincount(w.minute(), minlength=w.minutes).astype(float)
    mean = counts.mean()
    burst = math.sqrt(max(0.0, counts.var() - mean)) / mean if mean > 0 else 0.0
    hourly = tuple([1.0] * 24)
    weekly = tuple([1.0] * 7)
    if w.span_s >= DAY_S:
        clock_h = (w.clock(w.minute()).astype("datetime64[h]").astype(np.int64)) % 24
        exposure = np.bincount((w.clock().astype("datetime64[h]").astype(np.int64)) % 24, minlength=24)
        per_hour = np.bincount(clock_h, minlength=24) / np.maximum(exposure, 1)
        if per_hour.sum() > 0:
            hourly = tuple(float(x) for x in per_hour / per_hour.mean())
    max_tok = int(max(1, w.completion_tokens.max(initial=1)))
    return Profile(
        requests_per_day=w.n / w.span_s * DAY_S,
        days=days if days is not None else min(max(w.span_s / DAY_S, DAYS.lo), DAYS.hi),
        hourly=hourly,
        weekly=weekly,
        burstiness=min(burst, 10.0),
        prompt_tokens_median=pm,
        prompt_tokens_sigma=min(ps, 10.0),
        completion_tokens_median=cm,
        completion_tokens_sigma=min(cs, 10.0),
        max_tokens=max_tok,
        start=str(w.start.astype("datetime64[s]")),
    ).check()
