"""Everything a process needs to route and record, built once from the configuration."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sophia import config as config_mod
from sophia.budgets import alerts as alerts_mod
from sophia.budgets import model as bmod
from sophia.budgets import store as budget_store
from sophia.budgets.guard import BudgetGuard
from sophia.config import Config
from sophia.log import fleet_store, versions
from sophia.log.db import Database, DatabaseBusy, DatabaseError
from sophia.log.writer import Writer
from sophia.routing.backends.base import Backend
from sophia.routing.router import Router, make_backends

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Runtime:
    cfg: Config
    db: Database
    writer: Writer
    router: Router
    guard: BudgetGuard
    notifier: alerts_mod.Notifier
    alert_settings: bmod.AlertSettings
    budget_version: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _forecast_alerted: set = field(default_factory=set)

    @classmethod
    def open(
        cls,
        config_path: str | None = None,
        db_path: str | None = None,
        *,
        cfg: Config | None = None,
        backends: dict[str, Backend] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[float], None] | None = None,
        wait_s: float | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> Runtime:
        cfg = cfg or config_mod.load(config_path)
        alert_settings = cfg.alerts  # checked when the file was loaded
        db = Database(db_path)
        with db.cursor(wait_s, on_wait) as cur:
            version, active = versions.resolve(cur, cfg)
            budget_version, budgets = budget_store.resolve(cur, cfg)
            fleet_store.sync(cur, active, now())
            fleet_periods = fleet_store.periods(cur)
        writer = Writer(db, cfg.flush_interval_s)
        if backends is None:  # keys from the environment, else .streamlit/secrets.toml
            backends = make_backends(active, sleep, config_mod.load_secrets())
        router = Router(active, writer, backends, sleep=sleep, policy_version=version)
        notifier = alerts_mod.Notifier(db, alerts_mod.webhook_url(alert_settings.webhook_url_env))
        guard = BudgetGuard(active, budgets, bmod.zone(alert_settings.timezone), now=now, on_alert=notifier.raise_alert)
        guard.set_fleet(fleet_periods)
        router.guard = guard
        rt = cls(active, db, writer, router, guard, notifier, alert_settings, budget_version)
        rt.refresh_spend()
        return rt

    @contextmanager
    def reader(self, wait_s: float | None = None, on_wait: Callable[[float], None] | None = None):
        """A cursor that sees this process's own writes (queued records are flushed first)."""
        self.writer.flush()
        with self.db.cursor(wait_s, on_wait) as cur:
            yield cur

    # --- settings and budgets changed here or by another process --------------------------

    def apply_settings(self, cfg: Config, note: str | None = None, origin: str = "tuning") -> int:
        """Store new routing settings as a version and route with them from the next request."""
        with self.db.cursor() as cur:
            version = versions.apply(cur, cfg, origin, note)
        self._use(cfg, version)
        return version

    def refresh_settings(self) -> bool:
        """Pick up a version applied by another process; True when the settings changed."""
        with self.db.cursor() as cur:
            latest = versions.latest(cur)
            if latest is None:  # a new file at the log's path: these settings are its first version
                version = versions.ensure(cur, self.cfg)
                self._use(self.cfg, version)
                return True
        if latest.version == self.router.policy_version:
            return False
        self._use(versions.config_from(self.cfg, latest.settings), latest.version)
        return True

    def _use(self, cfg: Config, version: int) -> None:
        self.cfg = cfg
        self.router.use(cfg, version)
        self.guard.cfg = cfg

    def save_budgets(self, budgets: list[bmod.Budget], origin: str = "page", note: str | None = None) -> int:
        with self.db.cursor() as cur:
            self.budget_version = budget_store.save(cur, budgets, origin, note)
        self.guard.set_budgets(budgets)
        self.refresh_spend()
        return self.budget_version

    def refresh_budgets(self) -> bool:
        with self.db.cursor() as cur:
            latest = budget_store.latest_version(cur)
            if latest == 0:  # a new file at the log's path: the budgets in force are its first version
                self.budget_version = budget_store.save(
                    cur, list(self.guard.budgets), "carried-over", "the log's file was new; budgets in force kept"
                )
                return True
            if latest == self.budget_version:
                return False
            version, budgets = budget_store.latest(cur, self.cfg)
        self.guard.set_budgets(budgets)
        self.budget_version = version
        self.refresh_spend()
        return True

    def refresh_spend(self) -> None:
        """Spend of the current periods routed by other processes (or before this one started),
        and the alerts they already raised."""
        periods = self.guard.periods()
        with self.db.cursor() as cur:
            spend = {
                b.name: (
                    periods[b.name][0],
                    budget_store.metered_spend(cur, b, *periods[b.name], exclude_instance=self.router.instance),
                )
                for b in self.guard.budgets
            }
            raised = alerts_mod.raised(cur)
            fleet_periods = fleet_store.periods(cur)
        self.guard.set_fleet(fleet_periods)
        self.guard.load_others(spend)
        for name, kind, start in raised:
            self.guard.mark_alerted(name, kind, start)

    def forecasts(self) -> dict[str, bmod.Forecast]:
        """Each budget's forecast from the trailing window of the log."""
        now = self.guard.now()
        window = timedelta(hours=self.alert_settings.forecast_window_hours)
        out = {}
        snap = {s["name"]: s for s in self.guard.snapshot()}
        with self.reader() as cur:
            for b in self.guard.budgets:
                s = snap[b.name]
                start = max(now - window, s["period_start"] - window)
                hourly = budget_store.hourly_metered(cur, b, start, now)
                fixed = bmod.fixed_hourly(b, self.cfg, self.guard.fleet_periods, now)
                hours = (now - start).total_seconds() / 3600  # the current partial hour included
                out[b.name] = bmod.forecast(b, s["spent_usd"], hourly, fixed, now, s["period_end"], hours)
        return out

    def check_forecasts(self) -> None:
        """A forecast alert when a budget would run out before its period ends (once a period)."""
        snap = {s["name"]: s for s in self.guard.snapshot()}
        due = [
            b
            for b in self.guard.budgets
            if (b.name, snap[b.name]["period_start"]) not in self._forecast_alerted and snap[b.name]["state"] != "hard"
        ]
        if not due:
            return
        forecasts = self.forecasts()
        for b in due:
            s = snap[b.name]
            key = (b.name, s["period_start"])
            f = forecasts[b.name]
            if f.runs_out_at is not None and f.runs_out_at < s["period_end"]:
                self._forecast_alerted.add(key)
                self.notifier.raise_alert(b, "forecast", s["period_start"], s["spent_usd"])

    # --- the background thread of long-running processes (app, API server) ----------------

    def start_background(self, interval_s: float = 5.0) -> None:
        """Every interval: pick up settings, budgets and spend of other processes, re-admit
        recovered endpoints, and raise alerts that time alone triggers."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh_settings()
                    self.refresh_budgets()
                    self.refresh_spend()
                    self.guard.check_time()
                    self.check_forecasts()
                    self.router.check()
                except (DatabaseBusy, DatabaseError) as e:
                    logger.warning("background refresh skipped: %s", e)
                except Exception as e:  # never let one bad refresh stop the next ones
                    logger.exception("background refresh failed: %s: %s", type(e).__name__, e)

        self._thread = threading.Thread(target=loop, name="sophia-refresh", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.writer.close()
        self.notifier.close()
        self.router.close()
        self.db.close()
