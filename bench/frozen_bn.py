"""Frozen BatchNorm: detseg's fused kernel vs torchvision's multiply-add, on ResNet-50's layers.

    python bench/frozen_bn.py [--size 800] [--runs 10] [--threads 2]

detseg's ``FrozenBatchNorm2d`` (``detseg/models/backbones/base.py``) calls ``F.batch_norm``
in inference mode (one fused kernel); ``torchvision.ops.misc.FrozenBatchNorm2d`` computes
``scale = weight * (running_var + eps).rsqrt()``, ``bias - running_mean * scale`` and then
``x * scale + bias`` (separate element-wise kernels). Both give the same numbers (checked).

The inputs are those of the 53 BatchNorm layers of torchvision's ResNet-50 on one
``size`` x ``4/3 size`` image (found with forward hooks; random statistics and affine
parameters). One round runs all 53 layers once with each kernel, in alternating order
(A B B A ...); ``--runs`` timed rounds after one warm-up round. Two modes:

- ``inference``: ``torch.no_grad`` forward;
- ``training``: forward and backward to the input (what a frozen BN inside a trainable
  layer costs during training; the BN itself has no trainable parameters).

Prints median and min-max ms per round for each and the ratio detseg / torchvision
(median of the per-round ratios, min-max).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

# bench/ modules: the script's own folder is on sys.path
from common import Series, finish, ratio, round_order, start


def bn_input_shapes(height: int, width: int) -> Counter:
    """``{(1, C, H, W): how many of ResNet-50's BatchNorm layers see that shape}``."""
    import torch
    import torchvision

    model = torchvision.models.resnet50(weights=None).eval()
    shapes: Counter = Counter()
    hooks = [m.register_forward_hook(lambda m, inputs, out: shapes.update([tuple(inputs[0].shape)]))
             for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    for hook in hooks:
        hook.remove()
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800, help="short side of the image (long side 4/3 of it)")
    parser.add_argument("--runs", type=int, default=10, help="timed rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both kernels)")
    args = parser.parse_args()
    start(f"bench/frozen_bn.py {' '.join(sys.argv[1:])}".strip(), args.threads)

    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d as TorchvisionFrozenBN

    from detseg.models.backbones.base import FrozenBatchNorm2d as DetsegFrozenBN

    height, width = args.size, args.size * 4 // 3
    shapes = bn_input_shapes(height, width)
    print(f"ResNet-50 BatchNorm inputs at {height}x{width}, batch 1: {sum(shapes.values())} layers, "
          f"{len(shapes)} shapes")
    g = torch.Generator().manual_seed(0)
    layers = []  # (input, count, detseg layer, torchvision layer)
    for shape, count in shapes.items():
        channels = shape[1]
        ours, theirs = DetsegFrozenBN(channels), TorchvisionFrozenBN(channels)
        stats = {"weight": 0.5 + torch.rand(channels, generator=g), "bias": torch.randn(channels, generator=g),
                 "running_mean": torch.randn(channels, generator=g),
                 "running_var": 0.5 + torch.rand(channels, generator=g)}
        for layer in (ours, theirs):
            for name, value in stats.items():
                getattr(layer, name).copy_(value)
        x = torch.randn(shape, generator=g)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
        layers.append((x, count, ours, theirs))
    print("outputs equal (rtol 1e-5, atol 1e-5) on every shape")

    def forward_all(which: int):
        with torch.no_grad():
            for x, count, *pair in layers:
                for _ in range(count):
                    pair[which](x)

    def forward_backward_all(which: int):
        for x, count, *pair in layers:
            x = x.detach().requires_grad_(True)
            for _ in range(count):
                pair[which](x).sum().backward()

    for mode, fn in (("inference (forward)", forward_all), ("training (forward + backward)", forward_backward_all)):
        fn(0), fn(1)  # warm-up round
        seconds: list[list[float]] = [[], []]
        for i in range(args.runs):
            for k in round_order(i, 2):
                begin = time.perf_counter()
                fn(k)
                seconds[k].append(time.perf_counter() - begin)
        ours, theirs = Series(seconds[0]), Series(seconds[1])
        print(f"\n{mode}, all {sum(shapes.values())} layers per round, {args.runs} rounds:")
        print(f"  detseg F.batch_norm (fused)         {ours.ms()}")
        print(f"  torchvision FrozenBatchNorm2d       {theirs.ms()}")
        r = ratio(ours, theirs)
        print(f"  ratio detseg / torchvision {r}  -> the fused kernel is {1 / r.median:.2f}x as fast")
    finish()


if __name__ == "__main__":
    main()
