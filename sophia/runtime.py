"""Everything a process needs to route and record, built once from the configuration."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from . import config as config_mod
from . import versions
from .backends import Backend
from .config import Config
from .db import Database
from .router import Router
from .writer import Writer


@dataclass
class Runtime:
    cfg: Config
    db: Database
    writer: Writer
    router: Router

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
    ) -> Runtime:
        cfg = cfg or config_mod.load(config_path)
        db = Database(db_path)
        with db.cursor(on_wait=on_wait) as cur:
            version, active = versions.resolve(cur, cfg)
        writer = Writer(db, cfg.flush_interval_s)
        router = Router(active, writer, backends, sleep=sleep, policy_version=version)
        return cls(active, db, writer, router)

    def apply_settings(self, cfg: Config, note: str | None = None, origin: str = "tuning") -> int:
        """Store new routing settings as a version and route with them from the next request."""
        with self.db.cursor() as cur:
            version = versions.apply(cur, cfg, origin, note)
        self._use(cfg, version)
        return version

    def refresh_settings(self) -> bool:
        """Pick up a version applied by another process; True when the settings changed."""
        with self.db.cursor() as cur:
            latest = versions.history(cur)[0]
        if latest.version == self.router.policy_version:
            return False
        self._use(versions.config_from(self.cfg, latest.settings), latest.version)
        return True

    def _use(self, cfg: Config, version: int) -> None:
        # Swapped together so that a record never names a version it was not routed under.
        self.cfg = cfg
        self.router.cfg, self.router.policy_version = cfg, version

    @contextmanager
    def reader(self, wait_s: float | None = None, on_wait: Callable[[float], None] | None = None):
        """A cursor that sees this process's own writes (queued records are flushed first)."""
        self.writer.flush()
        with self.db.cursor(wait_s, on_wait) as cur:
            yield cur

    def close(self) -> None:
        self.writer.close()
        self.router.close()
        self.db.close()
