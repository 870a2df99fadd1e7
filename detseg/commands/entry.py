"""What every command shares: its argument parser and how its errors end it.

A command is named once (``detseg-train``), so its usage and ``error:`` lines read the same
whether it was started as the console script or as ``python tools/train.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from detseg.cli import ArgumentParser
from detseg.errors import DetsegError
from detseg.registry import UnknownNameError

USER_ERRORS = (DetsegError, UnknownNameError, FileNotFoundError)
"""Errors a user's input causes (those :func:`detseg.cli.run_cli` catches): one line, exit 2."""


def command_parser(prog: str, doc: str | None) -> ArgumentParser:
    """The argument parser of command ``prog``; ``doc`` (its module docstring) is the help text."""
    return ArgumentParser(prog=prog, description=doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def run_command(run: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """``run(argv)``'s exit code; a :data:`USER_ERRORS` error prints one ``error:`` line and
    gives 2 (argparse's own errors and ``--help`` still exit from inside ``run``)."""
    try:
        return run(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
