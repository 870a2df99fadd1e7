"""Per-image error classification (detseg.evaluation.errors) against hand-worked images."""

import numpy as np
import pytest
import torch

from detseg.evaluation.errors import (
    FALSE_POSITIVE,
    IGNORED,
    MATCHED,
    MISSED,
    POOR_LOCALISATION,
    TP,
    WRONG_CLASS,
    classify_detections,
    coco_image_errors,
    error_tags,
    segmentation_image_errors,
)
from detseg.structures import Boxes, Instances


def instances(boxes, labels, scores=None):
    return Instances(Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)), labels, (100, 200),
                     scores=scores)


# Four 10x10 objects in a row: A and C are class 0, B and D class 1.
GT = instances([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], [0, 1, 0, 1])
# Worked by hand (IoU of two 10-high boxes side by side = overlap width / union width):
#   p0 class 0 on A, IoU 1                       -> tp (A matched)
#   p1 class 0 on B (class 1), IoU 1             -> wrong_class, points at B
#   p2 class 0 [40, 44] on C: 40 / 100 = 0.4     -> poor_localisation, points at C
#   p3 class 1 far from everything               -> false_positive (background)
#   p4 class 0 [0, 9] on A, already matched: 0.9 -> false_positive (duplicate), points at A
#   p5 class 0 on A but score 0.3                -> below the 0.5 threshold: not analysed
#   D: nothing near it                           -> missed
PRED = instances([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 44, 10], [150, 50, 160, 60], [0, 0, 10, 9],
                  [0, 0, 10, 10]], [0, 0, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.55, 0.3])


def test_hand_worked_image_has_one_error_of_each_kind_and_a_duplicate():
    errors = classify_detections(PRED, GT)
    assert errors.pred_kinds == [TP, WRONG_CLASS, POOR_LOCALISATION, FALSE_POSITIVE, FALSE_POSITIVE, None]
    assert errors.pred_target == [0, 1, 2, -1, 0, -1]
    assert errors.pred_iou[:3] == pytest.approx([1.0, 1.0, 0.4])
    assert errors.pred_iou[4] == pytest.approx(0.9)
    assert errors.gt_kinds == [MATCHED, WRONG_CLASS, POOR_LOCALISATION, MISSED]
    assert errors.counts() == {MISSED: 1, FALSE_POSITIVE: 2, WRONG_CLASS: 1, POOR_LOCALISATION: 1}
    assert errors.num_errors == 5


def test_prediction_order_is_by_score_not_by_position():
    """The lower-scoring of two predictions on one object is the duplicate, wherever it is."""
    pred = instances([[0, 0, 10, 9], [0, 0, 10, 10]], [0, 0], [0.6, 0.9])
    errors = classify_detections(pred, GT[[0]])
    assert errors.pred_kinds == [FALSE_POSITIVE, TP] and errors.gt_kinds == [MATCHED]


@pytest.mark.parametrize("box, label, kind", [
    ([0, 0, 10, 10], 1, WRONG_CLASS),         # IoU 1 with class 0's A
    ([0, 0, 4, 10], 0, POOR_LOCALISATION),    # IoU 0.4
    ([0, 0, 1, 10], 0, POOR_LOCALISATION),    # IoU exactly 0.1: still poorly localised
    ([0, 0, 0.9, 10], 0, FALSE_POSITIVE),     # IoU 0.09
    ([0, 0, 5, 10], 0, TP),                   # IoU exactly 0.5
    ([0, 0, 4, 10], 1, FALSE_POSITIVE),       # 0.4 with another class: not an error of that object
])
def test_thresholds_are_inclusive_at_their_lower_end(box, label, kind):
    errors = classify_detections(instances([box], [label], [0.9]), GT[[0]])
    assert errors.pred_kinds == [kind]
    assert errors.gt_kinds == [{TP: MATCHED, FALSE_POSITIVE: MISSED}.get(kind, kind)]


def test_wrong_class_wins_over_poor_localisation_of_its_own_class():
    gt = instances([[0, 0, 10, 10], [0, 0, 4, 10]], [1, 0])  # p: IoU 1 with class 1, 0.4 with class 0
    errors = classify_detections(instances([[0, 0, 10, 10]], [0], [0.9]), gt)
    assert errors.pred_kinds == [WRONG_CLASS] and errors.gt_kinds == [WRONG_CLASS, MISSED]


def test_crowd_regions_and_empty_images():
    crowd = instances([[100, 0, 120, 20]], [0])
    pred = instances([[100, 0, 120, 20], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])
    errors = classify_detections(pred, instances([], []), crowd)
    assert errors.pred_kinds == [IGNORED, FALSE_POSITIVE] and errors.num_errors == 1
    nothing = classify_detections(instances([], [], []), GT)
    assert nothing.gt_kinds == [MISSED] * 4 and nothing.counts()[MISSED] == 4


def test_coco_dicts_give_the_same_classification_and_class_tags():
    """The COCO path (xywh, sparse category ids) classifies as the tensors do."""
    ids = {0: 7, 1: 9}
    gt = {"images": [{"id": 5}], "categories": [{"id": 9, "name": "b"}, {"id": 7, "name": "a"}],
          "annotations": [{"id": i + 1, "image_id": 5, "category_id": ids[int(label)], "iscrowd": 0,
                           "bbox": [x1, y1, x2 - x1, y2 - y1]}
                          for i, ((x1, y1, x2, y2), label) in enumerate(zip(GT.boxes.tensor.tolist(), GT.labels))]}
    results = [{"image_id": 5, "category_id": ids[int(label)], "score": float(score), "bbox": [x1, y1, x2 - x1, y2 - y1]}
               for (x1, y1, x2, y2), label, score in zip(PRED.boxes.tensor.tolist(), PRED.labels, PRED.scores)]
    [image] = coco_image_errors(gt, results)
    assert image.errors == classify_detections(PRED, GT)
    assert set(error_tags(image, ["a", "b"])) == {(MISSED, "b"), (WRONG_CLASS, "a"), (WRONG_CLASS, "b"),
                                                   (POOR_LOCALISATION, "a"), (FALSE_POSITIVE, "b"),
                                                   (FALSE_POSITIVE, "a")}


def test_segmentation_image_errors_from_a_hand_counted_matrix():
    """1000 valid pixels: 5 px is the 0.5% threshold. Rows ground truth, columns prediction."""
    matrix = np.array([[500, 20, 4],    # background: 20 px predicted as class 1 (fp), 4 px as 2 (too few)
                       [30, 300, 6],    # class 1: 30 px missed, 6 px taken for class 2
                       [0, 0, 140]])
    errors = segmentation_image_errors(matrix)
    assert errors.pixels == {(FALSE_POSITIVE, 1): 20, (MISSED, 1): 30, (WRONG_CLASS, 1): 6}
    ious = [500 / (500 + 24 + 30), 300 / (300 + 36 + 20), 140 / (140 + 10)]
    assert errors.miou == pytest.approx(np.mean(ious))
