"""Run a trained model on images and draw its predictions.

    detseg-infer --checkpoint runs/faster_rcnn/shapes/best.pt photo.jpg more/ --out preds/

``python tools/infer.py`` is the same command. Writes one picture per image with boxes,
labels and scores (label maps as colour overlays) and ``predictions.json`` (COCO results,
original pixel coordinates); for segmentation also ``<image>.png`` label maps.

``--precision auto`` (the default) runs bf16 + channels-last where the CPU has bf16 units
(``amx_bf16`` / ``avx512_bf16``), fp32 elsewhere, with BatchNorm folded either way; the
first line printed names the path and why (``detseg/inference/optimize.py``).

``--runtime onnxruntime`` exports the checkpoint to ONNX instead (one graph per image size
for detectors, cached in ``<checkpoint>.onnxruntime/`` beside it and reused while the
checkpoint is unchanged), checks each graph once against PyTorch and predicts with
onnxruntime's CPU provider (``pip install detseg[export]``; ``detseg/inference/onnx_runtime.py``).
"""

from __future__ import annotations

from detseg.allocator import keep_large_allocations_on_heap
from detseg.commands.entry import add_inference_options, command_parser, run_command


def main(argv: list[str] | None = None) -> int:
    """``detseg-infer``: the exit code (2 after an ``error:`` line)."""
    keep_large_allocations_on_heap()
    return run_command(_infer, argv)


def _infer(argv: list[str] | None) -> int:
    parser = command_parser("detseg-infer", __doc__)
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--checkpoint", required=True, help="a detseg checkpoint (best.pt / last.pt)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--score-thresh", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    add_inference_options(parser)
    args = parser.parse_args(argv)

    from detseg.errors import ConfigError
    from detseg.inference import Predictor
    from detseg.inference.predictor import resolve_device
    from detseg.inference.run import collect_images, predict_files
    from detseg.inference.runtime import check_runtime

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0 <= args.score_thresh <= 1:
        raise ConfigError(f"--score-thresh must be in [0, 1], got {args.score_thresh:g}")
    check_runtime(args.runtime, args.precision, resolve_device(args.device))  # these fail before the model
    collect_images(args.images)  # loads: a device that is not here, a missing image, a folder without images
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision,
                                          runtime=args.runtime)
    print(predictor.plan.describe())
    out = predict_files(predictor, args.images, args.out, args.score_thresh, args.batch_size)
    print(f"wrote predictions for {len(list(out.glob('*.jpg')))} image(s) to {out}")
    return 0
