"""COCO numbers must be pycocotools' own numbers on the same input."""

import contextlib
import copy
import io
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detseg.errors import DataError
from detseg.evaluation import COCO_METRICS, CocoEvaluator, coco_metrics
from detseg.evaluation.synthetic import (
    random_coco_ground_truth,
    random_detections,
    results_from_ground_truth,
)
from detseg.structures import Boxes, Instances
from detseg.structures.masks import mask_to_rle


def pycocotools_reference(gt, results, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO()
        gt_api.dataset = copy.deepcopy(gt)
        gt_api.createIndex()
        ev = COCOeval(gt_api, gt_api.loadRes(copy.deepcopy(results)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_same_as_reference(metrics, ev, gt):
    for name, value in zip(COCO_METRICS, ev.stats):
        if value < 0:
            assert math.isnan(metrics[name]), name
        else:
            assert abs(metrics[name] - value) < 1e-9, (name, metrics[name], value)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for k, cid in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        ref = p[p > -1].mean() if (p > -1).any() else math.nan
        got = metrics[f"AP/{names[cid]}"]
        assert got == pytest.approx(ref, rel=0, abs=1e-9, nan_ok=True), (names[cid], got, ref)


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
@pytest.mark.parametrize("seed", [0, 1])
def test_bbox_metrics_equal_pycocotools_with_crowd_and_empty_images(backend, seed):
    gt = random_coco_ground_truth(40, 5, crowd_fraction=0.15, empty_fraction=0.2, seed=seed)
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert len({a["image_id"] for a in gt["annotations"]}) < len(gt["images"])
    results = random_detections(gt, per_image=12, seed=seed)
    metrics = coco_metrics(gt, results, "bbox", backend=backend)
    assert_same_as_reference(metrics, pycocotools_reference(gt, results, "bbox"), gt)


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_segm_metrics_equal_pycocotools(backend):
    rng = np.random.default_rng(0)
    gt = random_coco_ground_truth(12, 3, image_size=(60, 80), crowd_fraction=0.1, seed=3)
    for ann in gt["annotations"]:
        x, y, w, h = (int(v) for v in ann["bbox"])
        mask = np.zeros((60, 80), bool)
        mask[y:y + max(h, 1), x:x + max(w, 1)] = rng.random((max(h, 1), max(w, 1))) > 0.3
        ann["segmentation"] = mask_to_rle(mask)
        ann["area"] = float(mask.sum())
    results = []
    for r in random_detections(gt, per_image=6, seed=4):
        x, y, w, h = (int(v) for v in r["bbox"])
        mask = np.zeros((60, 80), bool)
        mask[y:y + max(h, 1), x:x + max(w, 1)] = True
        results.append({**r, "segmentation": mask_to_rle(mask)})
    metrics = coco_metrics(gt, results, "segm", backend=backend)
    assert_same_as_reference(metrics, pycocotools_reference(gt, results, "segm"), gt)


def test_ground_truth_as_results_scores_one_and_noise_lowers_it():
    gt = random_coco_ground_truth(30, 4, crowd_fraction=0.0, seed=5)
    perfect = coco_metrics(gt, results_from_ground_truth(gt), "bbox")
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
    noisy = coco_metrics(gt, results_from_ground_truth(gt, jitter=0.1, drop=0.2), "bbox")
    assert noisy["AP"] < noisy["AP50"] < 1.0


def test_streaming_evaluator_converts_instances_and_matches_the_results_path():
    gt = random_coco_ground_truth(6, 3, seed=7)
    results = random_detections(gt, per_image=5, seed=8)
    evaluator = CocoEvaluator(gt)
    category_ids = evaluator.category_ids
    for im in gt["images"]:
        mine = [r for r in results if r["image_id"] == im["id"]]
        inst = Instances(
            Boxes.from_xywh([r["bbox"] for r in mine]),
            torch.tensor([category_ids.index(r["category_id"]) for r in mine]),
            (im["height"], im["width"]),
            scores=torch.tensor([r["score"] for r in mine]),
        )
        evaluator.update([inst], [im["id"]])
    streamed = evaluator.compute()
    direct = coco_metrics(gt, results, "bbox")
    for key in COCO_METRICS:
        assert streamed[key] == pytest.approx(direct[key], abs=1e-4, nan_ok=True)


def test_results_with_unknown_image_or_category_are_refused():
    gt = random_coco_ground_truth(3, 2, seed=0)
    evaluator = CocoEvaluator(gt)
    good = {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.5}
    with pytest.raises(DataError, match="image_id 99"):
        evaluator.update_results([good, {**good, "image_id": 99}], source="res.json")
    with pytest.raises(DataError, match="entry 0 has unknown category_id 3"):
        evaluator.update_results([{**good, "category_id": 3}], source="res.json")
    with pytest.raises(DataError, match="invalid bbox"):
        evaluator.update_results([{**good, "bbox": [0, 0, -1, 4]}])


def test_no_detections_gives_zero_not_a_crash():
    gt = random_coco_ground_truth(3, 2, crowd_fraction=0.0, empty_fraction=0.0, seed=0)
    metrics = CocoEvaluator(gt).compute()
    assert metrics["AP"] == 0.0 and metrics["AR100"] == 0.0
