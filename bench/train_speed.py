"""Faster / Mask R-CNN speed and memory: detseg vs torchvision, measured in one run.

    python bench/train_speed.py [--family faster|mask] [--size 800] [--iters 3] [--images 3]

Each (framework, model) runs in its own process so peak RSS is its own:

- detseg ``configs/model/<family>_rcnn_r50_fpn.yaml`` vs torchvision
  ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` (random weights, 80 classes),
  images of ``size`` x ``4/3 size`` pixels (torchvision's resize is then a no-op);
- detseg's small CPU config (``<family>_rcnn_tiny``, 128-pixel shapes images) and
  torchvision's R50-FPN at the same 128-pixel input, for scale.

Prints training images/s (batch 2), inference ms/image (batch 1, median), peak RSS, and
the detseg / torchvision ratios. Note: with random weights torchvision builds its ResNet
with plain BatchNorm (eval mode), detseg's config with frozen BatchNorm; both use the
same fused kernel at inference.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent


def detseg_model(family: str, kind: str):
    from detseg.config import load_config, to_plain
    from detseg.models import build_model

    return build_model(to_plain(load_config(ROOT / "configs/model" / f"{family}_rcnn_{kind}.yaml", [])))


def samples(count: int, height: int, width: int, seed: int = 0):
    import torch

    from detseg.structures import Boxes, DetSample, Instances

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        image = torch.randint(0, 255, (3, height, width), dtype=torch.uint8, generator=g)
        xy = torch.rand(5, 2, generator=g) * torch.tensor([width * 0.7, height * 0.7])
        wh = (torch.rand(5, 2, generator=g) * 0.25 + 0.05) * torch.tensor([width, height])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, 3, (5,), generator=g)
        masks = torch.zeros(5, height, width, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
            masks[k, y1:y2, x1:x2] = True
        gt = Instances(Boxes(boxes), labels, (height, width), masks=masks)
        out.append(DetSample(image, i + 1, (height, width), gt=gt))
    return out


def worker(framework: str, family: str, kind: str, height: int, width: int, iters: int, images: int) -> dict:
    import torch

    torch.manual_seed(0)
    data = samples(max(images, 2), height, width)
    if framework == "detseg":
        model = detseg_model(family, kind)

        def train_step(batch):
            return sum(model.loss(batch).values())

        def infer(sample):
            return model.predict([sample])
    else:
        import torchvision

        builder = {"faster": torchvision.models.detection.fasterrcnn_resnet50_fpn,
                   "mask": torchvision.models.detection.maskrcnn_resnet50_fpn}[family]
        model = builder(
            weights=None, weights_backbone=None, num_classes=81, min_size=min(height, width),
            max_size=max(height, width))

        def to_tv(sample):
            return sample.image.float() / 255

        def train_step(batch):
            targets = [{"boxes": s.gt.boxes.tensor, "labels": s.gt.labels + 1, "masks": s.gt.masks.to(torch.uint8)}
                       for s in batch]
            return sum(model([to_tv(s) for s in batch], targets).values())

        def infer(sample):
            return model([to_tv(sample)])

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    model.train()
    batch = data[:2]
    train_step(batch).backward()  # warm-up
    start = time.perf_counter()
    for _ in range(iters):
        loss = train_step(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    timings = []
    with torch.no_grad():
        infer(data[0])  # warm-up
        for sample in data[:images]:
            start = time.perf_counter()
            infer(sample)
            timings.append(time.perf_counter() - start)
    return {
        "train_images_per_s": 2 * iters / train_seconds,
        "infer_ms_per_image": 1000 * sorted(timings)[len(timings) // 2],  # median
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(framework: str, family: str, kind: str, height: int, width: int, iters: int, images: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", framework, family, kind, str(height), str(width), str(iters),
           str(images)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800, help="short side of the R50-FPN comparison")
    parser.add_argument("--iters", type=int, default=3, help="timed training iterations (batch 2)")
    parser.add_argument("--images", type=int, default=3, help="timed inference images")
    parser.add_argument("--family", choices=["faster", "mask"], default="faster")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, family, kind, height, width, iters, images = args.worker
        print(json.dumps(worker(framework, family, kind, int(height), int(width), int(iters), int(images))))
        return
    import torch

    family = args.family
    print(f"{family.title()} R-CNN, torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = [("R50-FPN", "r50_fpn", args.size, args.size * 4 // 3), ("R50-FPN", "r50_fpn", 128, 128)]
    for label, kind, h, w in rows:
        ours = run("detseg", family, kind, h, w, args.iters, args.images)
        theirs = run("torchvision", family, kind, h, w, args.iters, args.images)
        print(f"\n{label} {h}x{w}")
        print(f"  {'':12} {'train img/s':>12} {'infer ms/img':>13} {'peak RSS MB':>12}")
        for name, r in (("detseg", ours), ("torchvision", theirs)):
            print(f"  {name:12} {r['train_images_per_s']:12.2f} {r['infer_ms_per_image']:13.1f} {r['peak_rss_mb']:12.0f}")
        print(f"  {'ratio':12} {theirs['train_images_per_s'] / ours['train_images_per_s']:12.3f} "
              f"{ours['infer_ms_per_image'] / theirs['infer_ms_per_image']:13.3f} "
              f"{ours['peak_rss_mb'] / theirs['peak_rss_mb']:12.3f}   (detseg time or memory / torchvision)")
    tiny = run("detseg", family, "tiny", 128, 128, args.iters * 5, args.images * 5)
    print(f"\ndetseg small CPU config ({family}_rcnn_tiny) 128x128: {tiny['train_images_per_s']:.1f} train img/s, "
          f"{tiny['infer_ms_per_image']:.1f} ms/img inference, {tiny['peak_rss_mb']:.0f} MB peak RSS")


if __name__ == "__main__":
    main()
