"""``detseg-export`` as a script: see :mod:`detseg.commands.export`."""

from detseg.cli import run_cli
from detseg.commands.export import main

if __name__ == "__main__":
    run_cli(main)
