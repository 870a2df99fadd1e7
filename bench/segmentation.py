"""Every segmenter on shapes, and FCN-ResNet-50 against torchvision's ``fcn_resnet50``,
in one run.

    python bench/segmentation.py [--train] [--images 50] [--fcn-images 10] [--fcn-size 520]

1. For each row of ``RUNS`` (a config and overrides: FCN-32s/16s/8s, FCN-8s with every
   up-sampling kind, FC-DenseNet56, U-Net) it reads the run in its run directory
   (``--train`` trains the missing ones first with ``tools/train.py``): mIoU, mDice and
   pixel accuracy on the 200 validation images and the training time (the run's
   metrics files), and inference ms/image on the first ``--images`` (batch 1, median).
2. ``configs/model/fcn_resnet50.yaml`` (torchvision's layout: dilated ResNet-50 at output
   stride 8, 3x3 conv head, bilinear x8) against ``fcn_resnet50(weights=None,
   weights_backbone=None)``, random weights, 21 classes, ``--fcn-size`` square images,
   timed in turns image by image: ms/image and the ratio detseg / torchvision. Also
   detseg's FCN-8s on a plain ResNet-50 (the paper's skips, no dilation) at that size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent

from rcnn_family import load_run, median_ms

RUNS = {  # name: (config, overrides, run directory)
    "FCN-32s (transposed)": ("configs/fcn/fcn32s_shapes.yaml", [], "runs/fcn/fcn32s_shapes"),
    "FCN-16s (transposed)": ("configs/fcn/fcn16s_shapes.yaml", [], "runs/fcn/fcn16s_shapes"),
    "FCN-8s (transposed)": ("configs/fcn/fcn8s_shapes.yaml", [], "runs/fcn/fcn8s_shapes"),
    **{f"FCN-8s ({kind})": ("configs/fcn/fcn8s_shapes.yaml", [f"model.decoder.upsample={kind}"],
                            f"runs/fcn/fcn8s_shapes_{kind}") for kind in ("bilinear", "nearest", "unpool")},
    "FC-DenseNet56": ("configs/tiramisu/fcdensenet56_shapes.yaml", [], "runs/tiramisu/fcdensenet56_shapes"),
    "U-Net": ("configs/unet/shapes.yaml", [], "runs/unet/shapes"),
}


def measure(config: str, overrides: list[str], run_dir: Path, images: int) -> dict[str, float]:
    import torch

    model, dataset, metrics, minutes = load_run(config, run_dir, overrides)
    samples = [dataset[i] for i in range(images)]
    with torch.no_grad():
        result = {"ms_per_image": median_ms(lambda s: model.predict([s]), samples)}
    result.update(mIoU=metrics["mIoU"], mDice=metrics["mDice"], pixel_acc=metrics["pixel_acc"], train_minutes=minutes)
    return result


def fcn_resnet50_vs_torchvision(images: int, size: int) -> dict[str, float]:
    import torch
    from torchvision.models.segmentation import fcn_resnet50

    from detseg.config import load_config, to_plain
    from detseg.models import build_model
    from detseg.structures import DetSample

    torch.manual_seed(0)
    ours = build_model(to_plain(load_config(ROOT / "configs/model/fcn_resnet50.yaml", []))).eval()
    fcn8s = build_model({"name": "fcn", "num_classes": 21, "backbone": {"name": "resnet50", "out_features": ["c3", "c4", "c5"]},
                         "decoder": {"name": "fcn", "in_features": ["c3", "c4", "c5"], "variant": "8s",
                                     "upsample": "bilinear", "fc_dim": 512, "fc_kernel": 3}}).eval()
    theirs = fcn_resnet50(weights=None, weights_backbone=None, num_classes=21).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    g = torch.Generator().manual_seed(0)
    pictures = [torch.randint(0, 255, (3, size, size), dtype=torch.uint8, generator=g) for _ in range(images)]
    runs = {
        "detseg": lambda im: ours.predict([DetSample(im, 0, (size, size))]),
        # torchvision's models take normalised tensors; the argmax is the same last step
        "torchvision": lambda im: theirs(((im.float() / 255 - mean) / std)[None])["out"].argmax(1),
        "detseg_fcn8s": lambda im: fcn8s.predict([DetSample(im, 0, (size, size))]),
    }
    timings = {name: [] for name in runs}
    with torch.no_grad():
        for fn in runs.values():
            fn(pictures[0])  # warm-up
        for i, picture in enumerate(pictures):  # in turns; who goes first rotates
            names = list(runs)[i % 3:] + list(runs)[:i % 3]
            for name in names:
                start = time.perf_counter()
                runs[name](picture)
                timings[name].append(time.perf_counter() - start)
    ms = {name: 1000 * sorted(t)[len(t) // 2] for name, t in timings.items()}
    return {**ms, "ratio": ms["detseg"] / ms["torchvision"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the runs that are missing")
    parser.add_argument("--images", type=int, default=50, help="shapes validation images timed")
    parser.add_argument("--fcn-images", type=int, default=10, help="images timed for FCN-ResNet-50 (0: skip)")
    parser.add_argument("--fcn-size", type=int, default=520, help="side of the FCN-ResNet-50 images")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1")
    rows = {}
    for name, (config, overrides, run_dir) in RUNS.items():
        run_dir = ROOT / run_dir
        if args.train and not (run_dir / "metrics.json").is_file():
            subprocess.run([sys.executable, "tools/train.py", config, *overrides, f"output_dir={run_dir}"],
                           check=True, cwd=ROOT)
        if not (run_dir / "best.pt").is_file():
            print(f"{name}: no run in {run_dir}; train it (python tools/train.py {config} {' '.join(overrides)} "
                  f"output_dir={run_dir}) or pass --train")
            continue
        rows[name] = measure(config, overrides, run_dir, args.images)
        print(name, json.dumps({k: round(v, 4) for k, v in rows[name].items()}), flush=True)

    print(f"\n| model | mIoU | mDice | pixel acc | train time (min) | ms/image ({args.images} images) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['mIoU']:.3f} | {r['mDice']:.3f} | {r['pixel_acc']:.3f} | {r['train_minutes']:.1f} | "
              f"{r['ms_per_image']:.1f} |")

    if args.fcn_images:
        r = fcn_resnet50_vs_torchvision(args.fcn_images, args.fcn_size)
        print(f"\nFCN-ResNet-50, {args.fcn_size} x {args.fcn_size}, {args.fcn_images} images, batch 1, random weights:")
        print(f"detseg {r['detseg']:.1f} ms/image, torchvision fcn_resnet50 {r['torchvision']:.1f} ms/image: "
              f"ratio {r['ratio']:.3f}; detseg FCN-8s on plain ResNet-50 {r['detseg_fcn8s']:.1f} ms/image")


if __name__ == "__main__":
    main()
