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
            version = versions.ensure(cur, cfg)
        writer = Writer(db, cfg.flush_interval_s)
        router = Router(cfg, writer, backends, sleep=sleep, policy_version=version)
        return cls(cfg, db, writer, router)

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
