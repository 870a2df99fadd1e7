"""A torchvision zoo model in detseg vs in torchvision: inference time on the same images.

    python bench/zoo_speed.py [--builder fasterrcnn_mobilenet_v3_large_320_fpn] [--images 30]
                              [--threads 2] [--image-dir ../shared/data/coco128/images]

torchvision's model is built with random weights spread as in the parity tests (no
internet here; the published checkpoint has the same shapes, so the same cost), saved, and
loaded into detseg's mirroring config with ``init_from``. Both run on each image in turn
(interleaved, so drifts in machine speed hit both), batch 1, ``torch.no_grad``, the same
thread count; the table gives the median ms/image of each and their ratio, and the number
of detections (equal, or parity is broken). Images: the JPEGs of ``--image-dir`` (real
photos), else synthetic ones of 480 x 640.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent


def cpu_description() -> str:
    """The CPU model and the vector / matrix flags that pick PyTorch's kernels."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{model}; flags: {' '.join(wanted) or 'none of avx2/avx512/amx'}"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builder", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-dir", type=Path, default=ROOT.parent / "shared/data/coco128/images")
    args = parser.parse_args()

    import torch
    import torchvision

    from tests.zoo.parity import detseg_model, randomise, samples_of
    from tests.zoo.test_rcnn_zoo import training_forward

    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}; torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{torch.get_num_threads()} threads")
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
    ours_ms, theirs_ms, counts = [], [], set()
    with torch.no_grad():
        for k, image in enumerate([images[0], *images]):  # the first one warms both up
            start = time.perf_counter()
            mine = ours.predict(samples_of([image]))[0]
            middle = time.perf_counter()
            their = theirs([image.float() / 255])[0]
            end = time.perf_counter()
            if k:
                ours_ms.append(1000 * (middle - start))
                theirs_ms.append(1000 * (end - middle))
                counts.add(len(mine) == len(their["boxes"]))
    a, b = statistics.median(ours_ms), statistics.median(theirs_ms)
    print(f"{args.builder} on {what}, batch 1, median of {len(ours_ms)}:")
    print("| | detseg ms/image | torchvision ms/image | ratio detseg / torchvision | same detection counts |")
    print("|---|---|---|---|---|")
    print(f"| {args.builder} | {a:.1f} | {b:.1f} | {a / b:.3f} | {counts == {True}} |")


if __name__ == "__main__":
    main()
