"""IoU and NMS over xyxy boxes, on torchvision's kernels."""

from __future__ import annotations

import torch
import torchvision.ops as tv_ops
from torch import Tensor


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU ``Tensor[N, M]`` of xyxy ``boxes1[N, 4]`` and ``boxes2[M, 4]``.

    Empty inputs give an empty ``[N, M]`` matrix; two degenerate boxes have IoU 0.
    """
    if boxes1.numel() == 0 or boxes2.numel() == 0:
        return boxes1.new_zeros((boxes1.shape[0], boxes2.shape[0]))
    iou = tv_ops.box_iou(boxes1.float(), boxes2.float())
    return torch.nan_to_num(iou, nan=0.0)


def aligned_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of each box with its counterpart: ``[..., 4]`` xyxy and ``[..., 4]`` -> ``[...]``
    (the diagonal of :func:`box_iou` without the ``N x M`` matrix); 0 where both are empty."""
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    union = area1 + area2 - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS: boxes suppress only boxes of the same label.

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
        scores: ``Tensor[N]``.
        labels: ``int64[N]``.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box of
            its class is strictly greater than this.

    Returns:
        ``int64[K]`` indices of the kept boxes, by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    return tv_ops.batched_nms(boxes.float(), scores.float(), labels, iou_threshold)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Class-agnostic NMS; see :func:`batched_nms`."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    return tv_ops.nms(boxes.float(), scores.float(), iou_threshold)
