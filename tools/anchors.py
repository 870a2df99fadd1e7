"""``detseg-anchors`` as a script: see :mod:`detseg.commands.anchors`."""

from detseg.cli import run_cli
from detseg.commands.anchors import main

if __name__ == "__main__":
    run_cli(main)
