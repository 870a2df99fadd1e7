"""``detseg-train`` as a script: see :mod:`detseg.commands.train`."""

from detseg.cli import run_cli
from detseg.commands.train import main

if __name__ == "__main__":
    run_cli(main)
