"""``detseg-browse`` as a script: see :mod:`detseg.commands.browse`."""

from detseg.cli import run_cli
from detseg.commands.browse import main

if __name__ == "__main__":
    run_cli(main)
