"""A torchvision zoo model in detseg vs in torchvision: inference time on the same images.

    PYTHONPATH=. python bench/zoo_speed.py [--builder fasterrcnn_mobilenet_v3_large_320_fpn]
        [--images 30] [--threads 2] [--image-dir ../shared/data/coco128/images]

``PYTHONPATH=.`` (from the repository root): the models are built by the parity tests'
helpers, ``tests/zoo/``, which are not part of the installed package.

torchvision's model is built with random weights spread as in the parity tests (no
internet here; the published checkpoint has the same shapes, so the same cost), saved, and
loaded into detseg's mirroring config with ``init_from``. Both run on each image in turn,
the order alternating (detseg first, then torchvision first: A B B A ...) so drifts in
machine speed hit both, after one untimed warm-up round; batch 1, ``torch.no_grad``, the
same pinned thread count. Printed: median and min-max ms/image of each, the ratio
detseg / torchvision (median of the per-image ratios, min-max), and the detections per
image of each (the same weights give the same detections, so the same post-processing
work; a differing count is reported). Images: the JPEGs of ``--image-dir`` (real photos),
else synthetic ones of 480 x 640.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import counts_text, finish, interleaved, ratio, start

ROOT = Path(__file__).resolve().parent.parent


def load_images(image_dir: Path | None, count: int):
    import numpy as np
    import torch
    from PIL import Image

    from tests.zoo.parity import smooth_image

    files = sorted(image_dir.glob("*.jpg"))[:count] if image_dir and image_dir.is_dir() else []
    if files:
        return [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).contiguous()
                for f in files], f"{len(files)} JPEGs of {image_dir}"
    return [smooth_image(480, 640, seed=i) for i in range(count)], f"{count} synthetic 480x640 images"


def check_test_helpers() -> None:
    """Stop with the command to use when the repository's ``tests`` package is not importable."""
    try:
        import tests.zoo.parity  # noqa: F401
    except ModuleNotFoundError:
        raise SystemExit("error: bench/zoo_speed.py uses tests/zoo/parity.py, which is not installed; run it "
                         "from the repository root as PYTHONPATH=. python bench/zoo_speed.py") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builder", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-dir", type=Path, default=ROOT.parent / "shared/data/coco128/images")
    args = parser.parse_args()
    check_test_helpers()
    start(f"bench/zoo_speed.py {' '.join(sys.argv[1:])}".strip(), args.threads)

    import torch
    import torchvision

    from tests.zoo.parity import detseg_model, randomise, samples_of
    from tests.zoo.test_rcnn_zoo import training_forward

    torch.manual_seed(0)
    theirs = getattr(torchvision.models.detection, args.builder)(weights=None, weights_backbone=None)
    randomise(theirs, training_forward)
    with torch.no_grad():
        theirs.roi_heads.box_predictor.cls_score.weight.mul_(0.5)
        theirs.roi_heads.box_predictor.bbox_pred.weight.mul_(0.1)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{args.builder}.pth"
        torch.save(theirs.state_dict(), path)
        ours = detseg_model(args.builder, path)
    images, what = load_images(args.image_dir, args.images)
    counts = {"detseg": [], "torchvision": []}
    sides = {"detseg": lambda image: len(ours.predict(samples_of([image]))[0]),
             "torchvision": lambda image: len(theirs([image.float() / 255])[0]["boxes"])}
    with torch.no_grad():
        times = interleaved(sides, images, warmup=1, on_result=lambda name, i, n: counts[name].append(n))
    same = counts["detseg"] == counts["torchvision"]
    print(f"{args.builder} on {what}, batch 1, {len(images)} images in turns (ABBA), median (min-max):")
    print("| | detseg ms/image | torchvision ms/image | ratio detseg / torchvision | detections per image |")
    print("|---|---|---|---|---|")
    print(f"| {args.builder} | {times['detseg'].ms()} | {times['torchvision'].ms()} | "
          f"{ratio(times['detseg'], times['torchvision'])} | {counts_text(counts['detseg'])} both sides"
          f"{'' if same else ' (torchvision: ' + counts_text(counts['torchvision']) + '; NOT the same per image)'} |")
    print(f"detections per image, detseg: {counts['detseg']}")
    print(f"detections per image, torchvision: {counts['torchvision']}")
    finish()


if __name__ == "__main__":
    main()
