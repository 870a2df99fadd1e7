"""Assign each prediction (anchor, proposal, prior) to a ground-truth box by IoU."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from detseg.ops.boxes import box_iou

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


@dataclass
class MatchResult:
    """Per prediction: ``matched_gt`` (``int64[P]``, index of the best ground truth; 0 when
    there is none, read it only where positive) and ``labels`` (``int8[P]``: 1 positive,
    0 negative, -1 ignore)."""

    matched_gt: Tensor
    labels: Tensor


class Matcher:
    """IoU-threshold matching, as in the RPN and the Fast R-CNN RoI head.

    A prediction whose best IoU is ``>= high`` is positive, ``< low`` negative, and in
    between ignored. Faster R-CNN's RPN uses ``(0.3, 0.7)``; the RoI head ``(0.5, 0.5)``.

    Args:
        low: IoU below which a prediction is negative.
        high: IoU at or above which a prediction is positive.
        allow_low_quality_matches: also mark positive, for each ground truth, the
            predictions that have its highest IoU (ties included), so that every ground
            truth with any overlap gets at least one positive.
    """

    def __init__(self, low: float, high: float, allow_low_quality_matches: bool = False) -> None:
        if not 0 <= low <= high <= 1:
            raise ValueError(f"Matcher needs 0 <= low <= high <= 1, got low={low}, high={high}")
        self.low = low
        self.high = high
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> MatchResult:
        """Match from an IoU matrix ``Tensor[G, P]`` (ground truths x predictions)."""
        num_gt, num_pred = iou.shape
        device = iou.device
        if num_gt == 0:
            return MatchResult(
                matched_gt=torch.zeros(num_pred, dtype=torch.int64, device=device),
                labels=torch.full((num_pred,), NEGATIVE, dtype=torch.int8, device=device),
            )
        best_iou, matched_gt = iou.max(dim=0)
        labels = torch.full((num_pred,), IGNORE, dtype=torch.int8, device=device)
        labels[best_iou < self.low] = NEGATIVE
        labels[best_iou >= self.high] = POSITIVE
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1, keepdim=True).values
            gt_index, pred_index = torch.nonzero((iou == best_per_gt) & (best_per_gt > 0),
                                                 as_tuple=True)
            labels[pred_index] = POSITIVE
            matched_gt[pred_index] = gt_index
        return MatchResult(matched_gt=matched_gt, labels=labels)


IGNORE_REGION_IOU = 0.5
"""A prediction whose IoU with a crowd / difficult region reaches this is neither positive
nor negative (the RPN's rule, now every head's)."""


def near_ignore_regions(candidates: Tensor, regions: Tensor | None, threshold: float = IGNORE_REGION_IOU) -> Tensor:
    """``bool[P]``: the ``candidates`` (``[P, 4]`` xyxy) whose IoU with some ignore region
    (``[R, 4]`` xyxy, same coordinates; ``None`` or empty for none) is ``>= threshold``."""
    if regions is None or len(regions) == 0:
        return torch.zeros(len(candidates), dtype=torch.bool, device=candidates.device)
    return box_iou(regions.to(candidates), candidates).amax(0) >= threshold


def ignore_near_regions(labels: Tensor, candidates: Tensor, regions: Tensor | None) -> Tensor:
    """``labels`` (a :class:`MatchResult`'s) with the negatives near an ignore region (see
    :func:`near_ignore_regions`) turned into ``IGNORE``: crowd regions teach nothing."""
    near = near_ignore_regions(candidates, regions)
    if not bool(near.any()):
        return labels
    labels = labels.clone()
    labels[(labels == NEGATIVE) & near] = IGNORE
    return labels

