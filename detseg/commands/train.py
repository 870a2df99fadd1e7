"""Train an experiment config, evaluate it, and write everything to its run directory.

    detseg-train configs/faster_rcnn/shapes.yaml [key=value ...]
    detseg-train configs/faster_rcnn/shapes.yaml resume=true      # continue a killed run
    detseg-train configs/faster_rcnn/shapes.yaml resume=true train.max_iters=4000  # extend it
    detseg-train configs/faster_rcnn/shapes.yaml --dry-run        # build all, one iteration
    detseg-train configs/faster_rcnn/shapes.yaml --stop-after 500 # a time-sliced job: resume later
    torchrun --nproc_per_node=4 tools/train.py configs/faster_rcnn/shapes.yaml   # DDP, docs/distributed.md

``python tools/train.py`` is the same command. The run directory (default
``runs/<config path>``, printed at start) receives the resolved ``config.yaml``, ``last.pt``
/ ``best.pt``, ``metrics.jsonl``, TensorBoard events and ``metrics.json`` (the final
evaluation).
"""

from __future__ import annotations

from detseg.allocator import keep_large_allocations_on_heap
from detseg.commands.entry import command_parser, run_command


def main(argv: list[str] | None = None) -> int:
    """``detseg-train``: the exit code (2 after an ``error:`` line)."""
    keep_large_allocations_on_heap()
    return run_command(_train, argv)


def _train(argv: list[str] | None) -> int:
    parser = command_parser("detseg-train", __doc__)
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--dry-run", action="store_true",
                        help="build data, evaluator and model, run one iteration, write nothing")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="end after iteration N with last.pt written; continue later with resume=true")
    args = parser.parse_intermixed_args(argv)
    if args.stop_after is not None and args.stop_after < 1:
        from detseg.errors import ConfigError

        raise ConfigError(f"--stop-after must be an iteration >= 1, got {args.stop_after}")

    from detseg.engine.distributed import is_main_process, shutdown
    from detseg.experiment import train_from_config
    from detseg.report import format_metrics, write_metrics_json

    try:
        run_dir, metrics = train_from_config(args.config, args.overrides, progress=not args.no_progress,
                                             dry_run=args.dry_run, stop_at=args.stop_after)
        if args.dry_run or not is_main_process():
            return 0
        if metrics:
            print(format_metrics(metrics, f"final evaluation ({run_dir})"))
            write_metrics_json(metrics, run_dir / "metrics.json")
        print(f"run directory: {run_dir}")
        return 0
    finally:
        shutdown()
