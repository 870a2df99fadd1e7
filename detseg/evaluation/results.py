"""COCO-style result lists: conversion from predictions, reading, and checks against GT."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detseg.data.io import read_json
from detseg.errors import DataError
from detseg.evaluation.base import Evaluator, gather
from detseg.structures import Instances
from detseg.structures.masks import mask_to_rle


def instances_to_results(
    predictions: Sequence[Instances],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    with_masks: bool = False,
) -> list[dict[str, Any]]:
    """Predictions in original-image coordinates -> COCO results
    (``image_id, category_id, bbox [x, y, w, h], score`` and ``segmentation`` as RLE)."""
    results = []
    for inst, image_id in zip(predictions, image_ids, strict=True):
        if inst.scores is None:
            raise ValueError(f"image {image_id}: predictions need scores")
        if with_masks and inst.masks is None:
            raise ValueError(f"image {image_id}: segm evaluation needs predicted masks")
        xywh = inst.boxes.xywh().tolist()
        labels = inst.labels.tolist()
        scores = inst.scores.tolist()
        for i in range(len(inst)):
            result = {
                "image_id": int(image_id),
                "category_id": int(category_ids[labels[i]]),
                "bbox": [round(v, 3) for v in xywh[i]],
                "score": float(scores[i]),
            }
            if with_masks:
                result["segmentation"] = mask_to_rle(inst.masks[i])
            results.append(result)
    return results


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a COCO results JSON (a list of detections)."""
    results = read_json(path, "results file")
    if not isinstance(results, list):
        raise DataError(f"{path}: expected a list of detections, got {type(results).__name__}")
    return results


def check_results(
    results: Sequence[dict[str, Any]],
    ground_truth: dict[str, Any],
    iou_type: str,
    source: str = "results",
) -> None:
    """Every entry must name a known image and category and carry a valid box / mask.

    Raises:
        DataError: naming ``source`` and the entry's position.
    """
    image_ids = {im["id"] for im in ground_truth["images"]}
    category_ids = {c["id"] for c in ground_truth["categories"]}
    need = ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
    for i, entry in enumerate(results):
        if not isinstance(entry, dict) or any(k not in entry for k in need):
            raise DataError(f"{source}: entry {i} must have keys {', '.join(need)}; got {entry!r}")
        if entry["image_id"] not in image_ids:
            raise DataError(
                f"{source}: entry {i} has image_id {entry['image_id']!r}, which is not in the "
                f"ground truth"
            )
        if entry["category_id"] not in category_ids:
            raise DataError(
                f"{source}: entry {i} has unknown category_id {entry['category_id']!r} "
                f"(ground truth categories: {sorted(category_ids)})"
            )
        if iou_type == "bbox":
            bbox = entry["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4) or bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{source}: entry {i} has invalid bbox {bbox!r} (need [x, y, w, h], w, h >= 0)")


class ResultsEvaluator(Evaluator):
    """An evaluator that collects COCO-format results against a COCO ground-truth dict.

    Subclasses set ``iou_type`` and implement ``compute`` over ``gather(self._results)``.
    """

    iou_type = "bbox"

    def __init__(self, ground_truth: dict[str, Any]) -> None:
        self.ground_truth = ground_truth
        self.category_ids = sorted(c["id"] for c in ground_truth["categories"])
        self.reset()

    def reset(self) -> None:
        self._results: list[dict[str, Any]] = []

    def update(self, predictions: Sequence[Instances], image_ids: Sequence[int]) -> None:
        """Add predictions (original-image coordinates, labels ``0..C-1``) per image id."""
        self.update_results(
            instances_to_results(predictions, image_ids, self.category_ids,
                                 with_masks="segm" in self.iou_type)
        )

    def update_results(self, results: Sequence[dict[str, Any]], source: str = "results") -> None:
        """Add COCO-format results; unknown image or category ids raise, naming ``source``."""
        check_results(results, self.ground_truth, self.iou_type, source)
        self._results.extend(results)

    def gathered_results(self) -> list[dict[str, Any]]:
        """Every process's results (collective in a distributed run: call it on all)."""
        return gather(self._results)
