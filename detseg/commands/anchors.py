"""Anchor shapes for an anchor-based YOLO config: k-means on the training boxes with
``1 - IoU`` distance (YOLOv2), split over the head's maps from small to large.

    detseg-anchors configs/yolo/shapes.yaml
    detseg-anchors configs/yolo/shapes.yaml --num-anchors 9 --write configs/model/yolo_tiny.yaml

``python tools/anchors.py`` is the same command. Boxes are measured in the model's input
pixels (each image resized to ``model.input_size`` square, as the detector does).
``--write FILE`` replaces the ``anchors:`` line of that YAML file (the one defining
``model.head.anchors``) and keeps the rest of it, comments included.
"""

from __future__ import annotations

import re
from pathlib import Path

from detseg.commands.entry import command_parser, run_command

ANCHORS_LINE = re.compile(r"^(\s*)anchors:.*$", re.MULTILINE)


def write_anchors(path: Path, anchors: list[list[list[float]]]) -> None:
    """Replace the one-line ``anchors: ...`` of the YAML file ``path``."""
    from detseg.errors import ConfigError

    text = path.read_text()
    if len(ANCHORS_LINE.findall(text)) != 1:
        raise ConfigError(f"{path}: expected exactly one one-line 'anchors:' key to replace; add "
                          f"'anchors: []' under the head first")
    flow = "[" + ", ".join("[" + ", ".join(f"[{w:g}, {h:g}]" for w, h in level) + "]" for level in anchors) + "]"
    path.write_text(ANCHORS_LINE.sub(lambda m: f"{m.group(1)}anchors: {flow}", text))


def main(argv: list[str] | None = None) -> int:
    """``detseg-anchors``: the exit code (2 after an ``error:`` line)."""
    return run_command(_anchors, argv)


def _anchors(argv: list[str] | None) -> int:
    parser = command_parser("detseg-anchors", __doc__)
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--num-anchors", type=int, help="in all (default: as many as the config has, else 3 per map)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", type=Path, metavar="FILE", help="YAML file whose 'anchors:' line to replace")
    args = parser.parse_intermixed_args(argv)

    import torch
    from omegaconf import open_dict

    from detseg.errors import ConfigError
    from detseg.experiment import build_split, load_splits
    from detseg.ops.kmeans_anchors import kmeans_anchors, shape_iou

    if args.num_anchors is not None and args.num_anchors < 1:
        raise ConfigError(f"--num-anchors must be at least 1, got {args.num_anchors}")
    cfg = load_splits(args.config, args.overrides, [args.split])  # names the splits there if --split is not
    head = cfg.model.get("head")
    if head is None or head.get("name") != "yolo" or not cfg.model.get("input_size"):
        raise ConfigError(f"{args.config}: detseg-anchors is for model.head.name=yolo with a model.input_size")
    levels = len(head.in_features)
    current = [list(level) for level in (head.get("anchors") or [])]
    k = args.num_anchors or sum(len(level) for level in current) or 3 * levels
    if k % levels:
        raise ConfigError(f"--num-anchors {k} does not split evenly over the head's {levels} maps")
    with open_dict(cfg):  # the boxes as stored
        cfg.data[args.split].transforms = []
    dataset = build_split(cfg, args.split)
    gt = dataset.coco_ground_truth()
    size = float(cfg.model.input_size)
    image_size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    wh = torch.tensor([[a["bbox"][2] * size / image_size[a["image_id"]][0], a["bbox"][3] * size / image_size[a["image_id"]][1]]
                       for a in gt["annotations"] if not a.get("iscrowd") and a["bbox"][2] > 0 and a["bbox"][3] > 0])
    print(f"{len(wh)} boxes from data.{args.split} ({len(gt['images'])} images), in {size:g} x {size:g} input pixels")
    if len(wh) < k:
        raise ConfigError(f"data.{args.split} has {len(wh)} box(es); {k} anchors need at least as many")
    anchors, mean_iou = kmeans_anchors(wh, k, seed=args.seed)
    per_level = [[[round(float(w), 1), round(float(h), 1)] for w, h in anchors[i * (k // levels):(i + 1) * (k // levels)].tolist()]
                 for i in range(levels)]
    print(f"mean IoU of each box with its best anchor: {mean_iou:.4f}")
    if current and sum(len(level) for level in current):
        old = torch.tensor([wh_ for level in current for wh_ in level], dtype=torch.float32)
        print(f"  (the config's anchors: {float(shape_iou(wh, old).max(1).values.mean()):.4f})")
    flow = ", ".join(str(level) for level in per_level)
    print(f"anchors per map {list(head.in_features)}, small to large:\n  anchors: [{flow}]")
    if args.write:
        write_anchors(args.write, per_level)
        print(f"wrote them into {args.write}")
    return 0
