"""One-stage detectors on shapes against Faster R-CNN, and SSD300-VGG16 against
torchvision's ``ssd300_vgg16``, in one run.

    python bench/one_stage.py [--train] [--images 50] [--ssd300-images 20]

1. For each of configs/{yolo/v1_shapes,yolo/shapes,ssd/shapes,faster_rcnn/shapes}.yaml it
   reads the run in ``runs/<config path>/`` (``--train`` trains the missing ones first):
   box mAP@0.5 and mAP on all 200 validation images and the training time (from the
   run's metrics files), and inference ms/image on the first ``--images`` validation
   images (batch 1, median). All four use tiny_convnet and 128 x 128 images.
2. SSD300-VGG16: detseg's ``configs/model/ssd300_vgg16.yaml`` with torchvision's COCO
   settings (90 classes + background, scales 0.07..1.05, steps 8..300, score 0.01,
   NMS 0.45, 400 candidates per class, 200 detections) against torchvision's
   ``ssd300_vgg16(weights=None, weights_backbone=None)``, random weights, on the same
   375 x 500 random images (both resize to 300 x 300 inside): ms/image, batch 1, median,
   the two timed in turns image by image (who goes first alternates), and the ratio detseg / torchvision. With random weights every class scores ~1/91 and
   all 400 candidates per class reach NMS in both: the postprocessing's worst case.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent

from rcnn_family import measure_family

FAMILY = {
    "YOLO v1": "configs/yolo/v1_shapes.yaml",
    "YOLO (anchors)": "configs/yolo/shapes.yaml",
    "SSD": "configs/ssd/shapes.yaml",
    "Faster R-CNN": "configs/faster_rcnn/shapes.yaml",
}


def ssd300_vs_torchvision(images: int) -> dict[str, float]:
    import torch
    from torchvision.models.detection import ssd300_vgg16

    from detseg.config import load_config, to_plain
    from detseg.structures import DetSample

    node = to_plain(load_config(ROOT / "configs/model/ssd300_vgg16.yaml", [
        "head.num_classes=90", "head.scales=[0.07,0.15,0.33,0.51,0.69,0.87,1.05]"]))
    from detseg.models import build_model

    torch.manual_seed(0)
    ours = build_model(node).eval()
    theirs = ssd300_vgg16(weights=None, weights_backbone=None).eval()
    g = torch.Generator().manual_seed(0)
    pictures = [torch.randint(0, 255, (3, 375, 500), dtype=torch.uint8, generator=g) for _ in range(images)]
    run_ours = lambda im: ours.predict([DetSample(im, 0, (375, 500))])
    run_theirs = lambda im: theirs([im.float() / 255])
    with torch.no_grad():
        run_ours(pictures[0]), run_theirs(pictures[0])  # warm-up
        ours_s, theirs_s = [], []
        for i, picture in enumerate(pictures):  # interleaved, alternating who goes first
            for fn, out in ((run_ours, ours_s), (run_theirs, theirs_s))[:: 1 if i % 2 else -1]:
                start = time.perf_counter()
                fn(picture)
                out.append(time.perf_counter() - start)
        ours_ms, theirs_ms = (1000 * sorted(t)[len(t) // 2] for t in (ours_s, theirs_s))
        boxes = len(run_ours(pictures[0])[0])
        their_boxes = len(run_theirs(pictures[0])[0]["boxes"])
    return {"detseg_ms": ours_ms, "torchvision_ms": theirs_ms, "ratio": ours_ms / theirs_ms,
            "detseg_detections": boxes, "torchvision_detections": their_boxes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the runs that are missing")
    parser.add_argument("--images", type=int, default=50, help="shapes validation images timed")
    parser.add_argument("--ssd300-images", type=int, default=20, help="images timed for SSD300 (0: skip)")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1")
    rows = measure_family(FAMILY, args.train, args.images)

    print(f"\n| detector | box mAP@0.5 | box mAP | train time (min) | ms/image ({args.images} images) | vs Faster R-CNN |")
    print("|---|---|---|---|---|---|")
    reference = rows.get("Faster R-CNN", {}).get("ms_per_image")
    for name, r in rows.items():
        ratio = f"{r['ms_per_image'] / reference:.2f}x" if reference else "-"
        print(f"| {name} | {r['AP50']:.3f} | {r['AP']:.3f} | {r['train_minutes']:.1f} | {r['ms_per_image']:.1f} | {ratio} |")

    if args.ssd300_images:
        result = ssd300_vs_torchvision(args.ssd300_images)
        print(f"\nSSD300-VGG16, 375 x 500 images, {args.ssd300_images} images, batch 1, random weights:")
        print(f"detseg {result['detseg_ms']:.1f} ms/image ({result['detseg_detections']} detections), torchvision "
              f"{result['torchvision_ms']:.1f} ms/image ({result['torchvision_detections']} detections): "
              f"ratio {result['ratio']:.3f}")


if __name__ == "__main__":
    main()
