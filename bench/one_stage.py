"""One-stage detectors on shapes against Faster R-CNN, and SSD300-VGG16 against
torchvision's ``ssd300_vgg16``, in one run.

    python bench/one_stage.py [--train | --random-weights] [--images 50] [--ssd300-images 20]
                              [--threads 2]

1. For each of configs/{yolo/v1_shapes,yolo/shapes,ssd/shapes,faster_rcnn/shapes}.yaml it
   reads the run in ``runs/<config path>/`` (``--train`` trains the missing ones first):
   box mAP@0.5 and mAP on all 200 validation images and the training time (from the
   run's metrics files). A detector without a run (or every one, with
   ``--random-weights``) is timed with its random initialisation and has no accuracy.
   Inference ms/image on the first ``--images`` validation images (batch 1): the four
   detectors timed in turns image by image (each image reverses the order of the one
   before; see bench/common.py) after one warm-up round; median and min-max, the ratio
   to Faster R-CNN as the median of the per-image ratios (min-max), and the detections
   per image (with random weights the number is arbitrary; it is printed next to the
   time; ``--detections N`` sets every detector's score threshold to 0 and its cap to N,
   so all four return N). All four read 128 x 128 images through ``tiny_convnet``, but
   not the same one: the printed backbone line gives each one's widths, output maps,
   neck and parameter count.
2. SSD300-VGG16: detseg's ``configs/model/ssd300_vgg16.yaml`` with torchvision's COCO
   settings (90 classes + background, scales 0.07..1.05, steps 8..300, score 0.01,
   NMS 0.45, 400 candidates per class, 200 detections) against torchvision's
   ``ssd300_vgg16(weights=None, weights_backbone=None)``, random weights, on the same
   375 x 500 random images (both resize to 300 x 300 inside): ms/image, batch 1, the two
   timed in turns image by image (who goes first alternates: A B B A ...) after one
   warm-up round; median and min-max, the ratio detseg / torchvision (median of the
   per-image ratios, min-max), and the detections per image of each. With random weights
   every class scores ~1/91 and all 400 candidates per class reach NMS in both, and both
   keep their cap of 200 detections: the post-processing's worst case, the same on both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import counts_text, finish, interleaved, ratio, start
from rcnn_family import prepare_family, time_detectors

ROOT = Path(__file__).resolve().parent.parent

FAMILY = {
    "YOLO v1": "configs/yolo/v1_shapes.yaml",
    "YOLO (anchors)": "configs/yolo/shapes.yaml",
    "SSD": "configs/ssd/shapes.yaml",
    "Faster R-CNN": "configs/faster_rcnn/shapes.yaml",
}


def ssd300_vs_torchvision(images: int):
    import torch
    from torchvision.models.detection import ssd300_vgg16

    from detseg.config import load_config, to_plain
    from detseg.structures import DetSample

    node = to_plain(load_config(ROOT / "configs/model/ssd300_vgg16.yaml", [
        "num_classes=90", "head.scales=[0.07,0.15,0.33,0.51,0.69,0.87,1.05]"]))
    from detseg.models import build_model

    torch.manual_seed(0)
    ours = build_model(node).eval()
    theirs = ssd300_vgg16(weights=None, weights_backbone=None).eval()
    g = torch.Generator().manual_seed(0)
    pictures = [torch.randint(0, 255, (3, 375, 500), dtype=torch.uint8, generator=g) for _ in range(images)]
    counts = {"detseg": [], "torchvision": []}
    sides = {"detseg": lambda im: len(ours.predict([DetSample(im, 0, (375, 500))])[0]),
             "torchvision": lambda im: len(theirs([im.float() / 255])[0]["boxes"])}
    with torch.no_grad():
        times = interleaved(sides, pictures, warmup=1, on_result=lambda name, i, n: counts[name].append(n))
    return times, counts


def backbone_line(model) -> str:
    """Widths, output maps and parameters of the backbone, the neck and the whole model."""
    backbone = model.backbone
    stages = getattr(backbone, "_shape", None) or backbone.output_shape()  # tiny_convnet: all stages
    widths = [spec.channels for spec in stages.values()]
    params = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
    neck = getattr(model, "neck", None)
    return (f"{type(backbone).__name__} widths {widths} -> {list(backbone.output_shape())}, {params(backbone):,} "
            f"parameters; neck {type(neck).__name__ if neck is not None else 'none'} ({params(neck):,}); "
            f"model {params(model):,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the runs that are missing")
    parser.add_argument("--random-weights", action="store_true", help="time every detector with random weights")
    parser.add_argument("--images", type=int, default=50, help="shapes validation images timed")
    parser.add_argument("--ssd300-images", type=int, default=20, help="images timed for SSD300 (0: skip)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (all models)")
    parser.add_argument("--detections", type=int, default=0,
                        help="N: score threshold 0 and at most N detections per image on every shapes detector, "
                             "so all return N (0: as configured)")
    args = parser.parse_args()
    start(f"bench/one_stage.py {' '.join(sys.argv[1:])}".strip(), args.threads)
    print("batch 1")
    entries = prepare_family(FAMILY, args.train, args.random_weights, args.detections)
    for name, e in entries.items():
        print(f"  {name}: {backbone_line(e.model)}")
    samples = {name: [e.dataset[i] for i in range(args.images)] for name, e in entries.items()}
    times, counts = time_detectors(entries, samples)

    print(f"\n| detector | box mAP@0.5 | box mAP | train time (min) | ms/image ({args.images} images), "
          f"median (min-max) | vs Faster R-CNN (per-image ratios) | detections/image |")
    print("|---|---|---|---|---|---|---|")
    for name, e in entries.items():
        accuracy = ("- | - | -" if e.metrics is None else
                    f"{e.metrics['AP50']:.3f} | {e.metrics['AP']:.3f} | {e.minutes:.1f}")
        print(f"| {name} | {accuracy} | {times[name].ms()} | {ratio(times[name], times['Faster R-CNN'])} | "
              f"{counts_text(counts[name])} |")

    if args.ssd300_images:
        times, counts = ssd300_vs_torchvision(args.ssd300_images)
        print(f"\nSSD300-VGG16, 375 x 500 images, {args.ssd300_images} images in turns (ABBA), batch 1, "
              f"random weights:")
        print(f"detseg {times['detseg'].ms()}/image (detections: {counts_text(counts['detseg'])}), torchvision "
              f"{times['torchvision'].ms()}/image (detections: {counts_text(counts['torchvision'])}): "
              f"ratio detseg / torchvision {ratio(times['detseg'], times['torchvision'])}")
    finish()


if __name__ == "__main__":
    main()
