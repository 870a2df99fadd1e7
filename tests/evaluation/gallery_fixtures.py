"""Small, fast reports with known errors, for the gallery tests: hand-perturbed predictions
on ``datasets/shapes_coco_mini`` (8 images) and on a few generated shapes label maps, written
by the same hook ``tools/eval.py --report`` runs (``write_evaluation_report``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from detseg.data.coco import CocoDataset
from detseg.data.shapes import ShapesDataset
from detseg.evaluation.coco import build_coco_evaluator
from detseg.evaluation.errors import FALSE_POSITIVE, MISSED, POOR_LOCALISATION, WRONG_CLASS
from detseg.evaluation.plots import write_evaluation_report
from detseg.evaluation.segmentation import build_segmentation_evaluator
from detseg.structures import SemanticMap

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "datasets" / "shapes_coco_mini"
MINI_OVERRIDES = ["data=coco", f"data.val.dataset.ann_file={MINI / 'annotations' / 'instances_val.json'}",
                  f"data.val.dataset.image_dir={MINI / 'val'}"]
DETECTION_MODES = (None, MISSED, WRONG_CLASS, POOR_LOCALISATION, FALSE_POSITIVE)
"""Image ``k`` of the mini set gets the error ``DETECTION_MODES[k % 5]`` (None: perfect)."""


def perturbed_results(ground_truth: dict) -> list[dict]:
    """The ground truth as results (score 0.9), with one error in image ``k``'s first object
    (or one extra box) by :data:`DETECTION_MODES`."""
    category_ids = sorted(c["id"] for c in ground_truth["categories"])
    results = []
    for k, image in enumerate(sorted(ground_truth["images"], key=lambda im: im["id"])):
        mode = DETECTION_MODES[k % len(DETECTION_MODES)]
        anns = [a for a in ground_truth["annotations"] if a["image_id"] == image["id"]]
        for j, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            category, box = ann["category_id"], [x, y, w, h]
            if j == 0 and mode == MISSED:
                continue
            if j == 0 and mode == WRONG_CLASS:
                category = category_ids[(category_ids.index(category) + 1) % len(category_ids)]
            if j == 0 and mode == POOR_LOCALISATION:
                box = [x + 0.6 * w, y, w, h]  # IoU 0.4 / 1.6 = 0.25
            results.append({"image_id": image["id"], "category_id": category, "bbox": box, "score": 0.9})
        if mode == FALSE_POSITIVE:
            results.append({"image_id": image["id"], "category_id": category_ids[0], "bbox": [0, 0, 2, 2],
                            "score": 0.8})
    return results


def detection_report(out: Path) -> Path:
    """report.html and gallery.html of the perturbed results on the mini set."""
    dataset = CocoDataset(str(MINI / "annotations" / "instances_val.json"), str(MINI / "val"), with_masks=False)
    evaluator = build_coco_evaluator(dataset)
    evaluator.update_results(perturbed_results(evaluator.ground_truth))
    return write_evaluation_report(evaluator, evaluator.compute(), out, "perturbed results on shapes_coco_mini")


def perturbed_label_map(target: np.ndarray, k: int) -> np.ndarray:
    """Image ``k``'s map with one error: its first object class erased (missed), turned into
    the next class (wrong class), or a background block labelled 1 (false positive)."""
    pred = target.copy()
    classes = [c for c in np.unique(target) if 0 < c < 255]
    if k % 3 == 0 and classes:
        pred[target == classes[0]] = 0
    elif k % 3 == 1 and classes:
        pred[target == classes[0]] = classes[0] % 3 + 1
    else:
        block = np.zeros_like(target, dtype=bool)
        block[: target.shape[0] // 4, : target.shape[1] // 4] = True
        pred[block & (target == 0)] = 1
    return pred


def segmentation_report(out: Path, num_images: int = 6) -> Path:
    """report.html and gallery.html of perturbed label maps of generated shapes."""
    dataset = ShapesDataset(split="val", num_images=num_images, image_size=64, seed=0)
    evaluator = build_segmentation_evaluator(dataset)
    targets = [dataset[i].gt_sem_seg.numpy() for i in range(len(dataset))]
    evaluator.update([SemanticMap(torch.from_numpy(perturbed_label_map(t, k))) for k, t in enumerate(targets)],
                     [torch.from_numpy(t) for t in targets])
    return write_evaluation_report(evaluator, evaluator.compute(), out, "perturbed label maps of shapes")


def browse_gallery(out: Path) -> subprocess.CompletedProcess:
    """``tools/browse.py`` on the mini set."""
    return subprocess.run([sys.executable, "tools/browse.py", "configs/faster_rcnn/shapes.yaml", *MINI_OVERRIDES,
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, check=False)
