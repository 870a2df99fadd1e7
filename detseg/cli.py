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


USER_ERRORS = (DetsegError, UnknownNameError, FileNotFoundError)
"""Errors a user's input causes: one ``error:`` line, exit 2."""


def run_command(run: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """``run(argv)``'s exit code; a :data:`USER_ERRORS` error prints one ``error:`` line and
    gives 2 (argparse's own errors and ``--help`` still exit from inside ``run``)."""
    try:
        return run(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a tool's ``main`` as a script: exit with its code (2 after an ``error:`` line)."""
    sys.exit(run_command(main, argv))
