"""VOC AP on the hand-worked ranking example and on difficult objects."""

import math

import numpy as np
import pytest

from detseg.evaluation import VocEvaluator, average_precision, voc_class_ap

# Five ground-truth objects, ten detections ranked by score; TP pattern from the
# classic worked example. Precision after each: 1, 1, .67, .5, .4, .5, .57, .5, .44, .5
TP_PATTERN = [1, 1, 0, 0, 0, 1, 1, 0, 0, 1]
PRECISION = [1.0, 1.0, 0.67, 0.5, 0.4, 0.5, 0.57, 0.5, 0.44, 0.5]
RECALL = [0.2, 0.4, 0.4, 0.4, 0.4, 0.6, 0.8, 0.8, 0.8, 1.0]


def ranking_example():
    gt_boxes = np.array([[i * 20.0, 0, i * 20 + 10, 10] for i in range(5)])
    detections, next_gt = [], 0
    for rank, tp in enumerate(TP_PATTERN):
        score = 1.0 - rank * 0.05
        if tp:
            box = gt_boxes[next_gt]
            next_gt += 1
        else:
            box = np.array([200.0 + rank * 20, 200, 210 + rank * 20, 210])
        detections.append(("img", score, box))
    return detections, {"img": (gt_boxes, np.zeros(5, bool))}


def test_ranking_table_precision_recall():
    detections, gt = ranking_example()
    _, recall, precision = voc_class_ap(detections, gt)
    assert np.allclose(recall, RECALL)
    assert np.allclose(precision, PRECISION, atol=0.005)


def test_voc07_eleven_point_ap_by_hand():
    # recall >= 0 .. 0.4: 1.0 (5 points); 0.5 .. 0.8: 4/7 (4 points); 0.9, 1.0: 0.5 (2 points)
    detections, gt = ranking_example()
    ap, _, _ = voc_class_ap(detections, gt, use_07_metric=True)
    assert ap == pytest.approx((5 * 1.0 + 4 * (4 / 7) + 2 * 0.5) / 11)


def test_voc12_area_under_envelope_by_hand():
    # envelope: 1.0 up to recall 0.4, 4/7 up to 0.8, 0.5 up to 1.0
    detections, gt = ranking_example()
    ap, _, _ = voc_class_ap(detections, gt, use_07_metric=False)
    assert ap == pytest.approx(0.4 * 1.0 + 0.4 * (4 / 7) + 0.2 * 0.5)


def test_average_precision_of_perfect_ranking_is_one():
    recall, precision = np.array([0.5, 1.0]), np.array([1.0, 1.0])
    assert average_precision(recall, precision, True) == pytest.approx(1.0)
    assert average_precision(recall, precision, False) == pytest.approx(1.0)


def test_difficult_objects_neither_help_nor_hurt_and_duplicates_are_false_positives():
    gt = {"a": (np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]]), np.array([False, True]))}
    detections = [("a", 0.9, np.array([0.0, 0, 10, 10])),
                  ("a", 0.8, np.array([20.0, 20, 30, 30])),   # on the difficult object: ignored
                  ("a", 0.7, np.array([0.0, 0, 10, 10]))]     # duplicate: false positive
    ap, recall, precision = voc_class_ap(detections, gt)
    assert ap == pytest.approx(1.0)
    assert recall.tolist() == [1.0, 1.0] and precision.tolist() == [1.0, 0.5]
    assert math.isnan(voc_class_ap(detections, {"a": (gt["a"][0][1:], np.array([True]))})[0])


def test_voc_evaluator_on_coco_dict_with_class_without_ground_truth():
    gt = {
        "images": [{"id": 1, "height": 50, "width": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    evaluator = VocEvaluator(gt, metric="voc07")
    evaluator.update_results([
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [1, 1, 10, 10], "score": 0.9},
    ])
    metrics = evaluator.compute()
    assert metrics["AP/a"] == pytest.approx(1.0)
    assert math.isnan(metrics["AP/b"]) and metrics["mAP"] == pytest.approx(1.0)
