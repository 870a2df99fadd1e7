"""Train an experiment config, evaluate it, and write everything to its run directory.

    python tools/train.py configs/faster_rcnn/shapes.yaml [key=value ...]
    python tools/train.py configs/faster_rcnn/shapes.yaml resume=true      # continue a killed run
    python tools/train.py configs/faster_rcnn/shapes.yaml resume=true train.max_iters=4000  # extend it
    python tools/train.py configs/faster_rcnn/shapes.yaml --dry-run        # build all, one iteration

The run directory (default ``runs/<config path>``, printed at start) receives the resolved
``config.yaml``, ``last.pt`` / ``best.pt``, ``metrics.jsonl``, TensorBoard events and
``metrics.json`` (the final evaluation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detseg.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--dry-run", action="store_true",
                        help="build data, evaluator and model, run one iteration, write nothing")
    args = parser.parse_intermixed_args(argv)

    from detseg.experiment import train_from_config
    from detseg.report import format_metrics, write_metrics_json

    run_dir, metrics = train_from_config(args.config, args.overrides, progress=not args.no_progress,
                                         dry_run=args.dry_run)
    if args.dry_run:
        return 0
    if metrics:
        print(format_metrics(metrics, f"final evaluation ({run_dir})"))
        write_metrics_json(metrics, run_dir / "metrics.json")
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
