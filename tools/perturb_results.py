"""``detseg-perturb-results`` as a script: see :mod:`detseg.commands.perturb_results`."""

from detseg.cli import run_cli
from detseg.commands.perturb_results import main

if __name__ == "__main__":
    run_cli(main)
