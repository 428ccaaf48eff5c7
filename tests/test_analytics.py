"""sophia.log.analytics: the app's SQL, checked against pandas over the same rows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest

from sophia.ingest import demo
from sophia.log import analytics, schema
from sophia.log.db import Database
from sophia.log.filters import FilterError, Filters
from sophia.money import pricing
from tests.helpers import reference_config

END = datetime(2026, 3, 2, 0, 0)


@pytest.fixture(scope="module")
def cfg():
    return reference_config()


def handmade(i: int, **kw) -> dict:
    r = {
        "request_id": f"hand{i:04d}",
        "ts": END - timedelta(hours=1, minutes=i),
        "source": "playground",
        "prompt_chars": 40,
        "est_prompt_tokens": 10,
        "max_tokens": 100,
        "n_messages": 1,
        "keywords": [],
        "tier": "serverless",
        "endpoint": "serverless",
        "model": "llama-4-scout-17b-16e-instruct",
        "complexity": 0.0,
        "breakdown": json.dumps({"length": 0.0}),
        "estimated_cost_usd": 0.00003,
        "reason": "cost-optimized",
        "policy_reason": "cost-optimized",
        "status": "ok",
        "attempts": 1,
        "failover_path": ["serverless"],
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "usage_estimated": False,
        "metered_cost_usd": 0.0000068,
        "amortized_cost_usd": 0.0,
        "latency_ms": 100.0 + i,
        "ttft_ms": 20.0,
        "streamed": True,
        "cached": False,
        "simulated": False,
        "prompt_text": None,
        "response_text": None,
    }
    r.update(kw)
    return r


@pytest.fixture(scope="module")
def con(tmp_path_factory, cfg):
    """A log with demo traffic over 10 days and a few handmade records with known text."""
    path = tmp_path_factory.mktemp("an") / "a.duckdb"
    db = Database(path)
    demo.write(db, demo.generate(cfg, 4000, 10, seed=5, end=END), cfg=cfg)
    hand = [
        handmade(1, prompt_text="Please ANALYZE the Zebra report", response_text="zebras are striped"),
        handmade(
            2,
            status="error",
            error="serverless answered HTTP 503",
            completion_tokens=0,
            prompt_tokens=0,
            metered_cost_usd=0.0,
            source="cli",
        ),
        # Failed over: tried serverless, served by sophia-ai-core.
        handmade(
            3,
            tier="dedicated",
            endpoint="sophia-ai-core",
            model="llama-3.3-70b-instruct",
            reason="failover",
            failover_path=["serverless", "sophia-ai-core"],
            attempts=2,
            metered_cost_usd=0.0,
            amortized_cost_usd=0.00002,
            source="api",
        ),
        handmade(
            4, tier=None, endpoint=None, model=None, status="refused", reason="budget", failover_path=[], source="api"
        ),
    ]
    db.close()
    c = duckdb.connect(str(path))
    c.register("_h", schema.to_arrow(hand))
    c.execute("INSERT INTO requests BY NAME SELECT * FROM _h")
    c.unregister("_h")
    yield c
    c.close()


@pytest.fixture(scope="module")
def df(con):
    return con.execute("SELECT * FROM requests").df()


def select(df: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """The same selection as Filters.where, in pandas."""
    m = pd.Series(True, index=df.index)
    if f.start is not None:
        m &= df.ts >= f.start
    if f.end is not None:
        m &= df.ts < f.end
    for name in ("source", "tier", "endpoint", "model", "reason", "status"):
        values = getattr(f, name)
        if values:
            m &= df[name].isin(values)
    if f.exclude_source:
        m &= ~df.source.isin(f.exclude_source)
    if f.text:
        t = f.text.lower()
        m &= (
            df.request_id.str.startswith(t)
            | df.prompt_text.fillna("").str.lower().str.contains(t, regex=False)
            | df.response_text.fillna("").str.lower().str.contains(t, regex=False)
            | df.error.fillna("").str.lower().str.contains(t, regex=False)
        )
    return df[m]


CASES = [
    Filters(),
    Filters(start=END - timedelta(days=3), end=END - timedelta(days=1)),
    Filters(tier=("dedicated",)),
    Filters(source=("api", "cli")),
    Filters(exclude_source=("demo",)),
    Filters(reason=("failover", "high-complexity"), status=("ok",)),
    Filters(endpoint=("sophia-ai-core",), model=("llama-3.3-70b-instruct",)),
    Filters(status=("error", "refused")),
    Filters(text="zebra"),
    Filters(text="HTTP 503"),
    Filters(text="hand00"),
    Filters(source=("nobody",)),
]


@pytest.mark.parametrize("f", CASES, ids=repr)
def test_count_and_pages_match_pandas(con, df, f):
    want = select(df, f)
    assert analytics.count(con, f) == len(want)
    # Every row exactly once over the pages, newest first.
    got = pd.concat([analytics.page(con, f, 500, off) for off in range(0, max(len(want), 1), 500)])
    assert len(got) == len(want)
    assert set(got.request_id) == set(want.request_id)
    assert got.ts.is_monotonic_decreasing
    assert list(got.columns) == list(analytics.PAGE_COLUMNS)


def test_page_cost_is_metered_plus_amortized(con, df):
    page = analytics.page(con, Filters(), 200, 0).set_index("request_id")
    src = df.set_index("request_id").loc[page.index]
    assert (page.cost_usd - (src.metered_cost_usd + src.amortized_cost_usd)).abs().max() < 1e-9


def expected_fixed(df, cfg, f, start, end) -> float:
    """GPU-hours by hand: the demo traffic charged its own span, the configured fleet ran from
    the first live request on; a selection pays the spans of the sources it reads, once."""
    chosen = set(f.source) if f.source else set(df.source)
    chosen -= set(f.exclude_source)
    spans = []
    if "demo" in chosen:
        d = df[df.source == "demo"]
        spans.append((d.ts.min(), d.ts.max() + timedelta(microseconds=1)))
    live = df[df.source.isin(["playground", "cli", "api"])]
    if chosen & {"playground", "cli", "api"} and len(live):
        spans.append((live.ts.min(), datetime(2100, 1, 1)))
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if min(b, end) > max(a, start))
    merged: list[list] = []
    for a, b in clipped:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    hours = sum((b - a).total_seconds() for a, b in merged) / 3600
    return sum(e.hourly_usd for e in cfg.endpoints if e.tier == "dedicated") * hours


@pytest.mark.parametrize("f", CASES[:8], ids=repr)
def test_overview_equals_pandas(con, df, cfg, f):
    f = Filters(start=f.start, end=f.end, source=f.source, exclude_source=f.exclude_source)
    o = analytics.overview(con, cfg, f)
    sel = select(df, f)
    assert o["total_requests"] == len(sel)
    assert o["metered_cost_usd"] == pytest.approx(sel.metered_cost_usd.sum(), abs=1e-6)
    assert o["amortized_cost_usd"] == pytest.approx(sel.amortized_cost_usd.sum(), abs=1e-6)
    if len(sel):
        start = f.start or sel.ts.min()
        end = f.end or sel.ts.max() + timedelta(microseconds=1)
        fixed = expected_fixed(df, cfg, f, start, end)
        assert o["fixed_cost_usd"] == pytest.approx(fixed, abs=1e-6)
        assert o["spend_usd"] == pytest.approx(sel.metered_cost_usd.sum() + fixed, abs=1e-6)
        assert o["error_rate"] == pytest.approx((sel.status != "ok").mean())
        assert o["failover_rate"] == pytest.approx((sel.reason == "failover").mean())
        assert o["serverless_percentage"] == pytest.approx(100 * (sel.tier == "serverless").mean(), abs=0.01)
        ok = sel[sel.status == "ok"]
        if len(ok):
            assert o["latency_p50_ms"] == pytest.approx(ok.latency_ms.quantile(0.5), abs=0.06)
            assert o["latency_p95_ms"] == pytest.approx(ok.latency_ms.quantile(0.95), abs=0.06)

        def at(model):
            p = pricing.price_of(cfg, model)
            return ((sel.prompt_tokens * p.input_per_mtok + sel.completion_tokens * p.output_per_mtok) / 1e6).sum()

        primary, premium = at(cfg.routing.serverless_model), at(cfg.routing.premium_model)
        actual = sel.metered_cost_usd.sum() + fixed
        assert o["actual_total_usd"] == pytest.approx(actual, abs=1e-6)
        assert o["all_serverless_primary_usd"] == pytest.approx(primary, abs=1e-6)
        assert o["all_premium_usd"] == pytest.approx(premium, abs=1e-6)
        assert o["cost_savings_usd"] == pytest.approx(primary - actual, abs=1e-6)
    else:
        assert o["error_rate"] == 0 and o["gpu_utilization"] in (None, 0.0)


@pytest.mark.parametrize("by", analytics.GROUP_BY)
@pytest.mark.parametrize("grain", ["hour", "day", "week", "month"])
def test_timeseries_sums_to_the_totals(con, df, by, grain):
    f = Filters(start=END - timedelta(days=8), end=END)
    ts = analytics.timeseries(con, f, by, grain)
    sel = select(df, f)
    assert ts.requests.sum() == len(sel)
    assert ts.metered_usd.sum() == pytest.approx(sel.metered_cost_usd.sum(), abs=1e-9)
    per_group = ts.groupby("group").requests.sum().to_dict()
    want = sel[by].fillna(analytics.MISSING).value_counts().to_dict()
    assert per_group == want
    # DuckDB's buckets are the ones bucket_starts lists (so the fixed line aligns with the bars).
    assert set(ts.bucket) <= set(analytics.bucket_starts(f.start, f.end, grain))


def test_fixed_series_adds_up_to_the_range(cfg):
    start, end = datetime(2026, 1, 30, 13, 20), datetime(2026, 3, 4, 7, 5)
    for grain in analytics.GRAINS:
        s = analytics.fixed_series(cfg, start, end, grain)
        assert s.fixed_usd.sum() == pytest.approx(pricing.fixed_cost(cfg.endpoints, start, end), abs=1e-6)
        assert s.bucket.is_monotonic_increasing


def test_latency_series_and_breakdown(con, df):
    f = Filters(start=END - timedelta(days=2), end=END)
    lat = analytics.latency_series(con, f, "hour")
    ok = select(df, f)
    ok = ok[ok.status == "ok"]
    assert lat.requests.sum() == len(ok)
    assert (lat.p95_ms >= lat.p50_ms).all()
    b = analytics.breakdown_by(con, f, "reason")
    assert dict(zip(b.group, b.requests, strict=True)) == select(df, f).reason.value_counts().to_dict()


def test_endpoint_stats_counts_tries_and_failures(con, df, cfg):
    since = END - timedelta(hours=3)
    s = analytics.endpoint_stats(con, cfg, since).set_index("endpoint")
    assert list(s.index) == [e.name for e in cfg.endpoints]
    sel = df[df.ts >= since]
    tries = {e.name: 0 for e in cfg.endpoints}
    fails = dict(tries)
    for path, served, status in zip(sel.failover_path, sel.endpoint, sel.status, strict=True):
        for name in path:
            tries[name] += 1
            if name != served or status not in ("ok", "cancelled"):
                fails[name] += 1
    assert s.tries.to_dict() == tries
    assert s.failures.to_dict() == fails
    for name, n in tries.items():
        if n:
            assert s.error_rate[name] == pytest.approx(fails[name] / n)
        else:
            assert pd.isna(s.error_rate[name])
    lat = analytics.endpoint_latency(con, since, "hour")
    assert lat.requests.sum() == ((sel.status == "ok") & sel.endpoint.notna()).sum()


def test_facets_bounds_version_and_record(con, df):
    fa = analytics.facets(con)
    for name in analytics.FACETS:
        assert fa[name] == sorted(df[name].dropna().unique())
    n, first, last = analytics.bounds(con)
    assert (n, first, last) == (len(df), df.ts.min(), df.ts.max())
    assert analytics.data_version(con) == (len(df), df.ts.max().isoformat())
    rec = analytics.record(con, "hand0003")
    assert rec["failover_path"] == ["serverless", "sophia-ai-core"] and rec["breakdown"] == {"length": 0.0}
    assert rec["cost_usd"] == pytest.approx(0.00002)
    assert analytics.record(con, "no-such-id") is None and analytics.record(con, "  ") is None


def test_span_and_granularity(con, df):
    assert analytics.span(con, Filters(source=("api",))) == (
        df[df.source == "api"].ts.min(),
        df[df.source == "api"].ts.max() + timedelta(microseconds=1),
    )
    f = Filters(start=END - timedelta(days=1), end=END)
    assert analytics.span(con, f) == (f.start, f.end)
    t = datetime(2026, 1, 1)
    assert analytics.granularity(t, t + timedelta(days=1)) == "hour"
    assert analytics.granularity(t, t + timedelta(days=30)) == "day"
    assert analytics.granularity(t, t + timedelta(days=200)) == "week"
    assert analytics.granularity(t, t + timedelta(days=900)) == "month"


def test_bad_filters_say_what_is_wrong(con):
    with pytest.raises(FilterError, match="before it starts"):
        analytics.count(con, Filters(start=END, end=END - timedelta(days=1)))
    with pytest.raises(FilterError, match="keep it to"):
        analytics.count(con, Filters(text="x" * 500))
    with pytest.raises(FilterError, match="cannot split by"):
        analytics.timeseries(con, Filters(), "prompt_text; DROP TABLE requests", "day")
    with pytest.raises(FilterError, match="granularity"):
        analytics.timeseries(con, Filters(), "tier", "minute'); --")
    with pytest.raises(FilterError, match="page size"):
        analytics.page(con, Filters(), 0, 0)
    with pytest.raises(FilterError, match="offset"):
        analytics.page(con, Filters(), 10, -1)
    # Values are parameters, never SQL.
    assert analytics.count(con, Filters(tier=("x' OR '1'='1",))) == 0
    assert analytics.count(con, Filters(text="%")) == 0


def test_filters_are_hashable_cache_keys():
    a = Filters(tier=["dedicated"], source=["api"])
    b = Filters(tier=("dedicated",), source=("api",))
    assert a == b and hash(a) == hash(b)
