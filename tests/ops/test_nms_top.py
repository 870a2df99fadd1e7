"""detseg.ops.batched_nms_top: the first top_k of per-class greedy NMS, against a brute-force
greedy NMS (equal scores by index) and torchvision's batched_nms."""

import pytest
import torch
import torchvision

from detseg.ops import batched_nms, batched_nms_top


def greedy_reference(boxes, scores, labels, iou_threshold):
    """Per-class greedy NMS by hand: visit boxes by decreasing score (equal scores by index),
    keep a box unless a kept box of its class overlaps it by more than ``iou_threshold``."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    iou = torchvision.ops.box_iou(boxes, boxes)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    kept = []
    for i in order:
        if not suppressed[i]:
            kept.append(i)
            suppressed |= (iou[i] > iou_threshold) & (labels == labels[i])
    return torch.tensor(kept, dtype=torch.int64)


def random_case(n, seed, ties=False, classes=3, spread=120.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * spread
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 0.5], 1)
    scores = (torch.randperm(n, generator=g) + 1) / n  # all different
    if ties:
        scores = (scores * 10).round() / 10
    return boxes, scores, torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("n", [300, 1200])  # 1200 boxes: torchvision's one-NMS-per-class path
@pytest.mark.parametrize("ties", [False, True])
def test_first_top_k_of_greedy_nms(n, ties):
    for seed in range(4):
        boxes, scores, labels = random_case(n, seed, ties)
        reference = greedy_reference(boxes, scores, labels, 0.5)
        for top_k in (1, 17, 100, n):
            assert torch.equal(batched_nms_top(boxes, scores, labels, 0.5, top_k), reference[:top_k])


def test_same_as_torchvision_without_equal_scores():
    for seed, n in ((0, 900), (1, 2500), (2, 40)):
        boxes, scores, labels = random_case(n, seed)
        assert len(set(scores.tolist())) == n
        for top_k in (5, 300):
            assert torch.equal(batched_nms_top(boxes, scores, labels, 0.7, top_k),
                               batched_nms(boxes, scores, labels, 0.7)[:top_k])


def test_heavy_suppression_widens_the_candidates():
    # 50 clusters of 40 near-identical boxes: NMS over the best 2 * top_k keeps too few, so the
    # candidates double until the top_k are found (or every box was seen)
    g = torch.Generator().manual_seed(3)
    centres = torch.rand(50, 2, generator=g) * 2000
    boxes = torch.cat([centres, centres + 30], 1).repeat_interleave(40, 0) + torch.rand(2000, 4, generator=g)
    scores = torch.rand(2000, generator=g)
    labels = torch.zeros(2000, dtype=torch.int64)
    kept = batched_nms_top(boxes, scores, labels, 0.5, 45)
    assert torch.equal(kept, greedy_reference(boxes, scores, labels, 0.5)[:45])
    assert len(batched_nms_top(boxes, scores, labels, 0.5, 500)) == 50  # fewer than asked: all kept


def test_empty():
    empty = torch.zeros(0, 4)
    assert batched_nms_top(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5, 10).shape == (0,)
