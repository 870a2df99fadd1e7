"""Evaluate result files users already have (the library side of ``tools/eval.py``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from detseg.constants import IGNORE_INDEX
from detseg.data.coco import load_coco_json
from detseg.data.formats import read_coco, read_voc
from detseg.data.io import read_label_map
from detseg.data.voc import VocDataset, read_class_names
from detseg.errors import ConfigError, DataError
from detseg.evaluation.coco import CocoEvaluator
from detseg.evaluation.results import load_results
from detseg.evaluation.segmentation import SegmentationEvaluator
from detseg.evaluation.voc import VocEvaluator
from detseg.progress import progress
from detseg.structures import SemanticMap


def load_ground_truth(gt: str | Path, split: str = "val", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Ground truth as a COCO dict from a COCO instances JSON, a VOC root folder (its
    ``split``), or an experiment YAML (its ``data.<split>`` data set, with ``overrides``)."""
    gt = Path(gt)
    if gt.is_dir():
        # The data doctor's reader finds every problem at once (duplicate ids, bad boxes).
        read_voc(gt, split, read_class_names(gt, None)).refuse_errors(f"{gt} (ground truth, split '{split}')")
        ground_truth = VocDataset(str(gt), split=split).coco_ground_truth()
        source = f"{gt} (split '{split}')"
    elif gt.suffix in (".yaml", ".yml"):
        from detseg.experiment import ground_truth_from_config

        return ground_truth_from_config(gt, overrides, split)  # checked by the data doctor, as for training
    else:
        ground_truth = load_coco_json(gt)
        labeled = read_coco(gt, gt.parent, ground_truth)  # the checks training data gets
        labeled.refuse_errors(f"{gt} (ground truth)")
        outside = [f for f in labeled.problems if f.kind == "box outside image"]
        if outside:
            warnings.warn(f"{gt}: {len(outside)} ground-truth box(es) reach outside their image (evaluated as "
                          f"given): " + "; ".join(f"{f.file}: {f.detail}" for f in outside[:3]), stacklevel=2)
        source = str(gt)
    if not ground_truth["images"]:
        raise DataError(f"{source}: the ground truth has no images; nothing to evaluate")
    return ground_truth


