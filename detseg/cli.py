"""Shared plumbing of the command-line tools."""

from __future__ import annotations

import sys
from collections.abc import Callable

from detseg.errors import DetsegError
from detseg.registry import UnknownNameError


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a tool's ``main``; detseg's own errors print as one line and exit with 2."""
    try:
        code = main(argv)
    except (DetsegError, UnknownNameError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
