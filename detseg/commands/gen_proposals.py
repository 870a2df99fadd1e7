"""Compute selective-search proposals for one split of an experiment's data, once.

    detseg-gen-proposals configs/fast_rcnn/shapes.yaml --split train
    detseg-gen-proposals configs/fast_rcnn/shapes.yaml --split val --out runs/proposals/val.json

``python tools/gen_proposals.py`` is the same command. The output (``.pkl``, Detectron2's
format, or ``.json``) defaults to the split's ``data.<split>.proposals`` path. Selective
search uses the settings of the config's ``model.proposal_source`` when it is
``selective_search``. Boxes are cached per image id in ``<out>.cache/``, so an interrupted
run resumes; ``--workers`` spreads images over processes. At the end, the recall of the
proposals at IoU 0.5 and 0.7 for the first 100/500/2000 per image is printed (and written
next to the output as ``.recall.json``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from detseg.commands.entry import command_parser, run_command

SEARCH_KEYS = ("colour_spaces", "scales", "similarities", "min_size", "sigma", "min_box_size")


def main(argv: list[str] | None = None) -> int:
    """``detseg-gen-proposals``: the exit code (2 after an ``error:`` line)."""
    return run_command(_gen_proposals, argv)


def _gen_proposals(argv: list[str] | None) -> int:
    parser = command_parser("detseg-gen-proposals", __doc__)
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--out", help="output .pkl or .json (default: data.<split>.proposals)")
    parser.add_argument("--max-proposals", type=int, default=2000, help="kept per image (default 2000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--cache", help="per-image cache folder (default: <out>.cache)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_intermixed_args(argv)  # key=value overrides may come after options

    from omegaconf import OmegaConf, open_dict

    from detseg.errors import ConfigError
    from detseg.experiment import build_split, load_experiment
    from detseg.proposals import proposal_recall, write_proposals
    from detseg.proposals.generate import generate_proposals, ground_truth_boxes
    from detseg.proposals.selective_search import SelectiveSearch
    from detseg.report import format_metrics

    cfg = load_experiment(args.config, args.overrides)
    split = cfg.data.get(args.split)
    if split is None:
        raise ConfigError(f"{args.config}: no data.{args.split} section")
    out = args.out or split.get("proposals")
    if not out:
        raise ConfigError(f"{args.config}: data.{args.split}.proposals is not set; give --out FILE")
    with open_dict(cfg):  # the images as stored: proposals are in original coordinates
        cfg.data[args.split].transforms = []
        cfg.data[args.split].proposals = None
    dataset = build_split(cfg, args.split)

    source = OmegaConf.to_container(cfg.model.get("proposal_source") or {}, resolve=True)
    settings = {k: v for k, v in source.items() if k in SEARCH_KEYS} if source.get("name") == "selective_search" else {}
    search = SelectiveSearch(**settings, max_proposals=args.max_proposals)
    cache = Path(args.cache or f"{out}.cache")
    print(f"selective search on {len(dataset)} images of data.{args.split} -> {out} (cache {cache})")
    start = time.perf_counter()
    ground_truth = dataset.coco_ground_truth()  # image ids in index order, and boxes for the recall
    ids = [image["id"] for image in ground_truth["images"]]
    proposals = generate_proposals(dataset, ids, search, cache, args.workers, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    write_proposals(out, proposals)
    print(f"wrote {out}: {len(proposals)} images ({elapsed:.1f} s, {args.workers} processes, "
          f"cached images reused)")

    if dataset.has_instances:
        gt = ground_truth_boxes(ground_truth)
        recall = proposal_recall([gt[i] for i in ids], [proposals.boxes[i] for i in ids])
        print(format_metrics(recall, f"proposal recall, data.{args.split}"))
        Path(f"{Path(out).with_suffix('')}.recall.json").write_text(json.dumps(recall, indent=2) + "\n")
    return 0
