"""``detseg-infer`` as a script: see :mod:`detseg.commands.infer`."""

from detseg.cli import run_cli
from detseg.commands.infer import main

if __name__ == "__main__":
    run_cli(main)
