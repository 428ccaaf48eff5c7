"""Budget enforcement on the request path, in memory and safe under concurrency.

Before a call, the request's estimated cost is reserved against every budget covering where
it will go; after the call the reservation is settled with the actual cost. The check and
the reservation happen under one lock, so concurrent requests can overshoot a hard limit by
no more than the estimates of the requests in flight. Nothing here touches the database:
spend routed by other processes is fed in by `load_others`, from a background refresh.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sophia.budgets import model as bmod
from sophia.config import Config
from sophia.money import pricing
from sophia.routing import policy
from sophia.vocab import BudgetAction, Reason, Tier

_SEVERITY = {None: 0, BudgetAction.DOWNGRADE: 1, BudgetAction.DEDICATED_ONLY: 2, BudgetAction.BLOCK: 3}


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Reservation:
    amount: float
    names: tuple[str, ...]
    limited_by: str | None = None  # the budget whose hard limit changed the decision


@dataclass
class _Ledger:
    start: datetime
    end: datetime
    others: float = 0.0  # metered spend this period routed by other processes (or before start-up)
    own: float = 0.0  # metered spend this period settled by this process
    reserved: float = 0.0
    hourly: float = 0.0  # GPU-hours price of the dedicated endpoints in scope
    budget: bmod.Budget | None = None
    alerted: set[str] = field(default_factory=set)


Alert = Callable[[bmod.Budget, str, datetime, float], None]


class BudgetGuard:
    def __init__(
        self,
        cfg: Config,
        budgets: list[bmod.Budget],
        tz: ZoneInfo,
        now: Callable[[], datetime] = _utcnow,
        on_alert: Alert | None = None,
    ) -> None:
        self.cfg = cfg
        self.tz = tz
        self.now = now
        self.on_alert = on_alert
        self._lock = threading.Lock()
        self.budgets: list[bmod.Budget] = []
        self._ledgers: dict[str, _Ledger] = {}
        self._next_end = datetime.max  # the soonest period end: nothing to roll before it
        # The fleet's history (money.fleet periods); None: the configured fleet all along.
        self.fleet_periods: list | None = None
        self.set_budgets(budgets)

    def set_budgets(self, budgets: list[bmod.Budget]) -> None:
        with self._lock:
            now = self.now()
            old = self._ledgers
            self.budgets = list(budgets)
            self._match_cache: dict[tuple, list[bmod.Budget]] = {}
            self._ledgers = {}
            for b in self.budgets:
                start, end = bmod.period_bounds(b.period, now, self.tz)
                keep = old.get(b.name)
                # A ledger carries over only for the same budget in the same period: a changed
                # scope, period or sources counts different spend.
                same = keep is not None and keep.start == start and keep.budget == b
                led = keep if same else _Ledger(start, end, budget=b)
                led.hourly = bmod.fixed_hourly(b, self.cfg)
                self._ledgers[b.name] = led
            self._next_end = min((led.end for led in self._ledgers.values()), default=datetime.max)

    # --- the request path -----------------------------------------------------------------

    def _roll(self, now: datetime) -> None:
        if now < self._next_end:
            return
        for b in self.budgets:
            led = self._ledgers[b.name]
            if now >= led.end:  # a new period: spend starts again; in-flight reservations carry
                start, end = bmod.period_bounds(b.period, now, self.tz)
                self._ledgers[b.name] = _Ledger(start, end, reserved=led.reserved, hourly=led.hourly, budget=b)
        self._next_end = min((led.end for led in self._ledgers.values()), default=datetime.max)

    def set_fleet(self, fleet_periods: list) -> None:
        """GPU-hours accrue from the fleet's history from now on (read from the log)."""
        with self._lock:
            self.fleet_periods = list(fleet_periods)

    def _fixed(self, b: bmod.Budget, led: _Ledger, now: datetime) -> float:
        if self.fleet_periods is not None:
            return bmod.fixed_accrued(b, self.cfg, led.start, now, fleet_periods=self.fleet_periods)
        return bmod.fixed_accrued(b, self.cfg, led.start, now, led.hourly) if led.hourly else 0.0

    def _spent(self, b: bmod.Budget, led: _Ledger, now: datetime) -> float:
        fixed = self._fixed(b, led, now) if led.hourly else 0.0
        return led.others + led.own + fixed

    def estimate(self, d: policy.Decision, cfg: Config) -> float:
        """The most a decision's first choice may spend per token (see `hop_estimate`)."""
        if d.refused:
            return 0.0
        return self.hop_estimate(d, d.endpoint, d.model, cfg)

    @staticmethod
    def hop_estimate(d: policy.Decision, endpoint: str, model: str, cfg: Config) -> float:
        """The most a request may spend per token if `endpoint` serves it with `model`.

        Nothing on dedicated GPUs (their hours accrue anyway). On a serverless model, all of
        `max_tokens` and an upper bound of the prompt's tokens: a token is at least one byte,
        a character at most four, plus a few tokens of framing a message. A bound, not a
        guess, so that no settled request can take spend past a hard limit.
        """
        if cfg.endpoint(endpoint).tier != Tier.SERVERLESS:
            return 0.0
        f = d.features
        prompt_bound = 4 * f.prompt_chars + 8 * f.n_messages
        return pricing.estimated_cost(prompt_bound, f.max_tokens, pricing.price_of(cfg, model))

    def _pressure(
        self, tier: str, endpoint: str, model: str, est: float, source: str, now: datetime, memo: dict[str, float]
    ):
        """(the strongest hard-limit action, its budget, soft limit passed) for one place to serve.
        `memo` keeps each budget's committed spend for the rest of one admission."""
        action, limited_by, soft = None, None, False
        for b in self._matching(tier, endpoint, model, source):
            committed = memo.get(b.name)
            if committed is None:
                led = self._ledgers[b.name]
                committed = memo[b.name] = self._spent(b, led, now) + led.reserved
            if committed + est > b.amount_usd or committed >= b.amount_usd:
                if _SEVERITY[b.action] > _SEVERITY[action]:
                    action, limited_by = b.action, b.name
            elif committed >= b.soft_limit * b.amount_usd:
                soft = True
        return action, limited_by, soft

    def admit(
        self,
        decide: Callable[[policy.RuntimeState], policy.Decision],
        state: policy.RuntimeState,
        source: str,
        cfg: Config,
    ) -> tuple[policy.Decision, Reservation]:
        """Decide under budget pressure and reserve the worst case, atomically.

        The first decision is pure and made outside the lock. Under the lock: the budgets of
        the chosen place may change the decision (downgrade, dedicated-only, block; a second
        round checks where that sends it); then every place the request may fail over to is
        checked too, and a place a budget blocks is left out of the chain, so failover cannot
        spend where a budget forbids it. The largest estimate of the places left is reserved
        against every budget covering any of them.
        """
        d = decide(state)
        if not self.budgets:
            return d, Reservation(0.0, ())
        with self._lock:
            now = self.now()
            self._roll(now)
            memo: dict[str, float] = {}  # each budget's committed spend, for this admission
            d, limited_by = self._under_pressure(decide, d, state, source, cfg, now, memo)
            kept, covering, est, blocked_by = self._allowed_chain(d, source, cfg, now, memo)
            d = self._restrict(d, kept, cfg)
            if d.refused:
                est, covering = 0.0, {}
            for name in covering:
                self._ledgers[name].reserved += est
            return d, Reservation(est, tuple(covering), limited_by or blocked_by)

    def _under_pressure(
        self,
        decide: Callable[[policy.RuntimeState], policy.Decision],
        d: policy.Decision,
        st: policy.RuntimeState,
        source: str,
        cfg: Config,
        now: datetime,
        memo: dict[str, float],
    ) -> tuple[policy.Decision, str | None]:
        """Decide again while the chosen place's budgets press harder than the state says;
        returns the decision and the budget whose hard limit changed it."""
        limited_by = None
        for _ in range(3):  # pressure can move the request once or twice, never back
            if d.refused:
                break
            action, by, soft = self._pressure(d.tier, d.endpoint, d.model, self.estimate(d, cfg), source, now, memo)
            harder = _SEVERITY[action] > _SEVERITY[st.budget_action]
            if not harder and not (soft and not st.budget_soft):
                break
            if harder:
                limited_by = by
                st = replace(st, budget_action=action)
            st = replace(st, budget_soft=st.budget_soft or soft)
            d = decide(st)
        return d, limited_by

    def _allowed_chain(
        self, d: policy.Decision, source: str, cfg: Config, now: datetime, memo: dict[str, float]
    ) -> tuple[list[tuple[str, str]], dict[str, bmod.Budget], float, str | None]:
        """The places of the failover chain no budget forbids, the budgets covering them, the
        largest estimate among them, and the first budget that forbade a place."""
        kept, covering, est, blocked_by = [], {}, 0.0, None
        for endpoint, model in d.chain:
            tier = cfg.endpoint(endpoint).tier
            hop_est = self.hop_estimate(d, endpoint, model, cfg) if tier == Tier.SERVERLESS else 0.0
            action, by, _ = self._pressure(tier, endpoint, model, hop_est, source, now, memo)
            if action == BudgetAction.BLOCK or (action == BudgetAction.DEDICATED_ONLY and tier == Tier.SERVERLESS):
                blocked_by = blocked_by or by
                continue
            kept.append((endpoint, model))
            est = max(est, hop_est)
            for b in self._matching(tier, endpoint, model, source):
                covering[b.name] = b
        return kept, covering, est, blocked_by

    @staticmethod
    def _restrict(d: policy.Decision, kept: list[tuple[str, str]], cfg: Config) -> policy.Decision:
        """The decision with its chain cut to the places kept: refused if none is left, moved
        to the first one left if its first choice was forbidden."""
        if d.refused:
            return d
        if not kept:
            return replace(d, chain=(), refused=True, reason=Reason.BUDGET)
        if kept[0] != d.chain[0]:
            (endpoint, model), tier = kept[0], cfg.endpoint(kept[0][0]).tier
            return replace(d, tier=tier, endpoint=endpoint, model=model, reason=Reason.BUDGET, chain=tuple(kept))
        if len(kept) != len(d.chain):
            return replace(d, chain=tuple(kept))
        return d

    def settle(
        self, r: Reservation, tier: str | None, endpoint: str | None, model: str | None, metered_usd: float, source: str
    ) -> None:
        """Release the reservation and count the actual metered cost where it was served."""
        crossed = []
        with self._lock:
            now = self.now()
            self._roll(now)
            for name in r.names:  # a reservation of last period was carried over by _roll
                led = self._ledgers.get(name)
                if led is not None:
                    led.reserved = max(0.0, led.reserved - r.amount)
            if tier is None or not metered_usd:
                return
            for b in self._matching(tier, endpoint, model, source):
                led = self._ledgers[b.name]
                led.own += metered_usd
                crossed += self._crossings(b, led, self._spent(b, led, now))
        self._notify(crossed)

    def _matching(self, tier: str, endpoint: str, model: str, source: str) -> list[bmod.Budget]:
        """The budgets covering a place to serve, memoized: they only change with the budgets."""
        key = (tier, endpoint, model, source)
        found = self._match_cache.get(key)
        if found is None:
            found = self._match_cache[key] = [
                b for b in self.budgets if source in b.sources and bmod.covers(b, tier, endpoint, model)
            ]
        return found

    def _crossings(self, b: bmod.Budget, led: _Ledger, after: float) -> list:
        out = []
        for kind, limit in (("soft", b.soft_limit * b.amount_usd), ("hard", b.amount_usd)):
            if after >= limit and kind not in led.alerted:
                led.alerted.add(kind)
                out.append((b, kind, led.start, after))
        return out

    def _notify(self, crossed: list) -> None:
        if self.on_alert is not None:
            for b, kind, start, spent in crossed:
                self.on_alert(b, kind, start, spent)

    def check_time(self) -> None:
        """Alerts for limits crossed by GPU-hours accruing, with no request to notice them."""
        crossed = []
        with self._lock:
            now = self.now()
            self._roll(now)
            for b in self.budgets:
                led = self._ledgers[b.name]
                crossed += self._crossings(b, led, self._spent(b, led, now))
        self._notify(crossed)

    def mark_alerted(self, name: str, kind: str, period_start: datetime) -> None:
        """An alert already raised (by this or another process) this period."""
        with self._lock:
            led = self._ledgers.get(name)
            if led is not None and led.start == period_start:
                led.alerted.add(kind)

    # --- feeding spend in --------------------------------------------------------------------

    def periods(self) -> dict[str, tuple[datetime, datetime]]:
        with self._lock:
            self._roll(self.now())
            return {n: (led.start, led.end) for n, led in self._ledgers.items()}

    def load_others(self, spend: dict[str, tuple[datetime, float]]) -> None:
        """Spend of the current period that this process did not route (from the log)."""
        with self._lock:
            for name, (start, usd) in spend.items():
                led = self._ledgers.get(name)
                if led is not None and led.start == start:
                    led.others = usd

    def snapshot(self) -> list[dict]:
        """Each budget's figures now: spent (metered + fixed), reserved, percent, state."""
        with self._lock:
            now = self.now()
            self._roll(now)
            out = []
            for b in self.budgets:
                led = self._ledgers[b.name]
                fixed = self._fixed(b, led, now)
                spent = led.others + led.own + fixed
                out.append(
                    {
                        **b.as_dict(),
                        "period_start": led.start,
                        "period_end": led.end,
                        "metered_usd": round(led.others + led.own, 9),
                        "fixed_usd": round(fixed, 9),
                        "spent_usd": round(spent, 9),
                        "reserved_usd": round(led.reserved, 9),
                        "percent": round(100 * spent / b.amount_usd, 2),
                        "state": bmod.state(spent, b),
                    }
                )
            return out