def load_detection_results(path: str | Path, ground_truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Read detections as COCO results.

    Accepts a COCO results JSON, or a folder of VOC devkit files ``*_<class>.txt`` with
    lines ``<image stem> <score> <xmin> <ymin> <xmax> <ymax>`` (1-based VOC pixels).
    In a JSON, ``image_id`` may also be an image's file stem and ``category_id`` a class
    name; both are mapped to the ground truth's ids.
    """
    path = Path(path)
    by_stem = {Path(im["file_name"]).stem: im["id"] for im in ground_truth["images"]}
    by_name = {str(c.get("name")): c["id"] for c in ground_truth["categories"]}
    if path.is_dir():
        return _read_voc_devkit_results(path, by_stem, by_name)
    results = load_results(path)
    for entry in results:
        if isinstance(entry, dict):
            if isinstance(entry.get("image_id"), str) and entry["image_id"] in by_stem:
                entry["image_id"] = by_stem[entry["image_id"]]
            if isinstance(entry.get("category_id"), str) and entry["category_id"] in by_name:
                entry["category_id"] = by_name[entry["category_id"]]
    return results


def _read_voc_devkit_results(folder: Path, by_stem: dict, by_name: dict) -> list[dict[str, Any]]:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DataError(f"{folder}: no VOC result files (*_<class>.txt)")
    results = []
    for file in files:
        name = next((n for n in sorted(by_name, key=len, reverse=True) if file.stem.endswith(f"_{n}")), None)
        if name is None:
            raise DataError(f"{file}: the file name ends in no known class ({sorted(by_name)})")
        for line_no, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise DataError(f"{file}:{line_no}: expected 'image score xmin ymin xmax ymax'")
            stem, score, *coords = parts
            if stem not in by_stem:
                raise DataError(f"{file}:{line_no}: image '{stem}' is not in the ground truth")
            try:
                score, xmin, ymin, xmax, ymax = (float(v) for v in (score, *coords))
            except ValueError:
                raise DataError(f"{file}:{line_no}: image '{stem}': score and coordinates must be numbers, "
                                f"got {line.strip()!r}") from None
            if not all(math.isfinite(v) for v in (score, xmin, ymin, xmax, ymax)):
                raise DataError(f"{file}:{line_no}: image '{stem}': score or coordinates are not finite "
                                f"(NaN or infinite): {line.strip()!r}")
            results.append({"image_id": by_stem[stem], "category_id": by_name[name],
                            "bbox": [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1],
                            "score": float(score)})
    return results


def evaluate_detection_files(
    gt: str | Path,
    results: str | Path,
    iou_type: Literal["bbox", "segm"] = "bbox",
    metric: Literal["coco", "voc07", "voc12"] = "coco",
    split: str = "val",
    backend: str = "auto",
    overrides: Sequence[str] = (),
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of a results file against ground truth (see :func:`load_ground_truth`);
    also returns the ground-truth dict."""
    ground_truth = load_ground_truth(gt, split, overrides)
    detections = load_detection_results(results, ground_truth)
    if metric == "coco":
        try:
            evaluator = CocoEvaluator(ground_truth, iou_type=iou_type, backend=backend)
        except DataError as exc:
            raise DataError(f"{gt}: {exc}") from None
    elif metric in ("voc07", "voc12"):
        if iou_type != "bbox":
            raise DataError("VOC metrics are defined for boxes only; use --iou-type bbox")
        evaluator = VocEvaluator(ground_truth, metric=metric)
    else:
        raise ValueError(f"unknown metric {metric!r}; choose coco, voc07 or voc12")
    evaluator.update_results(detections, source=str(results))
    return evaluator.compute(), ground_truth


def evaluate_mask_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    class_names: list[str] | None = None,
) -> dict[str, float]:
    """Segmentation metrics of label-map PNGs in ``pred_dir`` against ``gt_dir``, by file name.

    Every ground-truth file needs a prediction and every prediction a ground truth.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder in (gt_dir, pred_dir):
        if not folder.is_dir():
            raise DataError(f"folder not found: {folder}")
    gt_files = {p.name: p for p in sorted(gt_dir.glob("*.png"))}
    pred_files = {p.name: p for p in sorted(pred_dir.glob("*.png"))}
    if not gt_files:
        raise DataError(f"{gt_dir}: no .png label maps")
    missing = sorted(set(gt_files) - set(pred_files))
    if missing:
        raise DataError(f"{pred_dir}: no prediction for {len(missing)} ground-truth map(s): {missing[:5]}")
    extra = sorted(set(pred_files) - set(gt_files))
    if extra:
        raise DataError(f"{pred_dir}: {len(extra)} prediction(s) have no ground truth in {gt_dir}: {extra[:5]}")
    try:
        evaluator = SegmentationEvaluator(num_classes, class_names, ignore_index)
    except ValueError as exc:  # num_classes < 1, or class names that do not match it
        raise ConfigError(f"--num-classes {num_classes} / --class-names: {exc}") from None
    for name in progress(gt_files, desc="masks", unit="img", leave=False):
        target = read_label_map(gt_files[name])
        pred = read_label_map(pred_files[name])
        if pred.shape != target.shape:
            raise DataError(
                f"{pred_files[name]} is {pred.shape[1]}x{pred.shape[0]} but its ground truth "
                f"{gt_files[name]} is {target.shape[1]}x{target.shape[0]}"
            )
        try:
            evaluator.update([SemanticMap(torch.from_numpy(pred.astype(np.int64)))],
                             [torch.from_numpy(target.astype(np.int64))])
        except ValueError as exc:
            raise DataError(f"{pred_files[name]} vs {gt_files[name]}: {exc}") from exc
    return evaluator.compute()
