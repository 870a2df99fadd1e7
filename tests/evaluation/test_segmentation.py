import math

import numpy as np
import pytest
import torch

from detseg.evaluation import DetectionConfusionMatrix, SegmentationEvaluator
from detseg.structures import Boxes, Instances, SemanticMap


def numpy_reference(preds, targets, num_classes, ignore=255):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for p, t in zip(preds, targets):
        for pv, tv in zip(p.ravel(), t.ravel()):
            if tv != ignore:
                matrix[tv, pv] += 1
    return matrix


def test_metrics_match_a_numpy_confusion_matrix():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 4, (9, 11)) for _ in range(3)]
    targets = [rng.integers(0, 4, (9, 11)) for _ in range(3)]
    targets[0][:3] = 255
    # class 3 appears in neither: left out of the means
    preds = [np.where(p == 3, 0, p) for p in preds]
    targets = [np.where(t == 3, 1, t) for t in targets]
    evaluator = SegmentationEvaluator(4, ["bg", "a", "b", "c"])
    evaluator.update([SemanticMap(torch.from_numpy(p)) for p in preds[:2]], [torch.from_numpy(t) for t in targets[:2]])
    evaluator.update([SemanticMap(torch.from_numpy(preds[2]))], [torch.from_numpy(targets[2])])
    metrics = evaluator.compute()
    matrix = numpy_reference(preds, targets, 4)
    assert np.array_equal(evaluator.matrix.numpy(), matrix)
    tp = np.diag(matrix).astype(float)
    fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
    iou, dice = tp[:3] / (tp + fp + fn)[:3], 2 * tp[:3] / (2 * tp + fp + fn)[:3]
    assert metrics["pixel_acc"] == pytest.approx(tp.sum() / matrix.sum())
    assert metrics["mIoU"] == pytest.approx(iou.mean())
    assert metrics["mDice"] == pytest.approx(dice.mean())
    assert metrics["IoU/a"] == pytest.approx(iou[1])
    assert math.isnan(metrics["IoU/c"]) and math.isnan(metrics["Dice/c"])


def test_perfect_prediction_and_bad_labels():
    target = torch.tensor([[0, 1], [2, 255]])
    evaluator = SegmentationEvaluator(3)
    evaluator.update([SemanticMap(torch.tensor([[0, 1], [2, 0]]))], [target])
    metrics = evaluator.compute()
    assert metrics["pixel_acc"] == 1.0 and metrics["mIoU"] == 1.0 and metrics["mDice"] == 1.0
    with pytest.raises(ValueError, match="outside 0..2"):
        evaluator.update([SemanticMap(torch.tensor([[0, 5], [2, 0]]))], [target])
    with pytest.raises(ValueError, match="shape"):
        evaluator.update([SemanticMap(torch.zeros(3, 3, dtype=torch.long))], [target])


def test_detection_confusion_matrix_by_hand():
    gt = Instances(Boxes([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]), [0, 1, 1], (60, 60))
    pred = Instances(
        Boxes([[0, 0, 10, 10], [20, 20, 30, 31], [100, 0, 110, 10], [40, 40, 50, 50], [0, 0, 10, 10]]),
        labels=[0, 0, 1, 1, 1], image_size=(60, 60), scores=[0.9, 0.8, 0.7, 0.3, 0.6],
    )
    cm = DetectionConfusionMatrix(num_classes=2, score_threshold=0.5)
    cm.update([pred], [gt])
    expected = np.array([
        [1, 0, 0],   # gt class 0: matched as class 0
        [1, 0, 1],   # gt class 1: one predicted as class 0, one missed (its detection scored 0.3)
        [0, 2, 0],   # background: two class-1 false positives (far box, duplicate on gt 0)
    ])
    assert np.array_equal(cm.compute(), expected)
