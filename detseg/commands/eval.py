"""Evaluate a trained model, or result files you already have.

``python tools/eval.py`` is the same command. A checkpoint on its config's validation split,
or on any data set given by overrides::

    detseg-eval CONFIG --checkpoint CKPT [key=value ...] [--out metrics.json] [--report DIR]
    detseg-eval configs/faster_rcnn/shapes.yaml --checkpoint runs/faster_rcnn/shapes/best.pt \
        data=coco data.val.dataset.ann_file=A.json data.val.dataset.image_dir=IMG
    detseg-eval configs/faster_rcnn/shapes.yaml --checkpoint CKPT \
        data=voc data.data_root=VOCdevkit/VOC2007 evaluator=voc
    torchrun --nproc_per_node=4 tools/eval.py CONFIG --checkpoint CKPT   # each process a share

A checkpoint runs on the inference fast path: ``--precision auto`` (the default) takes bf16 +
channels-last where the CPU has bf16 units, fp32 elsewhere, BatchNorm folded either way
(``--precision fp32`` reproduces training's numbers); ``--runtime onnxruntime`` runs the
exported ONNX graph (CPU provider, checked once against PyTorch, cached beside the
checkpoint). The first line printed names the path taken. (``--backend`` is the COCO
evaluator, hence ``--runtime`` for the model's.)

Detection (COCO results JSON, or a folder of VOC devkit result files)::

    detseg-eval --gt ANN.json --results RES.json [--iou-type bbox|segm]
                [--metric coco|voc07|voc12] [--out metrics.json]
    detseg-eval --gt VOCROOT --split val --results RES.json --metric voc07

The ground truth gets the checks training data gets (the data doctor's: degenerate boxes,
boxes outside their image, duplicate image or annotation ids, annotations of images that
are not listed); results need finite scores and boxes. Each problem is one ``error:`` line
naming the file, image and annotation or result entry.

Semantic segmentation (label-map PNGs paired by file name)::

    detseg-eval --gt-masks DIR --pred-masks DIR --num-classes K
                [--ignore-index 255] [--out metrics.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detseg.allocator import keep_large_allocations_on_heap
from detseg.commands.entry import add_inference_options, command_parser, run_command
from detseg.report import format_metrics, write_metrics_json


def main(argv: list[str] | None = None) -> int:
    """``detseg-eval``: the exit code (2 after an ``error:`` line)."""
    keep_large_allocations_on_heap()
    return run_command(_evaluate, argv)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, checked: model evaluation, detection files or mask folders, one of them."""
    parser = command_parser("detseg-eval", __doc__)
    det = parser.add_argument_group("detection")
    det.add_argument("--gt", help="COCO instances JSON, a VOC root folder, or an experiment YAML "
                     "(ground truth of its data.<split>)")
    det.add_argument("--results", help="COCO results JSON, or a folder of VOC *_<class>.txt files")
    det.add_argument("--iou-type", choices=["bbox", "segm"], default="bbox")
    det.add_argument("--metric", choices=["coco", "voc07", "voc12"], default="coco")
    det.add_argument("--split", default="val", help="split of a VOC root (ImageSets/Main/<split>.txt)")
    det.add_argument("--backend", choices=["auto", "pycocotools", "faster_coco_eval"], default="auto")
    seg = parser.add_argument_group("segmentation")
    seg.add_argument("--gt-masks", help="folder of ground-truth label PNGs")
    seg.add_argument("--pred-masks", help="folder of predicted label PNGs, same file names")
    seg.add_argument("--num-classes", type=int)
    seg.add_argument("--ignore-index", type=int, default=255)
    seg.add_argument("--class-names", nargs="+", help="one name per class index")
    parser.add_argument("--out", help="write the metrics as JSON here")
    parser.add_argument("--report", metavar="DIR", help="also write plots (PR curves, confusion matrix, per-class "
                        "bars), DIR/report.html and DIR/gallery.html (the worst images with their errors drawn)")
    parser.add_argument("--checkpoint", help="evaluate this checkpoint on CONFIG's data.val")
    add_inference_options(parser, applies="with --checkpoint: ")
    parser.add_argument("overrides", nargs="*", metavar="[CONFIG] KEY=VALUE",
                        help="an experiment YAML (with --checkpoint) and config overrides")
    args = parser.parse_intermixed_args(argv)  # overrides may follow --checkpoint
    args.config = None
    if args.overrides and args.overrides[0].endswith((".yaml", ".yml")):
        args.config, args.overrides = args.overrides[0], args.overrides[1:]
    if args.checkpoint or args.config:
        if not (args.checkpoint and args.config):
            parser.error("model evaluation needs both CONFIG and --checkpoint")
        return args
    detection = args.gt or args.results
    segmentation = args.gt_masks or args.pred_masks
    if detection and segmentation:
        parser.error("give either --gt/--results or --gt-masks/--pred-masks, not both")
    if detection and not (args.gt and args.results):
        parser.error("detection needs both --gt and --results")
    if segmentation and not (args.gt_masks and args.pred_masks and args.num_classes is not None):
        parser.error("segmentation needs --gt-masks, --pred-masks and --num-classes")
    if not (detection or segmentation):
        parser.error("nothing to evaluate: give --gt and --results, or --gt-masks and --pred-masks")
    return args


