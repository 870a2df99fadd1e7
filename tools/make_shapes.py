"""``detseg-make-shapes`` as a script: see :mod:`detseg.commands.make_shapes`."""

from detseg.cli import run_cli
from detseg.commands.make_shapes import main

if __name__ == "__main__":
    run_cli(main)
