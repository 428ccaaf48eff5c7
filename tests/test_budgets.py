"""Budgets hold: concurrency, streams, GPU-hours, periods, alerts, webhooks, spend export."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from sophia import config
from sophia.budgets import alerts, spend
from sophia.budgets import model as bmod
from sophia.budgets import store as budget_store
from sophia.budgets.guard import BudgetGuard
from sophia.ingest import demo
from sophia.money import pricing
from sophia.routing.result import ChatRequest
from sophia.routing.router import Router
from tests.fakeopenai import FakeOpenAI
from tests.helpers import DEDICATED_NAMES, make_config, read_rows, reference_config

UTC = bmod.zone("UTC")


class Now:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def budget(cfg, **kw) -> bmod.Budget:
    raw = {"name": "b", "scope": "global", "period": "day", "amount_usd": 1.0, "action": "block"} | kw
    return bmod.parse_budget(raw, cfg)


@pytest.fixture
def fleet():
    fakes = {n: FakeOpenAI().start() for n in ("serverless", *DEDICATED_NAMES)}
    yield fakes
    for f in fakes.values():
        f.stop()


def router_with(fleet, log, budgets, now=None, on_alert=None, **overrides):
    db, writer = log
    cfg = make_config(fleet["serverless"].base_url, [fleet[n].base_url for n in DEDICATED_NAMES], **overrides)
    r = Router(cfg, writer, sleep=lambda s: None)
    r.guard = BudgetGuard(
        cfg, [budget(cfg, **b) for b in budgets], UTC, now=now or Now(datetime(2026, 5, 5, 12)), on_alert=on_alert
    )
    return r


def _all_in_flight_before_any_settles(guard: BudgetGuard, n: int) -> None:
    """Hold every settlement until `n` requests have been admitted. A settled request frees
    its worst-case reservation down to its (smaller) actual cost, so without the hold a late
    request could be admitted into room an early one freed, and the test would race."""
    admitted, lock, all_in = [0], threading.Lock(), threading.Event()
    admit, settle = guard.admit, guard.settle

    def counted_admit(*args, **kw):
        out = admit(*args, **kw)
        with lock:
            admitted[0] += 1
            if admitted[0] >= n:
                all_in.set()
        return out

    def held_settle(*args, **kw):
        assert all_in.wait(60), "not every request was admitted"
        return settle(*args, **kw)

    guard.admit, guard.settle = counted_admit, held_settle


@pytest.mark.parametrize("soft", [0.8, 1.0])
def test_fifty_concurrent_requests_against_a_budget_for_ten(fleet, log, soft):
    db, writer = log
    fleet["serverless"].reply = " ".join(["word"] * 100)  # every reply uses all of max_tokens
    cfg = make_config(fleet["serverless"].base_url, [fleet[n].base_url for n in DEDICATED_NAMES])
    probe = Router(cfg, None, backends={}).decide(ChatRequest([{"role": "user", "content": "x" * 40}], 100))
    est = BudgetGuard(cfg, [], UTC).estimate(probe, cfg)
    limit = 10 * est
    scope = "model:llama-4-scout-17b-16e-instruct"
    r = router_with(fleet, log, [{"scope": scope, "amount_usd": limit, "soft_limit": soft}])
    results, barrier = [], threading.Barrier(50)
    _all_in_flight_before_any_settles(r.guard, 50)

    def one(i):
        barrier.wait()
        results.append(r.chat(ChatRequest([{"role": "user", "content": f"{i:02d}" + "x" * 38}], 100, source="api")))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = read_rows(writer, db)
    assert len(rows) == 50
    spent = sum(x["metered_cost_usd"] for x in rows if x["model"] == "llama-4-scout-17b-16e-instruct")
    assert spent <= limit + 1e-12  # all settled: nothing in flight any more
    scout = [x for x in rows if x["status"] == "ok" and x["model"] == "llama-4-scout-17b-16e-instruct"]
    others = [x for x in rows if x not in scout]
    assert 1 <= len(scout) <= 10 and len(others) >= 40
    assert all(x["reason"] == "budget" for x in others), [(x["status"], x["model"], x["reason"]) for x in others]
    refused = [x for x in others if x["status"] == "refused"]
    downgraded = [x for x in others if x["status"] == "ok"]
    assert all("'b' has reached its limit" in x["error"] for x in refused)
    assert all(x["model"] == "llama3.1-8b-instruct" for x in downgraded)
    # past the soft limit requests are downgraded; with no soft limit they meet the hard one
    assert (len(downgraded) > 0) if soft < 1 else (len(refused) == len(others))
    snap = r.guard.snapshot()[0]
    assert snap["reserved_usd"] == 0 and snap["metered_usd"] == pytest.approx(spent, abs=1e-12)


def test_downgrade_goes_to_the_budget_model_and_soft_limit_too(fleet, log):
    db, writer = log
    r = router_with(
        fleet,
        log,
        [
            {
                "scope": "model:llama-4-scout-17b-16e-instruct",
                "amount_usd": 1e-5,
                "action": "downgrade",
                "soft_limit": 0.5,
            }
        ],
    )
    models = [r.chat(ChatRequest([{"role": "user", "content": "hello"}], 20, source="cli")).model for _ in range(6)]
    assert models[0] == "llama-4-scout-17b-16e-instruct"
    assert "llama3.1-8b-instruct" in models
    rows = read_rows(writer, db)
    assert all(x["reason"] == "budget" for x in rows if x["model"] == "llama3.1-8b-instruct")


@pytest.mark.parametrize("mode", ["ok", "no_usage"])
def test_streams_count_toward_budgets(fleet, log, mode):
    fleet["serverless"].mode = mode
    r = router_with(fleet, log, [{"amount_usd": 100.0, "scope": "tier:serverless"}])
    h = r.stream(ChatRequest([{"role": "user", "content": "stream me a reply"}], 50, source="playground"))
    text = "".join(h.texts())
    assert text and h.result.metered_cost_usd > 0
    assert h.result.usage_estimated is (mode == "no_usage")
    assert r.guard.snapshot()[0]["metered_usd"] == pytest.approx(h.result.metered_cost_usd, abs=1e-12)


def test_dedicated_only_workload_still_grows_with_gpu_hours(fleet, log):
    now = Now(datetime(2026, 5, 5, 0, 0))
    r = router_with(fleet, log, [{"scope": "tier:dedicated", "amount_usd": 1000.0}], now=now)
    hourly = sum(e.hourly_usd for e in r.cfg.tier_endpoints("dedicated"))
    assert r.guard.snapshot()[0]["spent_usd"] == 0
    r.chat(ChatRequest([{"role": "user", "content": "x"}], 10, force_tier="dedicated", source="api"))
    now.t += timedelta(hours=2, minutes=30)  # three started hours
    snap = r.guard.snapshot()[0]
    assert snap["metered_usd"] == 0 and snap["fixed_usd"] == pytest.approx(3 * hourly)


def test_period_boundaries_in_the_configured_time_zone():
    tz = bmod.zone("America/New_York")
    # 23:59:59.999 and 00:00:00 local on 2026-03-07/08 (UTC-5)
    late = datetime(2026, 3, 8, 4, 59, 59, 999000)
    midnight = datetime(2026, 3, 8, 5, 0, 0)
    assert bmod.period_bounds("day", late, tz) != bmod.period_bounds("day", midnight, tz)
    assert bmod.period_bounds("day", midnight, tz) == (midnight, datetime(2026, 3, 9, 4, 0))  # DST starts
    jan = bmod.period_bounds("month", datetime(2026, 1, 31, 23, 0), UTC)
    feb = bmod.period_bounds("month", datetime(2026, 2, 1, 0, 0), UTC)
    assert jan == (datetime(2026, 1, 1), datetime(2026, 2, 1)) and feb[0] == datetime(2026, 2, 1)
    assert bmod.period_bounds("week", datetime(2026, 5, 7), UTC)[0] == datetime(2026, 5, 4)  # a Monday


def test_month_rolls_over_and_alerts_fire_once_per_period():
    cfg = reference_config()
    now = Now(datetime(2026, 1, 31, 23, 0))
    raised = []
    g = BudgetGuard(
        cfg,
        [budget(cfg, period="month", scope="tier:serverless", amount_usd=1.0)],
        UTC,
        now=now,
        on_alert=lambda b, kind, start, spent: raised.append((kind, start)),
    )
    res = g.admit(lambda st: _decision(cfg, st), _state(), "api", cfg)[1]
    g.settle(res, "serverless", "serverless", cfg.routing.serverless_model, 0.85, "api")
    res = g.admit(lambda st: _decision(cfg, st), _state(), "api", cfg)[1]
    g.settle(res, "serverless", "serverless", cfg.routing.serverless_model, 0.01, "api")
    assert raised == [("soft", datetime(2026, 1, 1))]
    now.t = datetime(2026, 2, 1, 0, 0)
    assert g.snapshot()[0]["spent_usd"] == 0 and g.snapshot()[0]["period_start"] == datetime(2026, 2, 1)
    res = g.admit(lambda st: _decision(cfg, st), _state(), "api", cfg)[1]
    g.settle(res, "serverless", "serverless", cfg.routing.serverless_model, 2.0, "api")
    assert raised[1:] == [("soft", datetime(2026, 2, 1)), ("hard", datetime(2026, 2, 1))]


def _state():
    from sophia.routing.policy import RuntimeState

    return RuntimeState()


def _decision(cfg, st):
    from sophia.routing import features, policy

    f = features.extract([{"role": "user", "content": "hi"}], 10, cfg.scorer, 512)
    return policy.decide(f, cfg, st)


class Hook(http.server.BaseHTTPRequestHandler):
    fails = 0
    hang = False
    bodies: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if Hook.hang:
            time.sleep(3)
        if Hook.fails > 0:
            Hook.fails -= 1
            self.send_response(500)
            self.end_headers()
            return
        Hook.bodies.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def hook():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Hook.fails, Hook.hang, Hook.bodies = 0, False, []
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook?token=secret-token"
    srv.shutdown()


def test_webhook_retries_until_delivered(log, hook, capsys):
    db, _ = log
    cfg = reference_config()
    Hook.fails = 2
    sleeps = []
    n = alerts.Notifier(db, hook, sleep=sleeps.append)
    b = budget(cfg)
    n.raise_alert(b, "soft", datetime(2026, 5, 5), 0.85)
    n.raise_alert(b, "soft", datetime(2026, 5, 5), 0.90)  # same budget, kind, period: once
    assert n.drain(10)
    n.close()
    assert n.delivered == 1 and sleeps == [1.0, 2.0]
    assert Hook.bodies[0]["budget"] == "b" and Hook.bodies[0]["kind"] == "soft"
    with db.cursor() as cur:
        assert alerts.recent(cur)[0]["delivered"] is True
        assert len(alerts.recent(cur)) == 1
    assert "secret-token" not in capsys.readouterr().err


def test_hanging_webhook_does_not_slow_routing(fleet, log, hook):
    db, _ = log
    Hook.hang = True
    n = alerts.Notifier(db, hook, timeout_s=2.0, retries=1)
    r = router_with(
        fleet, log, [{"scope": "tier:serverless", "amount_usd": 1e-7, "action": "downgrade"}], on_alert=n.raise_alert
    )
    t = time.monotonic()
    for _ in range(5):
        assert r.chat(ChatRequest([{"role": "user", "content": "hi"}], 10, source="api")).ok
    elapsed = time.monotonic() - t
    assert n.recorded <= 2 and n.delivered == 0  # the webhook is still hanging
    assert elapsed < 1.5  # routing did not wait for it (each request takes milliseconds)
    n.close()


def test_spend_export_equals_independent_aggregation(log):
    db, _ = log
    cfg = reference_config()
    demo.write(db, demo.generate(cfg, 4000, 9, seed=3, end=datetime(2026, 5, 10)), cfg=cfg)
    now = datetime(2026, 5, 10)
    with db.cursor() as cur:
        df = spend.spend(cur, cfg, "week", ["tier", "model"], now=now)
        rows = cur.execute("SELECT ts, tier, model, metered_cost_usd, prompt_tokens FROM requests").fetchall()
    hourly = sum(e.hourly_usd for e in cfg.tier_endpoints("dedicated"))
    total_metered = sum(Decimal(repr(r[3])) for r in rows)
    assert abs(Decimal(repr(float(df["metered_cost_usd"].sum()))) - total_metered) < Decimal("0.005")
    weeks = sorted({(r[0] - timedelta(days=r[0].weekday())).date() for r in rows})
    for wk in weeks:
        start = datetime.combine(wk, datetime.min.time())
        got = df[(df["period_start"] == start)]
        exp = sum(Decimal(repr(r[3])) for r in rows if start <= r[0] < start + timedelta(days=7))
        assert abs(Decimal(repr(float(got["metered_cost_usd"].sum()))) - exp) < Decimal("0.005")
        # The demo traffic charged its own span: every started hour of it in each week, up to now.
        lo = max(start, min(r[0] for r in rows))
        hi = min(start + timedelta(days=7), max(r[0] for r in rows) + timedelta(microseconds=1), now)
        hours = math.ceil((hi - lo).total_seconds() / 3600 - 1e-9) if hi > lo else 0
        assert got["fixed_cost_usd"].sum() == pytest.approx(hourly * hours)
        assert (got["requests"].sum()) == sum(1 for r in rows if start <= r[0] < start + timedelta(days=7))
    text = spend.to_csv(df)
    assert text.splitlines()[0] == (
        "period_start,tier,model,requests,prompt_tokens,completion_tokens,"
        "metered_cost_usd,fixed_cost_usd,total_cost_usd,all_serverless_primary_usd,all_premium_usd"
    )
    # The baselines: every row's tokens at the primary and premium prices, summed here by hand.
    with db.cursor() as cur:
        toks = cur.execute("SELECT sum(prompt_tokens), sum(completion_tokens) FROM requests").fetchone()
    for col, model in (
        ("all_serverless_primary_usd", cfg.routing.serverless_model),
        ("all_premium_usd", cfg.routing.premium_model),
    ):
        p = pricing.price_of(cfg, model)
        assert df[col].sum() == pytest.approx(
            (toks[0] * p.input_per_mtok + toks[1] * p.output_per_mtok) / 1e6, abs=1e-6
        )


def test_spend_csv_cells_are_inert(log):
    import pandas as pd

    df = pd.DataFrame(
        {
            "period_start": [datetime(2026, 1, 1)],
            "model": ["=HYPERLINK(1)"],
            "requests": [1],
            "prompt_tokens": [1],
            "completion_tokens": [1],
            "metered_cost_usd": [0.1],
            "fixed_cost_usd": [0.0],
            "total_cost_usd": [0.1],
        }
    )
    assert "'=HYPERLINK(1)" in spend.to_csv(df)


def test_budgets_are_versioned_and_validated(log):
    db, _ = log
    cfg = reference_config()
    with db.cursor() as cur:
        v1, bs = budget_store.resolve(cur, cfg)
        assert [b.name for b in bs] == ["monthly-total", "serverless-daily"]  # from sophia.toml
        assert budget_store.resolve(cur, cfg) == (v1, bs)  # unchanged file: no new version
        v2 = budget_store.save(cur, [budget(cfg)], "cli")
        assert v2 == v1 + 1 and budget_store.resolve(cur, cfg) == (v2, [budget(cfg)])
        # A version stored before a bound existed (1e15 USD) is skipped with a warning, never fatal.
        v3 = budget_store._STORE.insert(
            cur, json.dumps([{**json.loads(bmod.to_json([budget(cfg)]))[0], "amount_usd": 1e15}]), "x", "cli", None
        )
        assert budget_store.latest(cur, cfg) == (v3, list(cfg.budgets))
    for bad, needle in [
        ({"amount_usd": -1}, "amount_usd"),
        ({"period": "year"}, "period"),
        ({"scope": "tier:gpu"}, "scope"),
        ({"action": "panic"}, "action"),
        ({"soft_limit": 1.5}, "soft_limit"),
    ]:
        with pytest.raises(config.ConfigError, match=needle):
            budget(cfg, **bad)


# --- no way around a hard limit -------------------------------------------------------------


def _guarded(cfg, budgets, spent: dict[str, float]):
    r = Router(cfg, None, sleep=lambda s: None)
    r.guard = BudgetGuard(
        cfg,
        [bmod.parse_budget({"period": "day", "sources": ["cli"]} | b, cfg) for b in budgets],
        UTC,
        now=Now(datetime(2026, 5, 5, 12)),
    )
    periods = r.guard.periods()
    r.guard.load_others({n: (periods[n][0], usd) for n, usd in spent.items()})
    return r


def test_failover_cannot_spend_where_a_budget_blocks(fleet):
    cfg = make_config(fleet["serverless"].base_url, [fleet[n].base_url for n in DEDICATED_NAMES])
    r = _guarded(cfg, [{"name": "sl", "scope": "tier:serverless", "amount_usd": 0.001, "action": "block"}], {"sl": 5.0})
    for n in DEDICATED_NAMES:
        fleet[n].mode = "http500"
    res = r.chat(ChatRequest([{"role": "user", "content": "analyze context session remember"}], 2000, source="cli"))
    assert res.tier == "dedicated" and res.status == "error"  # the premium hop was left out of the chain
    assert "serverless" not in res.path and fleet["serverless"].requests == []
    assert r.guard.snapshot()[0]["reserved_usd"] == 0


def test_forcing_a_model_does_not_pass_a_hard_downgrade(fleet):
    cfg = make_config(fleet["serverless"].base_url, [fleet[n].base_url for n in DEDICATED_NAMES])
    r = _guarded(
        cfg, [{"name": "sl", "scope": "tier:serverless", "amount_usd": 0.001, "action": "downgrade"}], {"sl": 5.0}
    )
    res = r.chat(
        ChatRequest([{"role": "user", "content": "hi"}], 20, force_model=cfg.routing.premium_model, source="cli")
    )
    assert (res.model, res.reason) == (cfg.routing.budget_model, "budget")


def test_a_downgrade_into_a_blocked_model_is_refused(fleet):
    cfg = make_config(fleet["serverless"].base_url, [fleet[n].base_url for n in DEDICATED_NAMES])
    r = _guarded(
        cfg,
        [
            {"name": "glob", "scope": "tier:serverless", "amount_usd": 0.01, "action": "downgrade"},
            {"name": "small", "scope": f"model:{cfg.routing.budget_model}", "amount_usd": 0.001, "action": "block"},
        ],
        {"glob": 1.0, "small": 5.0},
    )
    res = r.chat(ChatRequest([{"role": "user", "content": "hello"}], 50, source="cli"))
    assert res.status == "refused" and res.metered_cost_usd == 0 and fleet["serverless"].requests == []


def test_editing_a_budget_starts_its_ledger_again():
    cfg = reference_config()
    g = BudgetGuard(
        cfg,
        [budget(cfg, scope="model:llama-4-scout-17b-16e-instruct", amount_usd=10.0)],
        UTC,
        now=Now(datetime(2026, 5, 5, 12)),
    )
    res = g.admit(lambda st: _decision(cfg, st), _state(), "api", cfg)[1]
    g.settle(res, "serverless", "serverless", "llama-4-scout-17b-16e-instruct", 0.5, "api")
    assert g.snapshot()[0]["metered_usd"] == 0.5
    g.set_budgets([budget(cfg, scope="model:llama3.1-8b-instruct", amount_usd=10.0)])
    assert g.snapshot()[0]["metered_usd"] == 0
