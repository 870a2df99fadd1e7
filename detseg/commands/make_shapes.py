"""Write the synthetic shapes set to disk in COCO or VOC layout.

    detseg-make-shapes --out data/shapes_coco --format coco --split val --num-images 64
    detseg-make-shapes --out data/shapes_voc --format voc --split train --num-images 256

``python tools/make_shapes.py`` is the same command.
"""

from __future__ import annotations

from pathlib import Path

from detseg.commands.entry import command_parser, run_command


def main(argv: list[str] | None = None) -> int:
    """``detseg-make-shapes``: the exit code (2 after an ``error:`` line)."""
    return run_command(_make_shapes, argv)


def _make_shapes(argv: list[str] | None) -> int:
    parser = command_parser("detseg-make-shapes", __doc__)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--format", choices=["coco", "voc"], default="coco")
    parser.add_argument("--split", choices=["train", "val", "test"], default="val")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from detseg.data.export import export_coco, export_voc
    from detseg.data.shapes import ShapesDataset
    from detseg.errors import ConfigError

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: is a file; give a folder")
    if args.num_images < 1:
        raise ConfigError(f"--num-images must be at least 1, got {args.num_images}")
    try:
        dataset = ShapesDataset(split=args.split, num_images=args.num_images,
                                image_size=args.image_size, seed=args.seed)
    except ValueError as exc:  # e.g. an image size below the minimum
        raise ConfigError(f"--image-size {args.image_size}: {exc}") from None
    if args.format == "coco":
        written = export_coco(dataset, args.out, args.split)
    else:
        written = export_voc(dataset, args.out, args.split)
    print(f"wrote {len(dataset)} {args.split} images in {args.format} layout: {written}")
    return 0
