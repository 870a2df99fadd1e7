"""RoIAlign on the CPU: torchvision's kernel against ``detseg.ops.roi_align_fast``.

    python bench/roi_align_speed.py [--rounds 12] [--warmup 2] [--threads 2] [--only single|fpn|pool]

512 RoIs x 256 channels, 7x7 output, aligned=True, on one 800x1088 image's feature maps:
100x136 (stride 8) and 25x34 (stride 32), sampling_ratio 2 and 0; then detseg's FPN
``RoIPooler`` (P2-P5 of the same image, each RoI on the level of the FPN rule): ``fast`` as
training runs it (every level in one call) against torchvision's op level by level; then
torchvision's RoIPool, for reference only.

Sides: ``torchvision`` (``torchvision.ops.roi_align``), ``fast`` (this project's forward and
backward) and ``tv-fwd+fast-bwd`` (torchvision's forward output, this project's backward).
Each round runs every side once on the same input, the order rotating between rounds
(ABC, BCA, CAB, ...), after untimed warm-up rounds. Per side: the median (min-max) of the
forward (input requiring grad, as in training), of the backward (``torch.autograd.grad``
with a fixed random upstream gradient) and of both; ratios are the median (min-max) of the
per-round ratios against torchvision. The largest differences of output and gradient to
torchvision's are printed too. Boxes: proposal-like, sides log-uniform in 16-640 px.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torchvision

# bench/ modules: the script's own folder is on sys.path
from common import cpu_description

from detseg.ops import roi_align_fast

IMAGE = (800, 1088)  # H, W of the input image


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} CPUs)"


def random_boxes(count: int, seed: int) -> torch.Tensor:
    """Proposal-like xyxy boxes in the image: sides log-uniform in [16, 640] px, clipped."""
    g = torch.Generator().manual_seed(seed)
    h, w = IMAGE
    side = torch.exp(torch.empty(count, 2).uniform_(math.log(16), math.log(640), generator=g))
    centre = torch.rand(count, 2, generator=g) * torch.tensor([w, h])
    xy1 = (centre - side / 2).clamp_min(0)
    xy2 = torch.minimum(centre + side / 2, torch.tensor([w, h], dtype=torch.float32))
    return torch.cat([xy1, xy2], dim=1)


def fpn_pooler_sides(strides: list[int], sampling_ratio: int) -> list[Side]:
    """detseg's RoIPooler. ``fast``: as training runs it (all levels in one call,
    ``detseg.ops.roi.roi_align_levels``); ``torchvision``: level by level, the pooler's
    ``roi_align`` (list-of-boxes API) swapped for torchvision's, under ``reference_kernels``
    (which turns the one-call path off, and with it the fast backward: no third side here)."""
    from detseg.models.heads import region_features
    from detseg.ops.roi import rois_with_batch_index

    def wrap(op):
        def roi_align(features, boxes, output_size, spatial_scale, sampling_ratio=0, aligned=True):
            rois = rois_with_batch_index(boxes).to(features)
            return op(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
        return roi_align

    pooler = region_features.RoIPooler(strides, 7, "roi_align", sampling_ratio, aligned=True)
    original = region_features.roi_align
    torchvision_op = wrap(torchvision.ops.roi_align)

    def level_by_level(maps, boxes):
        region_features.roi_align = torchvision_op  # the name RoIPooler._pool calls
        try:
            with roi_align_fast.reference_kernels():
                return pooler(maps, [boxes])
        finally:
            region_features.roi_align = original

    def one_call(maps, boxes):
        return pooler(maps, [boxes])

    sides = [side for side in align_sides() if side.name in ("torchvision", "fast")]
    for side in sides:
        side.pool = level_by_level if side.name == "torchvision" else one_call
    return sides


def fpn_levels(boxes: torch.Tensor, levels: list[int]) -> torch.Tensor:
    """FPN eq. 1 (k0 = 4, canonical 224), clamped to the available levels (as RoIPooler)."""
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6)
    level = torch.floor(4 + torch.log2(area.sqrt() / 224.0) + 1e-6)
    return level.clamp(levels[0], levels[-1]).long() - levels[0]


class Side:
    def __init__(self, name: str, forward):
        self.name, self.forward = name, forward
        self.fwd: list[float] = []
        self.bwd: list[float] = []

    @property
    def total(self) -> list[float]:
        return [a + b for a, b in zip(self.fwd, self.bwd)]


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):8.1f} ms ({1000 * min(values):.1f}-{1000 * max(values):.1f})"


def ratio(a: list[float], b: list[float]) -> str:
    per_round = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(per_round):6.3f} ({min(per_round):.3f}-{max(per_round):.3f})"


def run_case(title: str, sides: list[Side], inputs: list[torch.Tensor], call, rounds: int, warmup: int,
             backward: bool = True) -> None:
    """``call(side, inputs)`` -> output; the gradient is taken wrt every tensor in ``inputs``."""
    grads: dict[str, tuple] = {}
    outputs: dict[str, torch.Tensor] = {}
    upstream = None
    for r in range(warmup + rounds):
        shift = r % len(sides)
        for side in sides[shift:] + sides[:shift]:
            begin = time.perf_counter()
            out = call(side, inputs)
            middle = time.perf_counter()
            if backward:
                if upstream is None:
                    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
                grad = torch.autograd.grad(out, inputs, upstream)
            end = time.perf_counter()
            if r >= warmup:
                side.fwd.append(middle - begin)
                side.bwd.append(end - middle)
            if r == warmup:
                outputs[side.name] = out.detach()
                if backward:
                    grads[side.name] = grad
            del out
    print(f"\n-- {title}")
    ref = sides[0]
    for side in sides:
        line = f"  {side.name:16s} fwd {ms(side.fwd)}"
        if backward:
            line += f"   bwd {ms(side.bwd)}   fwd+bwd {ms(side.total)}"
        print(line)
    for side in sides[1:]:
        line = f"  {side.name:16s} / {ref.name}: fwd {ratio(side.fwd, ref.fwd)}"
        if backward:
            line += f"   bwd {ratio(side.bwd, ref.bwd)}   fwd+bwd {ratio(side.total, ref.total)}"
        print(line)
    for side in sides[1:]:
        diff = (outputs[side.name] - outputs[ref.name]).abs().max().item()
        line = f"  {side.name:16s} max |out - {ref.name}| {diff:.2e}"
        if backward:
            scale = max(g.abs().max().item() for g in grads[ref.name])
            gdiff = max((a - b).abs().max().item() for a, b in zip(grads[side.name], grads[ref.name]))
            line += f"   max |grad - {ref.name}| {gdiff:.2e} (max |grad| {scale:.2f})"
        print(line)
    sys.stdout.flush()


def align_sides() -> list[Side]:
    return [
        Side("torchvision", torchvision.ops.roi_align),
        Side("fast", roi_align_fast.roi_align),
        Side("tv-fwd+fast-bwd", lambda *a: roi_align_fast.roi_align(*a, torchvision_forward=True)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rois", type=int, default=512)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--only", choices=["single", "fpn", "pool"], default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print("== RoIAlign CPU speed: torchvision vs detseg.ops.roi_align_fast")
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"torch.set_num_threads({args.threads}) -> get_num_threads() = {torch.get_num_threads()}")
    print(f"{args.rois} RoIs x {args.channels} channels, 7x7, aligned=True, image {IMAGE[0]}x{IMAGE[1]}; "
          f"{args.rounds} timed rounds after {args.warmup} warm-up rounds, order rotating")
    print(f"load average at start: {load_average()}", flush=True)

    boxes = random_boxes(args.rois, seed=0)
    rois = torch.cat([torch.zeros(args.rois, 1), boxes], dim=1)
    gen = torch.Generator().manual_seed(1)

    if args.only in (None, "single"):
        for stride in (8, 32):
            h, w = IMAGE[0] // stride, IMAGE[1] // stride
            feature = torch.randn(1, args.channels, h, w, generator=gen).requires_grad_()
            for sampling_ratio in (2, 0):
                run_case(f"single map {h}x{w} (spatial_scale 1/{stride}), sampling_ratio {sampling_ratio}",
                         align_sides(), [feature],
                         lambda side, inp, s=stride, sr=sampling_ratio: side.forward(inp[0], rois, 7, 1.0 / s, sr, True),
                         args.rounds, args.warmup)

    if args.only in (None, "fpn"):
        strides = [4, 8, 16, 32]
        maps = [torch.randn(1, args.channels, IMAGE[0] // s, IMAGE[1] // s, generator=gen).requires_grad_()
                for s in strides]
        counts = torch.bincount(fpn_levels(boxes, [2, 3, 4, 5]), minlength=4).tolist()
        for sampling_ratio in (2, 0):
            run_case(f"FPN RoIPooler P2-P5 ({', '.join(f'{IMAGE[0] // s}x{IMAGE[1] // s}' for s in strides)}; "
                     f"RoIs per level {counts}), sampling_ratio {sampling_ratio}",
                     fpn_pooler_sides(strides, sampling_ratio), maps, lambda side, inp: side.pool(inp, boxes),
                     args.rounds, args.warmup)

    if args.only in (None, "pool"):
        feature = torch.randn(1, args.channels, IMAGE[0] // 8, IMAGE[1] // 8, generator=gen).requires_grad_()
        run_case(f"RoIPool (max), torchvision only, for reference: map {IMAGE[0] // 8}x{IMAGE[1] // 8} "
                 f"(spatial_scale 1/8)", [Side("torchvision", torchvision.ops.roi_pool)], [feature],
                 lambda side, inp: side.forward(inp[0], rois, 7, 1.0 / 8), args.rounds, args.warmup)

    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
