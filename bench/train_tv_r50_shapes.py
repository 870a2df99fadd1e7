"""Trained (not random) weights for torchvision's ``fasterrcnn_resnet50_fpn``, made offline:
torchvision's own model and loss, trained from scratch on shapes images for a few minutes.

    python bench/train_tv_r50_shapes.py OUT.pth [--minutes 12] [--size 320] [--batch 2]

Why: ``bench/inference_precision.py --against-torchvision`` compares detseg's detections with
torchvision's to 1e-3 px. Random weights amplify float rounding far past that (torchvision in
fp32 against itself in fp64 differs by a median 0.04 px), trained weights do not. Without
internet there are no COCO weights, so this trains some: ``fasterrcnn_resnet50_fpn(weights=None,
weights_backbone=None, num_classes=91, trainable_backbone_layers=5)``, images drawn by
:func:`detseg.data.shapes.draw_shapes_image` (``--size`` square, 1-5 objects, labels 1-3),
torchvision's resize set to ``--size``, SGD 0.01 with momentum 0.9 and 100 warm-up steps, until
``--minutes`` of wall time. Saved: the state dict (BatchNorm statistics from training), which
``--against-torchvision --torchvision-weights OUT.pth`` loads into both sides.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision

from detseg.data.shapes import draw_shapes_image, masks_to_boxes


def shapes_batch(rng: np.random.Generator, size: int, batch: int) -> tuple[list, list]:
    """``(images float[3, S, S] in 0..1, targets {boxes xyxy px, labels 1..3})`` for torchvision."""
    images, targets = [], []
    for _ in range(batch):
        image, labels, masks = draw_shapes_image(rng, size, 5, 0.15, 0.4)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        targets.append({"boxes": torch.from_numpy(masks_to_boxes(masks)).float(),
                        "labels": torch.from_numpy(labels) + 1})
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="where to save the state dict (.pth)")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, trainable_backbone_layers=5,
        min_size=args.size, max_size=args.size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 100))
    model.train()
    started, step = time.monotonic(), 0
    while time.monotonic() - started < args.minutes * 60:
        images, targets = shapes_batch(rng, args.size, args.batch)
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        warmup.step()
        if step % 50 == 0:
            parts = ", ".join(f"{k} {v.item():.3f}" for k, v in losses.items())
            print(f"step {step} ({time.monotonic() - started:.0f} s): loss {loss.item():.3f} ({parts})", flush=True)
        step += 1
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out} after {step} steps ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
