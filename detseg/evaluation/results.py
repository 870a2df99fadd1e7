"""COCO-style result lists: conversion from predictions, reading, and checks against GT."""

from __future__ import annotations

import math
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
    check_masks: bool = True,
) -> None:
    """Every entry must name a known image and category and carry a finite score and a
    valid box (finite ``[x, y, w, h]``, ``w, h >= 0``) / mask (an RLE of its image's size,
    or polygons; ``check_masks=False`` skips decoding RLE, for masks detseg encoded itself).

    Raises:
        DataError: naming ``source``, the entry's position and its ``image_id``.
    """
    sizes = {im["id"]: (im.get("height"), im.get("width")) for im in ground_truth["images"]}
    category_ids = {c["id"] for c in ground_truth["categories"]}
    need = ("image_id", "category_id", "score", *(("bbox",) if "bbox" in iou_type else ()),
            *(("segmentation",) if "segm" in iou_type else ()))
    for i, entry in enumerate(results):
        if not isinstance(entry, dict) or any(k not in entry for k in need):
            raise DataError(f"{source}: entry {i} must have keys {', '.join(need)}; got {entry!r}")
        if not isinstance(entry["image_id"], (int, str)) or entry["image_id"] not in sizes:
            raise DataError(
                f"{source}: entry {i} has image_id {entry['image_id']!r}, which is not in the "
                f"ground truth"
            )
        if not isinstance(entry["category_id"], (int, str)) or entry["category_id"] not in category_ids:
            raise DataError(
                f"{source}: entry {i} has unknown category_id {entry['category_id']!r} "
                f"(ground truth categories: {sorted(category_ids)})"
            )
        where = f"{source}: entry {i} (image_id {entry['image_id']!r})"
        if not _is_number(entry["score"]) or not math.isfinite(entry["score"]):
            raise DataError(f"{where} has score {entry['score']!r}; a score must be a finite number")
        if "bbox" in iou_type:
            bbox = entry["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                raise DataError(f"{where} has invalid bbox {bbox!r} (need [x, y, w, h], four numbers)")
            if not all(math.isfinite(v) for v in bbox):
                raise DataError(f"{where} has a non-finite bbox {bbox!r} (NaN or infinite coordinates)")
            if bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{where} has invalid bbox {bbox!r} (need [x, y, w, h], w, h >= 0)")
        if "segm" in iou_type and check_masks:
            problem = _segmentation_problem(entry["segmentation"], sizes[entry["image_id"]])
            if problem:
                raise DataError(f"{where}: {problem}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _segmentation_problem(segmentation: Any, size: tuple[Any, Any]) -> str | None:
    """What is wrong with a result's mask, or None: an RLE must have the image's size and
    runs that cover it exactly; polygons must be lists of finite x, y pairs."""
    if isinstance(segmentation, list):
        if segmentation and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                and all(_is_number(v) and math.isfinite(v) for v in p) for p in segmentation):
            return None
        return f"invalid polygons {str(segmentation)[:80]} (need lists of finite x, y pairs, 3 points or more)"
    if not (isinstance(segmentation, dict) and "size" in segmentation and "counts" in segmentation):
        return f"invalid segmentation {str(segmentation)[:80]} (need an RLE {{size, counts}} or a list of polygons)"
    if list(segmentation["size"]) != list(size):
        return f"RLE size {segmentation['size']} (height, width) differs from its image's {list(size)}"
    counts = segmentation["counts"]
    try:
        runs = _rle_runs(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    except (TypeError, ValueError):
        runs = None
    if runs is None or any(r < 0 for r in runs) or sum(runs) != size[0] * size[1]:
        return (f"malformed RLE counts {str(counts)[:40]!r}: its runs must cover the {size[1]}x{size[0]} "
                f"image exactly")
    return None


def _rle_runs(counts: str | bytes) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), or
    None when the string ends inside a number."""
    data = counts.encode() if isinstance(counts, str) else counts
    runs: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                return None
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


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
                                 with_masks="segm" in self.iou_type),
            source="predictions", check_masks=False,  # RLEs encoded here are well formed
        )

    def update_results(self, results: Sequence[dict[str, Any]], source: str = "results",
                       check_masks: bool = True) -> None:
        """Add COCO-format results; unknown ids, non-finite numbers and malformed boxes or
        masks raise, naming ``source`` (see :func:`check_results`)."""
        check_results(results, self.ground_truth, self.iou_type, source, check_masks)
        self._results.extend(results)

    def gathered_results(self) -> list[dict[str, Any]]:
        """Every process's results (collective in a distributed run: call it on all)."""
        return gather(self._results)
