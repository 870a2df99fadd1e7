"""``detseg-check-data`` as a script: see :mod:`detseg.commands.check_data`."""

from detseg.cli import run_cli
from detseg.commands.check_data import main

if __name__ == "__main__":
    run_cli(main)
