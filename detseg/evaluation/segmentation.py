"""Semantic segmentation metrics from a confusion matrix.

Per class c, with TP/FP/FN counted over all evaluated pixels::

    IoU_c  = TP / (TP + FP + FN)        Dice_c = 2 TP / (2 TP + FP + FN)

Pixel accuracy is the trace over the total. Pixels whose ground truth is
``ignore_index`` are not counted. A class absent from both the ground truth and the
predictions has no IoU or Dice (NaN) and is left out of ``mIoU`` and ``mDice``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detseg.constants import IGNORE_INDEX
from detseg.evaluation.base import Evaluator, gather
from detseg.evaluation.worst import WorstImages
from detseg.registry import EVALUATORS
from detseg.structures import SemanticMap


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``int64[C, C]``: rows ground truth, columns prediction.

    Raises:
        ValueError: a label outside ``0..C-1`` (other than ``ignore_index`` in target).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    valid = target != ignore_index
    pred = pred[valid].long()
    target = target[valid].long()
    for name, t in (("prediction", pred), ("ground truth", target)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(
                f"{name} has labels outside 0..{num_classes - 1}: "
                f"{sorted(set(t.unique().tolist()) - set(range(num_classes)))}"
            )
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def segmentation_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """``pixel_acc, mIoU, mDice, IoU/<class>, Dice/<class>`` from a confusion matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    present = (tp + fp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / (tp + fp + fn), np.nan)
        dice = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = matrix.sum()
    metrics = {
        "pixel_acc": float(tp.sum() / total) if total else math.nan,
        "mIoU": float(np.nanmean(iou)) if present.any() else math.nan,
        "mDice": float(np.nanmean(dice)) if present.any() else math.nan,
    }
    for name, class_iou, class_dice in zip(class_names, iou, dice):
        metrics[f"IoU/{name}"] = float(class_iou)
        metrics[f"Dice/{name}"] = float(class_dice)
    return metrics


class SegmentationEvaluator(Evaluator):
    """Streaming pixel accuracy, per-class and mean IoU and Dice.

    Args:
        num_classes: labels are ``0..num_classes-1``.
        class_names: one per class; defaults to ``"0", "1", ...``.
        ignore_index: ground-truth value of pixels left out.

    It also keeps the :attr:`gallery_size` images of lowest per-image mIoU with their label
    maps (``worst``), for the report's gallery.
    """

    gallery_size = 24

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self.worst = WorstImages(self.gallery_size)

    def update(self, predictions: Sequence[SemanticMap], targets: Sequence[Tensor]) -> None:
        """Add pairs of a prediction and its ground-truth ``int[H, W]`` label map, of equal size."""
        for prediction, target in zip(predictions, targets, strict=True):
            pred, target = prediction.labels.cpu(), torch.as_tensor(target).cpu()
            matrix = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
            self.matrix += matrix
            self.worst.offer(segmentation_metrics(matrix.numpy(), self.class_names)["mIoU"],
                             lambda p=pred, t=target: (p.to(torch.int16).numpy(), t.to(torch.int16).numpy()))

    def compute(self) -> dict[str, float]:
        matrix = sum(gather([self.matrix.numpy()]))
        return segmentation_metrics(matrix, self.class_names)


@EVALUATORS.register("segmentation")
def build_segmentation_evaluator(dataset: Any, ignore_index: int = IGNORE_INDEX) -> SegmentationEvaluator:
    """Classes are the data set's ``semantic_class_names``."""
    names = dataset.semantic_class_names
    evaluator = SegmentationEvaluator(len(names), names, ignore_index)
    evaluator.dataset = dataset
    return evaluator
