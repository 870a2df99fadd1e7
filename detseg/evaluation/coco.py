"""COCO box and mask mAP, computed by pycocotools (or faster-coco-eval, its drop-in)."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from detseg.errors import ConfigError, DataError
from detseg.evaluation.base import gather
from detseg.evaluation.results import ResultsEvaluator
from detseg.registry import EVALUATORS

COCO_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
"""Names of ``COCOeval.stats[0..11]``, in that order."""

Backend = Literal["auto", "pycocotools", "faster_coco_eval"]


def available_backend(backend: Backend = "auto") -> str:
    """The backend to use: ``auto`` takes faster-coco-eval when it is installed.

    Raises:
        ConfigError: ``faster_coco_eval`` asked for but not installed.
    """
    if backend in ("auto", "faster_coco_eval"):
        try:
            import faster_coco_eval  # noqa: F401

            return "faster_coco_eval"
        except ImportError:
            if backend == "faster_coco_eval":
                raise ConfigError(
                    "backend 'faster_coco_eval' needs the package: pip install faster-coco-eval "
                    "(or use backend 'pycocotools')"
                ) from None
    return "pycocotools"


def coco_metrics(
    ground_truth: dict[str, Any],
    results: Sequence[dict[str, Any]],
    iou_type: Literal["bbox", "segm"] = "bbox",
    backend: Backend = "auto",
) -> dict[str, float]:
    """The 12 COCO numbers and per-class AP for COCO results against a COCO GT dict.

    Returns:
        ``{"AP": ..., ..., "ARl": ..., "AP/<class name>": ...}`` as fractions; NaN where
        COCO leaves a number undefined (pycocotools' -1: no ground truth in that area
        range or class). With no detections at all every defined number is 0.
    """
    backend = available_backend(backend)
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

    # COCOeval writes into annotation dicts (ignore flags, RLE); give it copies.
    gt = {
        "images": ground_truth["images"],
        "categories": ground_truth["categories"],
        "annotations": [dict(a) for a in ground_truth["annotations"]],
    }
    names = {c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]}
    if not results:
        return _no_detections(gt, names)
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO()
        gt_api.dataset = gt
        gt_api.createIndex()
        dt_api = gt_api.loadRes([dict(r) for r in results])
        evaluator = COCOeval(gt_api, dt_api, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = {name: _defined(v) for name, v in zip(COCO_METRICS, evaluator.stats)}
    precision = np.asarray(evaluator.eval["precision"])  # [IoU, recall, class, area, maxDets]
    for k, category_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        metrics[f"AP/{names[category_id]}"] = float(p[p > -1].mean()) if (p > -1).any() else math.nan
    return metrics


def _defined(value: float) -> float:
    return math.nan if value < 0 else float(value)


def _no_detections(gt: dict[str, Any], names: dict[int, str]) -> dict[str, float]:
    has_gt = any(not a.get("iscrowd", 0) for a in gt["annotations"])
    metrics = {name: 0.0 if has_gt else math.nan for name in COCO_METRICS}
    with_gt = {a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)}
    for category_id, name in names.items():
        metrics[f"AP/{name}"] = 0.0 if category_id in with_gt else math.nan
    return metrics


class CocoEvaluator(ResultsEvaluator):
    """Streaming COCO evaluation.

    Args:
        ground_truth: a COCO instances dict in original-image coordinates.
        iou_type: ``bbox``, ``segm`` (mask mAP; predictions need masks) or ``bbox+segm``.
        backend: ``pycocotools``, ``faster_coco_eval`` or ``auto`` (the faster one when
            installed; both give the same numbers).
    """

    def __init__(
        self,
        ground_truth: dict[str, Any],
        iou_type: Literal["bbox", "segm", "bbox+segm"] = "bbox",
        backend: Backend = "auto",
    ) -> None:
        if iou_type not in ("bbox", "segm", "bbox+segm"):
            raise ValueError(f"iou_type must be 'bbox', 'segm' or 'bbox+segm', got {iou_type!r}")
        if "segm" in iou_type:
            bare = next((a for a in ground_truth["annotations"] if not a.get("segmentation")), None)
            if bare is not None:
                raise DataError(f"ground-truth annotation {bare.get('id')!r} (image {bare.get('image_id')!r}) has no "
                                f"'segmentation': mask AP (iou_type {iou_type}) needs a mask on every object")
        self.iou_type = iou_type
        self.backend = backend
        super().__init__(ground_truth)

    def compute(self) -> dict[str, float]:
        """The 12 numbers (+ per class); with ``bbox+segm`` the box numbers keep their names
        and the mask numbers are prefixed ``mask_`` (``mask_AP``, ``mask_AP/<class>``)."""
        results = gather(self._results)
        if self.iou_type != "bbox+segm":
            return coco_metrics(self.ground_truth, results, self.iou_type, self.backend)
        boxes = coco_metrics(self.ground_truth, results, "bbox", self.backend)
        masks = coco_metrics(self.ground_truth, results, "segm", self.backend)
        return {**boxes, **{f"mask_{k}": v for k, v in masks.items()}}


@EVALUATORS.register("coco")
def build_coco_evaluator(
    dataset: Any, iou_type: Literal["bbox", "segm", "bbox+segm"] = "bbox", backend: Backend = "auto"
) -> CocoEvaluator:
    """A COCO evaluator whose ground truth is ``dataset.coco_ground_truth()``."""
    evaluator = CocoEvaluator(dataset.coco_ground_truth(), iou_type=iou_type, backend=backend)
    evaluator.dataset = dataset
    return evaluator
