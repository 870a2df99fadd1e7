"""Inference knobs against plain fp32 eager, in one run: folded BatchNorm, channels-last,
bf16 autocast, bf16 + channels-last, and what ``optimize_for_inference(precision="auto")``
picks on this machine.

    python bench/inference_precision.py [--models tiny,unet,r50] [--rounds 10] [--threads 2]
                                        [--size 800] [--tiny-images 8]
    python bench/inference_precision.py --accuracy CONFIG CHECKPOINT [KEY=VALUE ...]
    PYTHONPATH=. python bench/inference_precision.py --against-torchvision [--rounds 10] [--size 800]
                                        [--torchvision-weights FILE] [--images blobs|shapes]

Speed (first form). Models, random weights (a model's work does not depend on them except
through the number of detections, printed per side):

- ``tiny``: ``configs/model/faster_rcnn_tiny.yaml`` (3 classes) on ``--tiny-images`` shapes
  validation images (128 x 128) per round, batch 1;
- ``unet``: ``configs/model/unet_tiny.yaml`` (4 classes), the same images;
- ``r50``: ``configs/model/faster_rcnn_r50_fpn.yaml`` (80 classes) on one random
  ``--size`` x ``4/3 --size`` image per round (800 x 1066 by default).

Sides (each a copy of the model in eval mode, under ``torch.no_grad``):
``fp32`` (the reference), ``fp32+fold`` (BatchNorm folded, :mod:`detseg.inference.fold_bn`),
``channels-last`` (fp32, weights channels-last), ``fp32+fold+cl`` (both), ``bf16`` (bf16 autocast alone: every module's
``forward`` under ``torch.autocast``, the code between them in fp32, as
``optimize_for_inference`` does it),
``bf16+cl`` (bf16 autocast and channels-last), ``auto`` (the model and plan
``optimize_for_inference`` returns: folding plus whatever it chose). Timed in turns (see
bench/common.py) after ``--warmup`` untimed rounds; ``--rounds`` timed rounds. Printed: median
and min-max ms per round of each side, and each side's ratio to ``fp32`` (median of the
per-round ratios, min-max).

Against torchvision (third form; ``PYTHONPATH=.`` because it builds the models with the zoo
parity tests' helpers, ``tests/zoo/``): torchvision's ``fasterrcnn_resnet50_fpn`` in fp32
eager, as its COCO weights build it (FrozenBatchNorm2d, ``trainable_backbone_layers=3``),
with random weights spread as in the zoo tests and BatchNorm statistics from one training
forward, or the state dict in ``--torchvision-weights`` (the COCO checkpoint, or trained ones from
``bench/train_tv_r50_shapes.py``); the same weights loaded into detseg's mirror
(``configs/model/tv_fasterrcnn_resnet50_fpn.yaml``).
Sides, each timed against torchvision in the same rounds: ``detseg fp32 eager``,
``detseg precision=fp32`` (folded BatchNorm + channels-last), ``detseg onnxruntime`` (the
exported graph, CPU provider, :mod:`detseg.inference.onnx_runtime`; exported and checked in
the warm-up round) and ``detseg auto``. One ``--size`` x ``4/3 --size`` image per round (smooth
random blobs, or shapes for shapes-trained weights; torchvision's resize is a no-op at 800 x 1066). Printed per side: ratio to torchvision,
detections per round and, per detection, the box difference from torchvision's nearest
detection of the same label (the share within 1e-3 px, the median, the count beyond 1 px);
and the same for torchvision against itself with ``nn.BatchNorm2d`` in place of
FrozenBatchNorm2d (the same arithmetic, rounded differently): the noise floor of these
weights; and, on the first 3 images, torchvision fp32, detseg fp32 eager and detseg
``precision=fp32`` against torchvision run in float64 (the answer both fp32 sides round away from).

Accuracy (second form): the checkpoint's COCO AP (detectors) or mIoU (segmenters) on the
config's ``data.val``: plain fp32 eager, then ``optimize_for_inference`` with ``precision``
fp32 and bf16 (BatchNorm folded and channels-last on both); prints the differences.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import counts_text, finish, interleaved, ratio, start

ROOT = Path(__file__).resolve().parent.parent
MODELS = {  # name: (config, overrides)
    "tiny": ("configs/model/faster_rcnn_tiny.yaml", ["num_classes=3"]),
    "unet": ("configs/model/unet_tiny.yaml", ["num_classes=4"]),
    "r50": ("configs/model/faster_rcnn_r50_fpn.yaml", ["num_classes=80"]),
}


def variant(model, fold: bool, channels_last: bool, bf16: bool):
    """``(copy of model, run(samples))`` with the given knobs."""
    import torch

    from detseg.inference.fold_bn import fold_batch_norm
    from detseg.inference.optimize import run_modules_in_bf16, trial_samples

    fast = copy.deepcopy(model).eval()
    if fold:
        fold_batch_norm(fast, lambda: fast.predict(trial_samples(torch.device("cpu"))))
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if bf16:
        run_modules_in_bf16(fast)

    def run(samples):
        with torch.no_grad():
            return [out for sample in samples for out in fast.predict([sample])]

    return run


def sides_of(model) -> tuple[dict, str]:
    import torch

    from detseg.inference.optimize import optimize_for_inference

    auto, plan = optimize_for_inference(model, "auto")

    def run_auto(samples):
        with torch.no_grad():
            return [out for sample in samples for out in auto.predict([sample])]

    return {
        "fp32": variant(model, False, False, False),
        "fp32+fold": variant(model, True, False, False),
        "channels-last": variant(model, False, True, False),
        "fp32+fold+cl": variant(model, True, True, False),
        "bf16": variant(model, False, False, True),
        "bf16+cl": variant(model, False, True, True),
        "auto": run_auto,
    }, plan.describe()


def inputs_for(name: str, rounds: int, size: int, tiny_images: int) -> list[list]:
    import torch

    from detseg.data import ShapesDataset
    from detseg.structures import DetSample

    if name == "r50":
        g = torch.Generator().manual_seed(0)
        height, width = size, size * 4 // 3
        return [[DetSample(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g), i,
                           (height, width))] for i in range(rounds)]
    shapes = ShapesDataset(split="val", num_images=rounds * tiny_images, image_size=128, seed=0)
    return [[shapes[r * tiny_images + k] for k in range(tiny_images)] for r in range(rounds)]


def speed(args) -> None:
    import torch

    from detseg.config import load_config, to_plain
    from detseg.models import build_model
    from detseg.structures import Instances

    for name in args.models.split(","):
        config, overrides = MODELS[name]
        torch.manual_seed(0)
        model = build_model(to_plain(load_config(ROOT / config, overrides))).eval()
        sides, plan = sides_of(model)
        inputs = inputs_for(name, args.rounds, args.size, args.tiny_images)
        counts: dict[str, list[int]] = {side: [] for side in sides}

        def count(side, i, result, counts=counts):
            if isinstance(result[0], Instances):  # a segmenter's work is one label per pixel
                counts[side].append(sum(len(r) for r in result))

        per = f"{len(inputs[0])} image(s)" if name != "r50" else f"1 image {args.size}x{args.size * 4 // 3}"
        print(f"\n-- {name}: {config} ({per} per round, batch 1; {args.rounds} rounds, {args.warmup} warm-up)")
        print(f"   optimize_for_inference(precision='auto'): {plan}")
        timings = interleaved(sides, inputs, warmup=args.warmup, on_result=count)
        print("| side | ms per round | ratio to fp32 | detections per round |")
        print("|---|---|---|---|")
        for side, series in timings.items():
            shown = counts_text(counts[side]).replace("on every image", "every round") if counts[side] else "-"
            print(f"| {side} | {series.ms()} | {ratio(series, timings['fp32'])} | {shown} |", flush=True)


def accuracy(config: str, checkpoint: str, overrides: list[str]) -> None:
    import torch

    from detseg.engine.checkpoint import inference_weights, load_checkpoint, load_model_state
    from detseg.engine.evaluate import evaluate
    from detseg.experiment import build_evaluation, build_model_for, load_splits
    from detseg.inference.optimize import optimize_for_inference
    from detseg.models.base import Segmenter

    cfg = load_splits(config, overrides, ["val"])
    dataset, evaluator, settings = build_evaluation(cfg, "val")
    model = build_model_for(cfg, dataset, initialize=False)
    load_model_state(model, inference_weights(load_checkpoint(checkpoint)), checkpoint)
    model.eval()
    key = "mIoU" if isinstance(model, Segmenter) else "AP"
    results = {}
    for label, precision in (("fp32 eager", None), ("precision=fp32", "fp32"), ("precision=bf16", "bf16")):
        runner = model
        if precision is not None:
            runner, plan = optimize_for_inference(model, precision)
            print(plan.describe())
        with torch.no_grad():
            metrics = evaluate(runner, dataset, evaluator, "cpu", settings.batch_size, progress=False)
        results[label] = metrics
        extra = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("AP50", "AP75", "mDice", "pixel_acc") if k in metrics)
        print(f"{label}: {key} {metrics[key]:.4f} ({extra})", flush=True)
    base = results["fp32 eager"][key]
    for label, metrics in results.items():
        print(f"{label}: {key} - fp32 eager = {metrics[key] - base:+.5f}")


def torchvision_faster_rcnn(weights: str | None = None):
    """torchvision's ``fasterrcnn_resnet50_fpn`` as its COCO weights build it (FrozenBatchNorm2d,
    stem and layer1 frozen), in eval mode, with the state dict in the file ``weights`` (e.g. the
    COCO checkpoint, or bench/train_tv_r50_shapes.py's) or else random weights spread as in
    tests/zoo; and the same model with ``nn.BatchNorm2d`` (eval) in place of FrozenBatchNorm2d:
    the same arithmetic, rounded differently, for the noise floor of the box comparison."""
    import torch
    import torchvision
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    from tests.zoo.test_rcnn_zoo import torchvision_model

    if weights is None:
        plain = torchvision_model("fasterrcnn_resnet50_fpn")  # BatchNorm2d, statistics from one training forward
    else:
        plain = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        plain.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # what fasterrcnn_resnet50_fpn(weights=COCO_V1) builds before loading the weights
    backbone = _resnet_fpn_extractor(torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d), 3)
    frozen = torchvision.models.detection.FasterRCNN(backbone, num_classes=91)
    frozen.load_state_dict({k: v for k, v in plain.state_dict().items() if not k.endswith("num_batches_tracked")})
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == 53
    with torch.no_grad():
        return frozen.eval(), plain.eval()


SHAPES_TILE = 320  # bench/train_tv_r50_shapes.py's training size: objects at the scale it learned


def shapes_scene(seed: int, height: int, width: int) -> tuple:
    """``(image uint8[3, H, W], boxes float32[N, 4] xyxy px, labels int64[N] 0..2)``: a grid of
    shapes images of :data:`SHAPES_TILE` pixels (1-5 objects each, as in training), cropped to
    ``H x W``; a box is the visible part of an object, objects cut off entirely are dropped."""
    import numpy as np

    from detseg.data.shapes import draw_shapes_image, masks_to_boxes

    rng = np.random.default_rng(seed)
    rows, cols = -(-height // SHAPES_TILE), -(-width // SHAPES_TILE)
    canvas = np.zeros((rows * SHAPES_TILE, cols * SHAPES_TILE, 3), np.uint8)
    boxes, labels = [], []
    for row in range(rows):
        for col in range(cols):
            tile, tile_labels, masks = draw_shapes_image(rng, SHAPES_TILE, 5, 0.15, 0.4)
            y, x = row * SHAPES_TILE, col * SHAPES_TILE
            canvas[y:y + SHAPES_TILE, x:x + SHAPES_TILE] = tile
            visible = masks[:, :max(0, min(SHAPES_TILE, height - y)), :max(0, min(SHAPES_TILE, width - x))]
            for box, label, mask in zip(masks_to_boxes(visible), tile_labels, visible):
                if mask.any():
                    boxes.append(box + np.array([x, y, x, y], np.float32))
                    labels.append(label)
    return (torch_image(canvas[:height, :width]), np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(labels, np.int64))


def test_image(kind: str, height: int, width: int, seed: int):
    """``uint8[3, H, W]``: smooth random blobs (``blobs``) or :func:`shapes_scene` (``shapes``,
    for weights trained on shapes)."""
    from tests.zoo.parity import smooth_image

    if kind == "blobs":
        return smooth_image(height, width, seed=seed)
    return shapes_scene(1000 + seed, height, width)[0]


def shapes_ap(sides: dict, count: int, height: int, width: int) -> dict[str, dict[str, float]]:
    """COCO box AP (pycocotools) of each side's detections on ``count`` :func:`shapes_scene`
    images (seeds from 2000, none of the timed ones), against the drawn boxes.
    ``sides[name](image uint8[3, H, W])`` returns a detseg or torchvision result."""
    from detseg.data.shapes import SHAPE_CLASSES
    from detseg.evaluation.coco import coco_metrics

    truth = {"images": [], "categories": [{"id": k, "name": name} for k, name in enumerate(SHAPE_CLASSES)],
             "annotations": []}
    pixels = {}
    for image_id in range(1, count + 1):
        image, boxes, labels = shapes_scene(2000 + image_id, height, width)
        truth["images"].append({"id": image_id, "height": height, "width": width})
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": image_id,
                                         "category_id": label, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        pixels[image_id] = image
    metrics = {}
    for name, side in sides.items():
        results = []
        for image_id, image in pixels.items():
            boxes, scores, labels = as_triple(side(image))
            for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                results.append({"image_id": image_id, "category_id": int(label), "score": score,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        metrics[name] = coco_metrics(truth, results)
    return metrics


def torch_image(pixels):
    """``uint8[H, W, 3]`` numpy -> ``uint8[3, H, W]`` tensor."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).contiguous()


def box_differences(ours, theirs) -> list[float]:
    """Per detection ``(boxes, scores, labels)`` of ``ours``: the largest coordinate difference
    (pixels) from the nearest box of the same label among ``theirs`` (``inf`` where none)."""
    out = []
    for box, label in zip(ours[0], ours[2]):
        same = theirs[0][theirs[2] == label]
        out.append(float((same - box).abs().max(1).values.min()) if len(same) else float("inf"))
    return out


def difference_text(differences: list[float]) -> str:
    """``"97% within 1e-3 px, median 2.1e-04 px, max 3.2e+00 px, 3 of 600 beyond 1 px"``."""
    import statistics

    if not differences:
        return "no detections"
    within = sum(d <= 1e-3 for d in differences) / len(differences)
    return (f"{100 * within:.1f}% within 1e-3 px, median {statistics.median(differences):.1e} px, "
            f"max {max(differences):.1e} px, {sum(d > 1 for d in differences)} of {len(differences)} beyond 1 px")


def as_triple(result) -> tuple:
    """``(boxes, scores, labels 0..C-1)`` of detseg ``Instances`` or a torchvision output."""
    if isinstance(result, dict):
        return result["boxes"], result["scores"], result["labels"] - 1  # torchvision's 0 is background
    return result.boxes.tensor, result.scores, result.labels


def against_torchvision(args) -> None:
    import tempfile

    import torch

    from detseg.inference.onnx_runtime import onnxruntime_model
    from detseg.inference.optimize import optimize_for_inference
    from tests.zoo.parity import detseg_model, samples_of

    theirs, plain = torchvision_faster_rcnn(args.torchvision_weights)
    scratch = tempfile.TemporaryDirectory()
    path = Path(scratch.name) / "fasterrcnn_resnet50_fpn.pth"
    torch.save(theirs.state_dict(), path)
    ours = detseg_model("fasterrcnn_resnet50_fpn", path)
    fp32, plan32 = optimize_for_inference(ours, "fp32")
    auto, plan = optimize_for_inference(ours, "auto")
    # tolerance inf: the runtime's own check is skipped here; the table reports the difference
    ort, ort_plan = onnxruntime_model(ours, Path(scratch.name) / "onnx", {"bench": "tv_r50"}, float("inf"))
    for line in (plan32.describe(), plan.describe(), ort_plan.describe()):
        print(f"   {line}")

    def detseg_side(model):
        return lambda image: model.predict(samples_of([image]))[0]

    reference = "torchvision fp32 eager"
    sides = {reference: lambda image: theirs([image.float() / 255])[0],
             "detseg fp32 eager": detseg_side(ours), "detseg precision=fp32": detseg_side(fp32),
             "detseg onnxruntime": detseg_side(ort), "detseg auto": detseg_side(auto)}
    height, width = args.size, args.size * 4 // 3
    images = [test_image(args.images, height, width, seed=i) for i in range(args.rounds)]
    results: dict[str, dict[int, tuple]] = {side: {} for side in sides}

    def keep(side, i, result):
        results[side][i] = as_triple(result)

    print(f"\n-- torchvision fasterrcnn_resnet50_fpn vs detseg tv_fasterrcnn_resnet50_fpn, same weights, "
          f"1 image {height}x{width} per round, batch 1; {args.rounds} rounds, {args.warmup} warm-up")
    with torch.no_grad():
        timings = interleaved(sides, images, warmup=max(args.warmup, 1), on_result=keep)
        checked = range(min(3, len(images)))
        floor = [d for i in checked
                 for d in box_differences(as_triple(plain([images[i].float() / 255])[0]), results[reference][i])]
        exact = copy.deepcopy(theirs).double()  # float64: the reference both fp32 sides round away from
        exact_results = [as_triple(exact([images[i].double() / 255])[0]) for i in checked]
        from_exact = {side: difference_text([d for i in checked for d in box_differences(results[side][i], exact_results[i])])
                      for side in (reference, "detseg fp32 eager", "detseg precision=fp32")}
    print("| side | ms per image | ratio to torchvision fp32 eager | detections per image | box difference "
          "from torchvision's nearest detection of the same label |")
    print("|---|---|---|---|---|")
    for side, series in timings.items():
        counts = [len(r[0]) for r in results[side].values()]
        difference = "-"
        if side != reference:
            difference = difference_text([d for i in results[side]
                                          for d in box_differences(results[side][i], results[reference][i])])
        print(f"| {side} | {series.ms()} | {ratio(series, timings[reference])} | {counts_text(counts)} | "
              f"{difference} |", flush=True)
    print(f"noise floor: torchvision with nn.BatchNorm2d (eval) for FrozenBatchNorm2d, the same arithmetic "
          f"rounded differently, on the first {len(checked)} images: {difference_text(floor)}")
    for side, text in from_exact.items():
        print(f"{side} against torchvision in float64, the first {len(checked)} images: {text}")
    if args.ap_images:
        print(f"\nCOCO box AP on {args.ap_images} other shapes images of {height}x{width} (pycocotools):")
        with torch.no_grad():
            metrics = shapes_ap({side: sides[side] for side in (reference, "detseg precision=fp32", "detseg auto")},
                                args.ap_images, height, width)
        base = metrics[reference]
        for side, values in metrics.items():
            print(f"| {side} | AP {values['AP']:.4f} ({values['AP'] - base['AP']:+.4f}) | "
                  f"AP50 {values['AP50']:.4f} | AP75 {values['AP75']:.4f} |")
    scratch.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,unet,r50", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (every side)")
    parser.add_argument("--size", type=int, default=800, help="r50: image height (width 4/3 of it)")
    parser.add_argument("--tiny-images", type=int, default=8, help="tiny / unet: images per round")
    parser.add_argument("--against-torchvision", action="store_true",
                        help="R50-FPN Faster R-CNN: detseg fp32 / precision=fp32 / onnxruntime / auto against "
                             "torchvision's fasterrcnn_resnet50_fpn fp32 eager (run with PYTHONPATH=.)")
    parser.add_argument("--torchvision-weights", metavar="FILE",
                        help="--against-torchvision: a fasterrcnn_resnet50_fpn state dict (the COCO checkpoint, or "
                             "bench/train_tv_r50_shapes.py's) instead of random weights")
    parser.add_argument("--images", choices=("blobs", "shapes"), default="blobs",
                        help="--against-torchvision: smooth random blobs, or shapes (for shapes-trained weights)")
    parser.add_argument("--ap-images", type=int, default=0, metavar="N",
                        help="--against-torchvision --images shapes: also the COCO box AP of torchvision, "
                             "precision=fp32 and auto on N other shapes images (for shapes-trained weights)")
    parser.add_argument("--accuracy", nargs="+", metavar="ARG",
                        help="CONFIG CHECKPOINT [KEY=VALUE ...]: metric with fp32 and bf16 instead of speed")
    args = parser.parse_args()
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(MODELS)}")
    if args.accuracy is not None and len(args.accuracy) < 2:
        parser.error("--accuracy needs CONFIG CHECKPOINT")
    start(f"bench/inference_precision.py {' '.join(sys.argv[1:])}".strip(), args.threads)
    if args.accuracy:
        accuracy(args.accuracy[0], args.accuracy[1], args.accuracy[2:])
    elif args.against_torchvision:
        against_torchvision(args)
    else:
        speed(args)
    finish()


if __name__ == "__main__":
    main()
