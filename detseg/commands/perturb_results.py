"""Make a COCO results file from ground truth with controlled mistakes (for trying evaluators).

    detseg-perturb-results --gt ANN.json --out RES.json --jitter 0.05 --drop 0.1 --false-positives 0.2

``python tools/perturb_results.py`` is the same command. With no mistakes (the defaults)
every AP of the results is 1.0.
"""

from __future__ import annotations

import json
from pathlib import Path

from detseg.commands.entry import command_parser, run_command


def main(argv: list[str] | None = None) -> int:
    """``detseg-perturb-results``: the exit code (2 after an ``error:`` line)."""
    return run_command(_perturb_results, argv)


def _perturb_results(argv: list[str] | None) -> int:
    parser = command_parser("detseg-perturb-results", __doc__)
    parser.add_argument("--gt", required=True,
                        help="COCO instances JSON, a VOC root folder, or an experiment YAML")
    parser.add_argument("--split", default="val", help="split of a VOC root")
    parser.add_argument("--out", required=True)
    parser.add_argument("--jitter", type=float, default=0.0, help="box edge noise, fraction of side")
    parser.add_argument("--drop", type=float, default=0.0, help="fraction of objects missed")
    parser.add_argument("--false-positives", type=float, default=0.0, help="extra boxes per object")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides when --gt is an experiment YAML")
    args = parser.parse_intermixed_args(argv)  # key=value overrides may come after options

    from detseg.evaluation.files import load_ground_truth
    from detseg.evaluation.synthetic import results_from_ground_truth

    gt = load_ground_truth(args.gt, args.split, args.overrides)
    results = results_from_ground_truth(gt, args.jitter, args.drop, args.false_positives, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results))
    print(f"wrote {len(results)} detections for {len(gt['images'])} images: {args.out}")
    return 0
