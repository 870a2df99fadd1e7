"""IoU and NMS over xyxy boxes, on torchvision's kernels."""

from __future__ import annotations

import torch
import torchvision
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


def batched_nms_top(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, top_k: int) -> Tensor:
    """The first ``top_k`` of :func:`batched_nms`, without running NMS over boxes that score too
    low to reach them.

    Greedy NMS decides a box by the kept boxes that score higher, so NMS over the ``m`` best
    boxes keeps exactly the full result's boxes among them; once it keeps ``top_k``, those are
    the full result's first ``top_k``. ``m`` starts at ``2 * top_k`` and doubles until it does
    (or takes every box). The per-class rule is torchvision's ``batched_nms`` as it would run on
    all ``N`` boxes (one NMS per class above 4000 coordinates on the CPU, else the class
    offsets computed from all boxes), so the boxes kept are the same; equal scores are
    ordered by index here (torchvision's per-class path orders them by an unstable sort, which
    decides which of them make the top ``top_k``). The RPN keeps 300 of ~1100 boxes per image
    in training: while its proposals are spread out (early training) this halves the NMS time.

    Args: as :func:`batched_nms`; ``top_k`` the most indices wanted.

    Returns:
        ``int64[min(K, top_k)]`` indices of the kept boxes, by decreasing score, then index.
    """
    n = boxes.shape[0]
    if n == 0 or torchvision._is_tracing():
        return batched_nms(boxes, scores, labels, iou_threshold)[:top_k]
    boxes, scores = boxes.float(), scores.float()
    per_class = boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000)
    if not per_class:  # torchvision's offsets: classes apart by the largest coordinate of all N boxes
        boxes = boxes + (labels.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes)))[:, None]
    order = scores.sort(descending=True, stable=True).indices
    take = min(n, 2 * top_k)
    while True:
        best = order[:take]
        if per_class:
            keep = _nms_per_class(boxes[best], scores[best], labels[best], iou_threshold)
        else:
            keep = tv_ops.nms(boxes[best], scores[best], iou_threshold)
        if len(keep) >= top_k or take == n:
            return best[keep[:top_k]]
        take = min(n, 2 * take)


def _nms_per_class(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """One NMS per class (torchvision's ``_batched_nms_vanilla``); the kept indices by
    decreasing score, equal scores by index."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for label in torch.unique(labels):
        members = torch.where(labels == label)[0]
        keep[members[tv_ops.nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep)[0]
    return kept[scores[kept].sort(descending=True, stable=True)[1]]
