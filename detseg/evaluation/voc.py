"""Pascal VOC average precision at one IoU threshold, both of VOC's definitions.

- ``voc07``: 11-point interpolation, the mean of the best precision at recall >= 0, 0.1,
  ..., 1.0 (VOC2007 devkit).
- ``voc12``: area under the monotone precision envelope (VOC2010 and later).

Detections are ranked by score over the whole split. A detection is a true positive when
its best-overlapping ground truth of the same class has IoU >= ``iou_threshold`` and has
not been claimed by a higher-scoring detection; if that ground truth is ``difficult``
(``iscrowd`` in the COCO dict), the detection counts as neither true nor false positive.
Difficult objects are not counted in recall either.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from detseg.evaluation.base import gather
from detseg.evaluation.results import ResultsEvaluator
from detseg.ops import box_iou
from detseg.registry import EVALUATORS


def average_precision(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from a ranked list's cumulative ``recall`` and ``precision`` (same length)."""
    if use_07_metric:
        points = []
        for threshold in np.linspace(0, 1, 11):
            above = precision[recall >= threshold - 1e-12]
            points.append(above.max() if above.size else 0.0)
        return float(np.mean(points))
    r = np.concatenate(([0.0], recall, [1.0]))
    p = np.concatenate(([0.0], precision, [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]  # the monotone envelope
    changes = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[changes + 1] - r[changes]) * p[changes + 1]))


def _overlaps(
    detections: Sequence[tuple[Any, float, np.ndarray]], ground_truth: dict[Any, tuple[np.ndarray, np.ndarray]]
) -> dict[int, np.ndarray]:
    """``detection index -> IoU float[N]`` with the ground truth of its image, for the
    detections whose image has ground truth (one :func:`detseg.ops.box_iou` per image)."""
    by_image: dict[Any, list[int]] = defaultdict(list)
    for index, (image_id, _, _) in enumerate(detections):
        if image_id in ground_truth and len(ground_truth[image_id][0]):
            by_image[image_id].append(index)
    overlaps: dict[int, np.ndarray] = {}
    for image_id, indices in by_image.items():
        boxes = torch.as_tensor(np.array([detections[i][2] for i in indices], np.float64).reshape(-1, 4))
        iou = box_iou(boxes, torch.as_tensor(np.asarray(ground_truth[image_id][0], np.float64)))
        overlaps.update(zip(indices, iou.numpy()))
    return overlaps


def voc_class_ap(
    detections: Sequence[tuple[Any, float, np.ndarray]],
    ground_truth: dict[Any, tuple[np.ndarray, np.ndarray]],
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of one class.

    Args:
        detections: ``(image_id, score, box xyxy)`` triples.
        ground_truth: ``image_id -> (boxes float[N, 4] xyxy, difficult bool[N])``.

    Returns:
        ``(ap, recall, precision)``; ``ap`` is NaN when the class has no non-difficult
        ground truth.
    """
    num_positives = sum(int((~difficult).sum()) for _, difficult in ground_truth.values())
    if num_positives == 0:
        return math.nan, np.zeros(0), np.zeros(0)
    order = np.argsort([-d[1] for d in detections], kind="stable")
    claimed = {image_id: np.zeros(len(boxes), bool) for image_id, (boxes, _) in ground_truth.items()}
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    overlaps_of = _overlaps(detections, ground_truth)
    for rank, index in enumerate(order):
        if index not in overlaps_of:  # no ground truth of this class in its image
            fp[rank] = 1
            continue
        image_id = detections[index][0]
        difficult = ground_truth[image_id][1]
        overlaps = overlaps_of[index]
        best = int(overlaps.argmax())
        if overlaps[best] >= iou_threshold:
            if difficult[best]:
                continue
            if not claimed[image_id][best]:
                claimed[image_id][best] = True
                tp[rank] = 1
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    counted = (tp + fp) > 0
    tp, fp = np.cumsum(tp[counted]), np.cumsum(fp[counted])
    recall = tp / num_positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(recall, precision, use_07_metric), recall, precision


def voc_metrics(
    ground_truth: dict[str, Any],
    results: Sequence[dict[str, Any]],
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
) -> dict[str, float]:
    """``{"mAP": ..., "AP/<class>": ...}`` for COCO results against a COCO GT dict.

    ``mAP`` averages the classes that have ground truth; others are NaN.
    """
    per_class_gt: dict[int, dict[Any, list]] = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for ann in ground_truth["annotations"]:
        x, y, w, h = ann["bbox"]
        boxes, difficult = per_class_gt[ann["category_id"]][ann["image_id"]]
        boxes.append([x, y, x + w, y + h])
        difficult.append(bool(ann.get("iscrowd", 0)))
    per_class_dt: dict[int, list] = defaultdict(list)
    for r in results:
        x, y, w, h = r["bbox"]
        per_class_dt[r["category_id"]].append((r["image_id"], float(r["score"]),
                                               np.array([x, y, x + w, y + h])))
    metrics: dict[str, float] = {}
    aps = []
    for category in sorted(ground_truth["categories"], key=lambda c: c["id"]):
        gt = {
            image_id: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(d, bool))
            for image_id, (b, d) in per_class_gt[category["id"]].items()
        }
        ap, _, _ = voc_class_ap(per_class_dt[category["id"]], gt, iou_threshold, use_07_metric)
        metrics[f"AP/{category.get('name', category['id'])}"] = ap
        if not math.isnan(ap):
            aps.append(ap)
    metrics = {"mAP": float(np.mean(aps)) if aps else math.nan, **metrics}
    return metrics


class VocEvaluator(ResultsEvaluator):
    """Streaming Pascal VOC AP.

    Args:
        ground_truth: a COCO instances dict; ``iscrowd`` marks VOC ``difficult`` objects.
        iou_threshold: 0.5 in VOC.
        metric: ``voc07`` (11-point) or ``voc12`` (area under the envelope).
    """

    def __init__(
        self,
        ground_truth: dict[str, Any],
        iou_threshold: float = 0.5,
        metric: Literal["voc07", "voc12"] = "voc12",
    ) -> None:
        if metric not in ("voc07", "voc12"):
            raise ValueError(f"metric must be 'voc07' or 'voc12', got {metric!r}")
        self.iou_threshold = iou_threshold
        self.metric = metric
        super().__init__(ground_truth)

    def compute(self) -> dict[str, float]:
        return voc_metrics(self.ground_truth, gather(self._results), self.iou_threshold,
                           use_07_metric=self.metric == "voc07")


@EVALUATORS.register("voc")
def build_voc_evaluator(
    dataset: Any, iou_threshold: float = 0.5, metric: Literal["voc07", "voc12"] = "voc12"
) -> VocEvaluator:
    """A VOC evaluator whose ground truth is ``dataset.coco_ground_truth()``."""
    evaluator = VocEvaluator(dataset.coco_ground_truth(), iou_threshold=iou_threshold, metric=metric)
    evaluator.dataset = dataset
    return evaluator
