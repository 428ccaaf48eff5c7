"""Where a process's diagnostics go: one line each on stderr, `sophia: ` first.

Modules log through `logging.getLogger(__name__)`; each face (CLI, API server, app) calls
`setup_logging` once at start. `SOPHIA_LOG_LEVEL` (debug, info, warning, error) sets the level.
"""

from __future__ import annotations

import logging
import os
import sys

from sophia.config import ConfigError

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Stderr(logging.StreamHandler):
    """stderr as it is at each message (tests and the CLI swap sys.stderr)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(env: dict[str, str] | None = None) -> None:
    """Send the `sophia` loggers to stderr at the level `SOPHIA_LOG_LEVEL` names (default warning)."""
    name = (env if env is not None else os.environ).get("SOPHIA_LOG_LEVEL", "warning").strip().lower()
    if name not in LEVELS:
        raise ConfigError(f"SOPHIA_LOG_LEVEL = {name!r} is not allowed: expected one of {', '.join(LEVELS)}")
    root = logging.getLogger("sophia")
    root.setLevel(LEVELS[name])
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("sophia: %(message)s"))
        root.addHandler(handler)
