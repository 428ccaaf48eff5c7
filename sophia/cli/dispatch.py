"""`sophia COMMAND`: parse, run the command, turn every known failure into one line.

A command's module is imported only when that command runs: `sophia --help` and `sophia route`
must not pay for pandas, pyarrow, the runtime or the API server (bench/bench_cli.py).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sophia.cli.common import CLIError
from sophia.cli.parser import build_parser

# command -> (module, function)
COMMANDS: dict[str, tuple[str, str]] = {
    "route": ("sophia.cli.route", "cmd_route"),
    "chat": ("sophia.cli.route", "cmd_chat"),
    "stats": ("sophia.cli.route", "cmd_stats"),
    "demo": ("sophia.cli.route", "cmd_demo"),
    "serve": ("sophia.cli.serve", "cmd_serve"),
    "import": ("sophia.cli.traffic", "cmd_import"),
    "replay": ("sophia.cli.traffic", "cmd_replay"),
    "budget": ("sophia.cli.budget", "cmd_budget"),
    "export": ("sophia.cli.traffic", "cmd_export"),
    "simulate": ("sophia.cli.simulate", "cmd_simulate"),
}

# Failures of the input or the environment, not of the program: one line, exit 1. Named, not
# imported: an exception class can only have been raised if its module was imported by the command.
_USER_ERRORS = (
    ("sophia.config.checks", "ConfigError"),
    ("sophia.routing.features", "RequestError"),
    ("sophia.log.db", "DatabaseBusy"),
    ("sophia.log.db", "DatabaseError"),
    ("sophia.ingest.readers", "ImportFailed"),
)

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


def command(name: str) -> Callable[..., int]:
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(module), function)


def _user_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ValueError, OSError]
    for module, name in _USER_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(getattr(loaded, name, None), type):
            found.append(getattr(loaded, name))
    return tuple(found)


def os_error_text(e: OSError) -> str:
    """One line for a file the command could not read or write, naming the file and what to do."""
    name = e.filename
    if name is None:
        return str(e.strerror or e)
    name = os.fsdecode(name)
    if e.errno == errno.ENOENT and not Path(name).parent.is_dir():
        return f"{name}: the folder {Path(name).parent} does not exist (create it or choose another path)"
    if e.errno == errno.ENOENT:
        return f"{name}: no such file"
    if e.errno == errno.EISDIR:
        return f"{name} is a folder: give a file name"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{name}: permission denied (choose a path you may write, or change its permissions)"
    if e.errno == errno.ENOSPC:
        return f"{name}: no space left on the device"
    return f"{name}: {(e.strerror or str(e)).lower()}"


def _quiet_stdout() -> None:
    """The reader of standard output went away (`sophia ... | head`): what is still buffered goes
    nowhere, so that the interpreter's final flush does not fail once more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is no file (tests capture it)
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # --help printed: a closed pipe shows here, not at exit
            sys.stdout.flush()
            raise
        if args.command is None:
            parser.print_help()
            return 2
        from sophia.config.diagnostics import setup_logging

        setup_logging()
        status = command(args.command)(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except CLIError as e:
        print(f"sophia: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sophia: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        text = os_error_text(e) if isinstance(e, OSError) else str(e)
        print(f"sophia: error: {text}", file=sys.stderr)
        return 1
