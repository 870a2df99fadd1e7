"""Detection confusion matrix with a background row and column."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from detseg.evaluation.base import gather
from detseg.ops import box_iou
from detseg.structures import Instances


class DetectionConfusionMatrix:
    """``int64[C+1, C+1]`` counts: rows are ground-truth classes, columns predicted
    classes; index ``C`` is background.

    Per image, predictions scoring at least ``score_threshold`` are taken by decreasing
    score; each matches the unclaimed ground truth (of any class) with the highest IoU if
    that IoU is >= ``iou_threshold``. Then:

    - matched:                    ``matrix[gt_class, pred_class] += 1``
    - unmatched prediction:       ``matrix[C, pred_class] += 1`` (a false positive)
    - unmatched ground truth:     ``matrix[gt_class, C] += 1`` (a miss)

    Predictions that overlap an ignore region (crowd / difficult) by the IoU threshold
    and match nothing else are not counted.
    """

    def __init__(self, num_classes: int, iou_threshold: float = 0.5, score_threshold: float = 0.5) -> None:
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.reset()

    def reset(self) -> None:
        self._matrix = np.zeros((self.num_classes + 1, self.num_classes + 1), np.int64)

    def update(
        self,
        predictions: Sequence[Instances],
        ground_truths: Sequence[Instances],
        ignore_regions: Sequence[Instances | None] | None = None,
    ) -> None:
        """Add images: predictions and ground truth in the same coordinates."""
        ignore_regions = ignore_regions or [None] * len(predictions)
        background = self.num_classes
        for pred, gt, ignore in zip(predictions, ground_truths, ignore_regions, strict=True):
            keep = pred.scores >= self.score_threshold
            pred = pred[keep]
            pred = pred[torch.argsort(pred.scores, descending=True, stable=True)]
            iou = box_iou(pred.boxes.tensor, gt.boxes.tensor)
            claimed = torch.zeros(len(gt), dtype=torch.bool)
            ignore_iou = (box_iou(pred.boxes.tensor, ignore.boxes.tensor) if ignore is not None
                          else torch.zeros(len(pred), 0))
            for i in range(len(pred)):
                candidates = iou[i].masked_fill(claimed, -1.0)
                best = int(candidates.argmax()) if len(gt) else -1
                if best >= 0 and candidates[best] >= self.iou_threshold:
                    claimed[best] = True
                    self._matrix[int(gt.labels[best]), int(pred.labels[i])] += 1
                elif ignore_iou.shape[1] and ignore_iou[i].max() >= self.iou_threshold:
                    continue
                else:
                    self._matrix[background, int(pred.labels[i])] += 1
            for label in gt.labels[~claimed].tolist():
                self._matrix[label, background] += 1

    def local_counts(self) -> np.ndarray:
        """This process's matrix (what :meth:`compute` sums over processes)."""
        return self._matrix.copy()

    def compute(self) -> np.ndarray:
        """The matrix summed over all processes."""
        return sum(gather([self._matrix]))
