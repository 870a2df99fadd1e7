"""``detseg-gen-proposals`` as a script: see :mod:`detseg.commands.gen_proposals`."""

from detseg.cli import run_cli
from detseg.commands.gen_proposals import main

if __name__ == "__main__":
    run_cli(main)
