"""What every command shares: its argument parser and how its errors end it.

A command is named once (``detseg-train``), so its usage and ``error:`` lines read the same
whether it was started as the console script or as ``python tools/train.py``.
"""

from __future__ import annotations

import argparse

from detseg.cli import USER_ERRORS, ArgumentParser, run_command


def command_parser(prog: str, doc: str | None) -> ArgumentParser:
    """The argument parser of command ``prog``; ``doc`` (its module docstring) is the help text."""
    return ArgumentParser(prog=prog, description=doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


__all__ = ["USER_ERRORS", "command_parser", "run_command"]
