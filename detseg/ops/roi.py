"""RoI feature extraction on torchvision's kernels.

RoIs are given per image as a list of xyxy ``Tensor[K_i, 4]`` in input-image pixels;
``spatial_scale`` (1 / stride) maps them onto the feature map.
"""

from __future__ import annotations

import torch
import torchvision.ops as tv_ops
from torch import Tensor

from detseg.ops import roi_align_fast
from detseg.ops.roi_align_levels import RoIAlignLevelsFunction

FAST_CPU_MIN_CHANNELS = 32
"""CPU maps with at least this many channels pool through :mod:`detseg.ops.roi_align_fast`
(backward 10-30x faster than torchvision's); with fewer (mask targets: 1, image crops: 3)
torchvision's kernel is faster (``bench/roi_align_speed.py``)."""


def rois_with_batch_index(boxes: list[Tensor]) -> Tensor:
    """List of per-image ``Tensor[K_i, 4]`` -> ``Tensor[sum K_i, 5]`` (batch index, x1, y1, x2, y2)."""
    if not boxes:
        return torch.zeros(0, 5)
    index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
    return torch.cat([index, torch.cat(boxes)], dim=1)


def roi_pool(
    features: Tensor, boxes: list[Tensor], output_size: int | tuple[int, int], spatial_scale: float
) -> Tensor:
    """RoI max pooling (Fast R-CNN). ``features[B, C, H, W]`` -> ``Tensor[sum K_i, C, *output_size]``."""
    rois = rois_with_batch_index(boxes).to(features)
    return tv_ops.roi_pool(features, rois, _pair(output_size), spatial_scale)


def roi_align(
    features: Tensor,
    boxes: list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 0,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign (Mask R-CNN), with the half-pixel correction on by default.

    ``features[B, C, H, W]`` -> ``Tensor[sum K_i, C, *output_size]``.
    """
    rois = rois_with_batch_index(boxes).to(features)
    if features.device.type == "cpu" and features.shape[1] >= FAST_CPU_MIN_CHANNELS:
        return roi_align_fast.roi_align(features, rois, _pair(output_size), spatial_scale, sampling_ratio, aligned)
    return tv_ops.roi_align(features, rois, _pair(output_size), spatial_scale, sampling_ratio, aligned)


def pools_levels_at_once(maps: list[Tensor]) -> bool:
    """Whether :func:`roi_align_levels` takes these maps: float32/64 CPU maps of one dtype and
    at least :data:`FAST_CPU_MIN_CHANNELS` channels (where :func:`roi_align` would take the fast
    kernel for each of them), outside :func:`~detseg.ops.roi_align_fast.reference_kernels`."""
    return (all(roi_align_fast._use_fast(m) and m.shape[1] >= FAST_CPU_MIN_CHANNELS for m in maps)
            and len({m.dtype for m in maps}) == 1)


def roi_align_levels(maps: list[Tensor], boxes: list[Tensor], levels: Tensor, output_size: int | tuple[int, int],
                     scales: list[float], sampling_ratio: int = 0, aligned: bool = True) -> Tensor:
    """RoIAlign of each box from its own pyramid level, in one call (needs
    :func:`pools_levels_at_once`).

    Args:
        maps: per level ``[B, C, H_l, W_l]``.
        boxes: per image xyxy ``Tensor[K_i, 4]``, input-image pixels.
        levels: ``int64[sum K_i]``, the level (index into ``maps``) of each box.
        scales: per level, ``1 / stride``.

    Returns:
        ``Tensor[sum K_i, C, *output_size]`` in the boxes' order: the same numbers as
        :func:`roi_align` level by level (:mod:`detseg.ops.roi_align_levels`).
    """
    rois = rois_with_batch_index(boxes).to(maps[0])
    return RoIAlignLevelsFunction.apply(rois, levels.to("cpu", torch.int64), _pair(output_size),
                                        tuple(float(s) for s in scales), int(sampling_ratio), bool(aligned), *maps)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
