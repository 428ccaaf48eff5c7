"""What every command shares: the one-line usage error, database-wait progress and output.

Kept free of heavy imports: the parser and every command import it before any work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


class CLIError(Exception):
    """A usage problem, reported in one line."""


def opt(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    """An option given once for all commands (--db, --config, --json) may be absent."""
    return getattr(args, name, default)


def progress(waited: float) -> None:
    """Tell a person at a terminal that the database is busy (user output, so stderr)."""
    if waited > 0.5 and sys.stderr.isatty():
        print(f"\rwaiting for the database (in use by another process) {waited:4.1f} s", end="", file=sys.stderr)


def out(args: argparse.Namespace, data: Any, text: str) -> None:
    if opt(args, "json"):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def need_db(args: argparse.Namespace) -> str:
    """The database path, which must already exist for commands that only read."""
    from sophia.log.db import default_path  # duckdb and pyarrow: only for commands that use the log

    path = opt(args, "db") or default_path()
    if path != ":memory:" and not Path(path).exists():
        raise CLIError(
            f"no database at {path}: run `sophia demo` to load demo traffic or `sophia chat TEXT` to route a request"
        )
    return path
