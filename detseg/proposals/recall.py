"""Recall of class-agnostic proposals: the share of ground-truth boxes that some proposal
among the first ``N`` overlaps with IoU >= a threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from detseg.ops import box_iou


def best_overlaps(gt_boxes: np.ndarray, proposals: np.ndarray, top_n: int) -> np.ndarray:
    """``float[G]``: each ground-truth box's best IoU with the first ``top_n`` proposals
    (both ``[*, 4]`` xyxy absolute pixels); 0 where there are no proposals."""
    if len(gt_boxes) == 0 or len(proposals) == 0:
        return np.zeros(len(gt_boxes))
    iou = box_iou(torch.as_tensor(gt_boxes, dtype=torch.float32),
                  torch.as_tensor(proposals[:top_n], dtype=torch.float32))
    return iou.amax(1).numpy()


def proposal_recall(
    gt_boxes: Sequence[np.ndarray],
    proposals: Sequence[np.ndarray],
    top_ns: Sequence[int] = (100, 500, 2000),
    iou_thresholds: Sequence[float] = (0.5, 0.7),
) -> dict[str, float]:
    """``{"recall@<N>/iou<t>": value}`` over all images (ground truth pooled), plus
    ``num_gt`` and the mean number of proposals per image ``mean_proposals``."""
    result: dict[str, float] = {}
    for n in top_ns:
        overlaps = np.concatenate([best_overlaps(g, p, n) for g, p in zip(gt_boxes, proposals)] or [np.zeros(0)])
        for t in iou_thresholds:
            result[f"recall@{n}/iou{t:g}"] = float((overlaps >= t).mean()) if len(overlaps) else float("nan")
    result["num_gt"] = float(sum(len(g) for g in gt_boxes))
    result["mean_proposals"] = float(np.mean([len(p) for p in proposals])) if len(proposals) else 0.0
    return result


__all__ = ["best_overlaps", "proposal_recall"]
