"""``detseg-eval`` as a script: see :mod:`detseg.commands.eval`."""

from detseg.cli import run_cli
from detseg.commands.eval import main

if __name__ == "__main__":
    run_cli(main)
