import cv2
import numpy as np

from detseg.proposals.recall import best_overlaps, proposal_recall
from detseg.proposals.selective_search import SelectiveSearch, Strategy, hierarchical_grouping


def simple_image():
    """Four flat-coloured shapes on a grey background, and their boxes (xyxy, pixel edges)."""
    image = np.full((128, 160, 3), 120, np.uint8)
    cv2.rectangle(image, (10, 12), (49, 41), (220, 30, 30), -1)          # x 10..49, y 12..41
    cv2.circle(image, (110, 40), 20, (30, 200, 40), -1)                  # x 90..130, y 20..60
    cv2.rectangle(image, (20, 80), (79, 119), (40, 40, 210), -1)
    triangle = np.array([[120, 75], [150, 120], [95, 120]], np.int32)
    cv2.fillPoly(image, [triangle], (240, 220, 30))
    boxes = np.array([[10, 12, 50, 42], [90, 20, 131, 61], [20, 80, 80, 120], [95, 75, 151, 121]], np.float32)
    return image, boxes


def test_recall_is_one_at_iou_05_with_500_proposals_on_a_simple_image():
    image, boxes = simple_image()
    proposals = SelectiveSearch(max_proposals=500)(image)
    assert 0 < len(proposals) <= 500
    assert (best_overlaps(boxes, proposals, 500) >= 0.5).all()
    assert proposal_recall([boxes], [proposals], top_ns=[500])["recall@500/iou0.5"] == 1.0


def test_proposals_are_unique_inside_the_image_and_reproducible():
    image, _ = simple_image()
    search = SelectiveSearch()
    first, second = search(image), search(image)
    np.testing.assert_array_equal(first, second)
    assert len(first) > 0  # the checks below hold vacuously for no proposals
    assert len(np.unique(first, axis=0)) == len(first)
    assert (first[:, :2] >= 0).all() and (first[:, 2] <= 160).all() and (first[:, 3] <= 128).all()
    assert (first[:, 2:] > first[:, :2]).all()


def test_hierarchy_ends_with_the_whole_image_and_each_merge_covers_its_parts():
    image, _ = simple_image()
    for strategy in (Strategy("hsv", 50, "ctsf"), Strategy("lab", 100, "tsf"), Strategy("rgb", 100, "f")):
        boxes = hierarchical_grouping(image, strategy)
        np.testing.assert_array_equal(boxes[-1], [0, 0, 160, 128])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        assert areas[-1] == areas.max()


def test_proposal_recall_by_hand():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    proposals = np.array([[0, 0, 10, 8], [20, 20, 30, 30]], np.float32)  # IoU 0.8 and 1.0
    recall = proposal_recall([gt], [proposals], top_ns=[1, 2], iou_thresholds=[0.5, 0.9])
    assert recall["recall@1/iou0.5"] == 0.5 and recall["recall@2/iou0.5"] == 1.0
    assert recall["recall@2/iou0.9"] == 0.5
