"""RoI feature extraction on torchvision's kernels.

RoIs are given per image as a list of xyxy ``Tensor[K_i, 4]`` in input-image pixels;
``spatial_scale`` (1 / stride) maps them onto the feature map.
"""

from __future__ import annotations

import torch
import torchvision.ops as tv_ops
from torch import Tensor

from detseg.ops import roi_align_fast

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


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
