"""The `sophia` command line: the parser (parser.py), the commands grouped by job, and `main`."""

from sophia.cli.dispatch import main

__all__ = ["main"]
