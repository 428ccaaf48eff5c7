"""`sophia COMMAND`: parse, run the command, turn every known failure into one line."""

from __future__ import annotations

import sys
from collections.abc import Callable

from sophia import config as config_mod
from sophia.cli.budget import cmd_budget
from sophia.cli.common import CLIError
from sophia.cli.parser import build_parser
from sophia.cli.route import cmd_chat, cmd_demo, cmd_route, cmd_stats
from sophia.cli.serve import cmd_serve
from sophia.cli.simulate import cmd_simulate
from sophia.cli.traffic import cmd_export, cmd_import, cmd_replay
from sophia.config.diagnostics import setup_logging
from sophia.ingest.importers import ImportFailed
from sophia.log.db import DatabaseBusy, DatabaseError
from sophia.routing.features import RequestError

COMMANDS: dict[str, Callable[..., int]] = {
    "route": cmd_route,
    "chat": cmd_chat,
    "stats": cmd_stats,
    "demo": cmd_demo,
    "serve": cmd_serve,
    "import": cmd_import,
    "replay": cmd_replay,
    "budget": cmd_budget,
    "export": cmd_export,
    "simulate": cmd_simulate,
}

# Failures of the input or the environment, not of the program: one line, exit 1.
_USER_ERRORS = (
    config_mod.ConfigError,
    RequestError,
    DatabaseBusy,
    DatabaseError,
    ValueError,
    OSError,
    ImportFailed,
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        setup_logging()
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except CLIError as e:
        print(f"sophia: error: {e}", file=sys.stderr)
        return 2
    except _USER_ERRORS as e:
        print(f"sophia: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sophia: interrupted", file=sys.stderr)
        return 130
