"""Convert box annotations between COCO, Pascal VOC and YOLO txt (images are copied).

    python tools/convert.py --from coco --source ANN.json --images IMAGE_DIR --to yolo --out OUT --split train
    python tools/convert.py --from yolo --source data.yaml --split val --to coco --out OUT
    python tools/convert.py --from voc --source VOCdevkit/VOC2007 --split trainval --to coco --out OUT
    python tools/convert.py --from coco --source ANN.json --images IMAGE_DIR --to coco --out OUT \
        --classes person --val-fraction 0.2     # person only; splits train and val from one file

``--classes A B``: only those classes' objects, in that order (every image stays, one
without them as a negative). ``--val-fraction F``: a held-out split, for data that comes as
one annotation file: F of the images, drawn with ``--seed``, are written as split ``val``
and the rest as ``train`` (``--split`` then names only the split read from VOC or YOLO).

Outputs: COCO ``OUT/annotations/instances_<split>.json`` + ``OUT/<split>/``; VOC
``OUT/{Annotations,JPEGImages,ImageSets/Main/<split>.txt,class_names.txt}``; YOLO
``OUT/{images,labels}/<split>/`` + ``OUT/data.yaml``. Boxes round-trip exactly up to float
rounding. What a format cannot hold is said, not silently dropped: masks (VOC, YOLO) and
crowd regions (YOLO). Data with errors is refused; ``tools/check_data.py`` lists them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detseg.cli import ArgumentParser, run_cli

FORMATS = ("coco", "voc", "yolo")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source_format", choices=FORMATS, required=True)
    parser.add_argument("--source", required=True, help="COCO JSON, VOC root, or YOLO data YAML")
    parser.add_argument("--images", help="COCO image folder (with --from coco)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--class-names", nargs="+", help="VOC class names (default: root/class_names.txt or VOC's 20)")
    parser.add_argument("--to", dest="target_format", choices=FORMATS, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", nargs="+", metavar="NAME", help="keep only these classes' objects, in this order")
    parser.add_argument("--val-fraction", type=float, metavar="F",
                        help="write F of the images as split 'val' and the rest as 'train'")
    parser.add_argument("--seed", type=int, default=0, help="the draw of --val-fraction")
    args = parser.parse_args(argv)

    from detseg.data.doctor import check_labeled_set
    from detseg.data.formats import read_format, refuse_errors, write_coco, write_voc, write_yolo
    from detseg.data.formats.subset import hold_out, keep_classes
    from detseg.errors import DataError

    if args.source_format == "coco" and not args.images:
        parser.error("--from coco needs --images (the folder the JSON's file_name entries are in)")
    if args.images and not Path(args.images).is_dir():
        raise DataError(f"--images {args.images}: folder not found")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file; give a folder to write the converted data set to")
    labeled = read_format(args.source_format, args.source, args.split, args.class_names, args.images)
    if not labeled.images and not labeled.errors():
        raise DataError(f"{args.source}: no images to convert (split '{args.split}')")
    # The reader's findings and those of the image files (missing, unreadable, of another size).
    report = check_labeled_set(labeled, args.split, args.source_format)
    refuse_errors(report.findings, f"{args.source} (split '{args.split}')",
                  hint="fix them first; tools/check_data.py lists them all")
    if args.classes:
        labeled = keep_classes(labeled, args.classes)
    masks = sum(a.segmentation is not None for im in labeled.images for a in im.annotations)
    crowd = sum(a.iscrowd for im in labeled.images for a in im.annotations)
    splits = {args.split: labeled}
    if args.val_fraction is not None:
        splits = dict(zip(("train", "val"), hold_out(labeled, args.val_fraction, args.seed), strict=True))
    for split, part in splits.items():
        if args.target_format == "coco":
            write_coco(part, out / "annotations" / f"instances_{split}.json", out / split)
        elif args.target_format == "voc":
            write_voc(part, out, split)
        else:
            write_yolo(part, out, split)
        objects = sum(len(im.annotations) for im in part.images)
        print(f"converted {len(part.images)} images, {objects} objects, {len(part.class_names)} classes: "
              f"{args.source_format} -> {args.target_format} in {out} (split '{split}')")
    if args.target_format == "voc" and masks:
        print(f"note: VOC XML holds no instance masks; {masks} masks were not written")
    if args.target_format == "yolo" and (masks or crowd):
        print(f"note: YOLO txt holds boxes only: {masks} masks and {crowd} crowd regions were not written")
    return 0


if __name__ == "__main__":
    run_cli(main)
