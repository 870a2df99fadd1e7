"""What every command shares: its argument parser and how its errors end it.

A command is named once (``detseg-train``), so its usage and ``error:`` lines read the same
whether it was started as the console script or as ``python tools/train.py``.
"""

from __future__ import annotations

import argparse

from detseg.cli import USER_ERRORS, ArgumentParser, run_command


def command_parser(prog: str, doc: str | None) -> ArgumentParser:
    """The argument parser of command ``prog``; ``doc`` (its module docstring) is the help text."""
    return ArgumentParser(prog=prog, description=doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_inference_options(parser: argparse.ArgumentParser, applies: str = "") -> None:
    """``--precision`` and ``--runtime``, as ``tools/infer.py`` and ``tools/eval.py`` take
    them (``detseg/inference/runtime.py``); ``applies`` prefixes their help (e.g. "with
    --checkpoint: ")."""
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help=f"{applies}auto = bf16 + channels-last where the CPU has bf16 units, else fp32; "
                             "BatchNorm folded on every path (detseg/inference/optimize.py)")
    parser.add_argument("--runtime", choices=["torch", "onnxruntime"], default="torch",
                        help=f"{applies}onnxruntime runs the exported ONNX graph (CPU provider), checked once "
                             "against PyTorch; needs pip install detseg[export]")


__all__ = ["USER_ERRORS", "add_inference_options", "command_parser", "run_command"]
