"""Every segmenter on shapes, and FCN-ResNet-50 against torchvision's ``fcn_resnet50``,
in one run.

    python bench/segmentation.py [--train | --random-weights] [--images 50] [--fcn-images 10]
                                 [--fcn-size 520] [--threads 2]

1. For each row of ``RUNS`` (a config and overrides: FCN-32s/16s/8s, FCN-8s with every
   up-sampling kind, FC-DenseNet56, U-Net) it reads the run in its run directory
   (``--train`` trains the missing ones first with ``tools/train.py``): mIoU, mDice and
   pixel accuracy on the 200 validation images and the training time (the run's
   metrics files). A model without a run (or every one, with ``--random-weights``) is
   timed with its random initialisation and has no accuracy (a segmenter's work does not
   depend on its weights: one label per pixel). Inference ms/image on the first
   ``--images`` validation images (batch 1): all models timed in turns image by image
   (each image reverses the order of the one before; see bench/common.py) after one warm-up round; median and min-max.
2. ``configs/model/tv_fcn_resnet50.yaml`` (torchvision's ``fcn_resnet50`` layer for layer:
   dilated ResNet-50 at output stride 8, FCNHead, bilinear to the unpadded input; built
   without its ``init_from``) against ``fcn_resnet50(weights=None,
   weights_backbone=None)``, random weights, 21 classes, ``--fcn-size`` square images,
   timed in turns image by image (each image reverses the order of the one before, and the
   order rotates, so detseg and torchvision swap places every image) after one warm-up
   round: median and min-max ms/image and the ratio detseg / torchvision (median of the
   per-image ratios, min-max). Also detseg's FCN-8s on a plain ResNet-50 (the paper's
   skips, no dilation) at that size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import finish, interleaved, ratio, start
from rcnn_family import ensure_trained, prepare

ROOT = Path(__file__).resolve().parent.parent

RUNS = {  # name: (config, overrides, run directory)
    "FCN-32s (transposed)": ("configs/fcn/fcn32s_shapes.yaml", [], "runs/fcn/fcn32s_shapes"),
    "FCN-16s (transposed)": ("configs/fcn/fcn16s_shapes.yaml", [], "runs/fcn/fcn16s_shapes"),
    "FCN-8s (transposed)": ("configs/fcn/fcn8s_shapes.yaml", [], "runs/fcn/fcn8s_shapes"),
    **{f"FCN-8s ({kind})": ("configs/fcn/fcn8s_shapes.yaml", [f"model.decoder.upsample={kind}"],
                            f"runs/fcn/fcn8s_shapes_{kind}") for kind in ("bilinear", "nearest", "unpool")},
    "FC-DenseNet56": ("configs/tiramisu/fcdensenet56_shapes.yaml", [], "runs/tiramisu/fcdensenet56_shapes"),
    "U-Net": ("configs/unet/shapes.yaml", [], "runs/unet/shapes"),
}


def fcn_resnet50_vs_torchvision(images: int, size: int):
    import torch
    from torchvision.models.segmentation import fcn_resnet50

    from detseg.config import load_config, to_plain
    from detseg.models import build_model
    from detseg.structures import DetSample

    torch.manual_seed(0)
    # torchvision's fcn_resnet50 layer for layer (FCNHead, unpadded input); nothing fetched
    ours = build_model(to_plain(load_config(ROOT / "configs/model/tv_fcn_resnet50.yaml", [])), initialize=False).eval()
    fcn8s = build_model({"name": "fcn", "num_classes": 21,
                         "backbone": {"name": "resnet50", "out_features": ["c3", "c4", "c5"]},
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
    with torch.no_grad():
        times = interleaved(runs, pictures, warmup=1)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the runs that are missing")
    parser.add_argument("--random-weights", action="store_true", help="time every model with random weights")
    parser.add_argument("--images", type=int, default=50, help="shapes validation images timed")
    parser.add_argument("--fcn-images", type=int, default=10, help="images timed for FCN-ResNet-50 (0: skip)")
    parser.add_argument("--fcn-size", type=int, default=520, help="side of the FCN-ResNet-50 images")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (all models)")
    args = parser.parse_args()
    start(f"bench/segmentation.py {' '.join(sys.argv[1:])}".strip(), args.threads)
    print("batch 1")
    import torch

    entries = {}
    for name, (config, overrides, run_dir) in (RUNS.items() if args.images else ()):
        run_dir = ROOT / run_dir
        if args.train and not args.random_weights:
            ensure_trained(config, overrides, run_dir)
        entries[name] = prepare(config, overrides, run_dir, args.random_weights)
        source = "random weights (speed only)" if entries[name].metrics is None else f"run {run_dir}"
        print(f"{name}: {config} {' '.join(overrides)}, {source}", flush=True)

    if entries:
        samples = {name: [e.dataset[i] for i in range(args.images)] for name, e in entries.items()}
        sides = {name: (lambda i, m=e.model, items=samples[name]: m.predict([items[i]])) for name, e in entries.items()}
        with torch.no_grad():
            times = interleaved(sides, list(range(args.images)), warmup=1)
        print(f"\n| model | mIoU | mDice | pixel acc | train time (min) | ms/image ({args.images} images), median "
              f"(min-max) |")
        print("|---|---|---|---|---|---|")
        for name, e in entries.items():
            m = e.metrics
            accuracy = ("- | - | - | -" if m is None else
                        f"{m['mIoU']:.3f} | {m['mDice']:.3f} | {m['pixel_acc']:.3f} | {e.minutes:.1f}")
            print(f"| {name} | {accuracy} | {times[name].ms()} |")

    if args.fcn_images:
        t = fcn_resnet50_vs_torchvision(args.fcn_images, args.fcn_size)
        print(f"\nFCN-ResNet-50, {args.fcn_size} x {args.fcn_size}, {args.fcn_images} images in turns, batch 1, "
              f"random weights:")
        print(f"detseg {t['detseg'].ms()}/image, torchvision fcn_resnet50 {t['torchvision'].ms()}/image: ratio "
              f"detseg / torchvision {ratio(t['detseg'], t['torchvision'])}; detseg FCN-8s on plain ResNet-50 "
              f"{t['detseg_fcn8s'].ms()}/image")
    finish()


if __name__ == "__main__":
    main()