def check_output_paths(args: argparse.Namespace) -> None:
    """``--out`` must be a file that can be written and ``--report`` a folder, before any
    evaluation time is spent."""
    from detseg.errors import ConfigError

    for option, value, folder in (("--out", args.out, False), ("--report", args.report, True)):
        if value is None:
            continue
        path = Path(value)
        if path.exists() and path.is_dir() != folder:
            raise ConfigError(f"{option} {value}: is a {'file' if folder else 'folder'}; give "
                              f"{'a folder' if folder else 'a file name, e.g. metrics.json'}")
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise ConfigError(f"{option} {value}: {blocking} is a file, not a folder")


def _evaluate(argv: list[str] | None) -> int:
    args = parse_args(argv)
    check_output_paths(args)
    if args.checkpoint:
        from detseg.engine.distributed import is_main_process, shutdown
        from detseg.experiment import evaluate_checkpoint
        from detseg.inference.runtime import check_runtime

        check_runtime(args.runtime, args.precision)  # e.g. onnxruntime not installed: before any loading
        try:
            metrics = evaluate_checkpoint(args.config, args.checkpoint, args.overrides, report_dir=args.report,
                                          precision=args.precision, runtime=args.runtime)
            reporting = is_main_process()  # under torchrun only rank 0 reports
        finally:
            shutdown()
        if not reporting:
            return 0
        print(format_metrics(metrics, f"{args.checkpoint} on {args.config} data.val"))
        if args.out:
            write_metrics_json(metrics, args.out)
            print(f"wrote {args.out}")
        if args.report:
            write_metrics_json(metrics, Path(args.report) / "metrics.json")
            print(f"wrote {Path(args.report) / 'report.html'}")
            if (Path(args.report) / "gallery.html").is_file():
                print(f"wrote {Path(args.report) / 'gallery.html'} (the worst images, by kind of error)")
        return 0
    from detseg.evaluation.files import evaluate_detection_files, evaluate_mask_folders

    if args.gt:
        metrics, _ = evaluate_detection_files(args.gt, args.results, args.iou_type, args.metric,
                                              args.split, args.backend, args.overrides)
        title = f"{args.metric} {args.iou_type if args.metric == 'coco' else 'bbox @ IoU 0.5'}: {args.results}"
    else:
        metrics = evaluate_mask_folders(args.gt_masks, args.pred_masks, args.num_classes,
                                        args.ignore_index, args.class_names)
        title = f"segmentation: {args.pred_masks}"
    print(format_metrics(metrics, title))
    if args.out:
        write_metrics_json(metrics, args.out)
        print(f"wrote {args.out}")
    return 0
