"""`sophia serve`: the OpenAI-compatible API server."""

from __future__ import annotations

import argparse

from sophia.cli.common import opt


def cmd_serve(args: argparse.Namespace) -> int:
    from sophia.server import run as server  # the ASGI stack is only imported when serving

    return server.run(
        host=args.host, port=args.port, workers=args.workers, config_path=opt(args, "config"), db_path=opt(args, "db")
    )
