"""Export a checkpoint to ONNX or TorchScript and check the export against PyTorch.

    detseg-export --checkpoint runs/demo/best.pt --format onnx --out runs/demo/model.onnx
    detseg-export --checkpoint runs/unet/shapes/best.pt --format torchscript --out unet.pt \
        [--images 50] [--tolerance 1e-3] [--no-check] [key=value ...]

``python tools/export.py`` is the same command. The graph takes one ``uint8[3, H, W]`` RGB
image of any size and returns ``boxes, scores, labels`` (detectors, postprocessing included;
the network runs at the first validation image's size, to which the graph letterboxes the
image, and the boxes come back in the image's pixels) or a ``labels[H, W]`` map (segmenters). The parity check runs the exported file
(onnxruntime or TorchScript) and PyTorch on the checkpoint's validation images (overrides
change ``data.val``) and compares detections and AP / label maps and mIoU; beyond the
tolerance the export fails, exits 1 and the file is removed.
"""

from __future__ import annotations

from pathlib import Path

from detseg.commands.entry import command_parser, run_command


def main(argv: list[str] | None = None) -> int:
    """``detseg-export``: the exit code (2 after an ``error:`` line)."""
    return run_command(_export, argv)


def _export(argv: list[str] | None) -> int:
    parser = command_parser("detseg-export", __doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--out", required=True)
    parser.add_argument("--images", type=int, help="validation images for the parity check (default: all)")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--no-check", action="store_true", help="export without the parity check")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="changes to the checkpoint's config")
    args = parser.parse_intermixed_args(argv)

    from detseg.data import build_dataset
    from detseg.deploy import ExportError, export_model, input_shape, parity_check
    from detseg.errors import ConfigError
    from detseg.experiment import apply_overrides, build_evaluator
    from detseg.inference.predictor import Predictor

    if args.images is not None and args.images < 1:
        raise ConfigError(f"--images must be at least 1, got {args.images}")
    if args.tolerance < 0:
        raise ConfigError(f"--tolerance must be >= 0, got {args.tolerance:g}")
    if Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: is a folder; give the file to write, e.g. {Path(args.out) / 'model'}"
                          f"{'.onnx' if args.format == 'onnx' else '.pt'}")
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    config = apply_overrides(predictor.config, args.overrides, f"{args.checkpoint} (its config)")
    if config.get("data", {}).get("val") is None:
        raise ConfigError(f"{args.checkpoint}: its config has no data.val, which the export's example image "
                          f"and parity check come from; give one with data.val...=")
    dataset = build_dataset(config.data.val, "data.val")
    count = len(dataset) if args.images is None else min(args.images, len(dataset))
    samples = [dataset[i] for i in range(count)]
    out = export_model(predictor.model, samples[0].image, args.format, args.out)
    shape = ", ".join("any" if d is None else str(d) for d in input_shape(predictor.model, samples[0].image))
    print(f"wrote {out} ({args.format}, input uint8[{shape}])")
    if args.no_check:
        return 0
    try:
        report = parity_check(predictor.model, out, samples,
                              lambda: build_evaluator(config, dataset),
                              args.tolerance)
    except ExportError:
        out.unlink(missing_ok=True)
        raise
    print(f"{report}: within {args.tolerance:g}")
    return 0
