"""Shared plumbing of the command-line tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from detseg.errors import DetsegError
from detseg.registry import UnknownNameError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the tools' error convention: a bad option prints one ``error:`` line
    naming it (``--help`` shows the usage) and exits with 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a tool's ``main``; detseg's own errors print as one line and exit with 2."""
    try:
        code = main(argv)
    except (DetsegError, UnknownNameError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
