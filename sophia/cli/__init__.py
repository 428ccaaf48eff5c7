"""The `sophia` command line: the parser and one function per command."""

from sophia.cli.commands import main

__all__ = ["main"]
