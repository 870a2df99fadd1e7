"""YOLO's assigners on a hand-worked grid (detseg/ops/yolo_assign.py).

Input 64 x 64; map 0 has stride 8 (8 x 8 cells), map 1 stride 16 (4 x 4 cells).
Anchors: map 0 [10, 10], [20, 12]; map 1 [40, 40], [30, 60].

Object 0, box (10, 18)-(18, 26): 8 x 8, centre (14, 22).
  Ratios (largest of w/p_w, p_w/w, h/p_h, p_h/h): [10, 10] 1.25, [20, 12] 2.5, [40, 40] 5,
  [30, 60] 7.5 -> within 4: map 0 anchors 0 and 1.
  On map 0 the centre is (1.75, 2.75) cells: centre cell row 2, column 1; f_x = 0.75 > 0.5
  -> column neighbour on the right (row 2, column 2); f_y = 0.75 > 0.5 -> row neighbour
  below (row 3, column 1).
Object 1, box (50, 4)-(64, 64): 14 x 60, centre (57, 34).
  Ratios: [10, 10] 6, [20, 12] 5, [40, 40] 2.86, [30, 60] 2.14 -> map 1 anchors 0 and 1.
  On map 1 the centre is (3.5625, 2.125) cells: centre cell row 2, column 3; f_x > 0.5 ->
  the right neighbour, column 4, is off the 4-column map and dropped; f_y = 0.125 < 0.5 ->
  row neighbour above (row 1, column 3).
"""

import torch

from detseg.ops.yolo_assign import max_iou_assign, ratio_assign

ANCHORS = [torch.tensor([[10.0, 10.0], [20.0, 12.0]]), torch.tensor([[40.0, 40.0], [30.0, 60.0]])]
STRIDES = [8, 16]
SIZES = [(8, 8), (4, 4)]
BOXES = torch.tensor([[10.0, 18.0, 18.0, 26.0], [50.0, 4.0, 64.0, 64.0]])


def test_ratio_assigner_matches_the_hand_worked_grid():
    # (object, map, anchor, row, column): centre cells first, then neighbours
    assert ratio_assign(BOXES, ANCHORS, STRIDES, SIZES) == [
        (0, 0, 0, 2, 1), (0, 0, 1, 2, 1), (1, 1, 0, 2, 3), (1, 1, 1, 2, 3),
        (0, 0, 0, 2, 2), (0, 0, 0, 3, 1), (0, 0, 1, 2, 2), (0, 0, 1, 3, 1),
        (1, 1, 0, 1, 3), (1, 1, 1, 1, 3),
    ]


def test_ratio_threshold_leaves_out_anchors_beyond_it():
    # at 2.0 only [10, 10] (1.25) fits object 0, and nothing fits object 1 (2.14 at best)
    assert ratio_assign(BOXES, ANCHORS, STRIDES, SIZES, anchor_ratio_threshold=2.0) == [
        (0, 0, 0, 2, 1), (0, 0, 0, 2, 2), (0, 0, 0, 3, 1),
    ]


def test_a_centre_in_the_middle_of_its_cell_has_no_neighbours():
    # (16, 16)-(24, 24): centre (20, 20) is (2.5, 2.5) cells on map 0, f_x = f_y = 0.5
    assert ratio_assign(torch.tensor([[16.0, 16.0, 24.0, 24.0]]), ANCHORS, STRIDES, SIZES) == [
        (0, 0, 0, 2, 2), (0, 0, 1, 2, 2),
    ]


def test_max_iou_assigner_gives_one_anchor_per_object_at_its_centre_cell():
    # shape IoU: object 0 with [10, 10] 64/100 (best); object 1 with [30, 60] 840/1800 (best)
    assert max_iou_assign(BOXES, ANCHORS, STRIDES, SIZES) == [(0, 0, 0, 2, 1), (1, 1, 1, 2, 3)]
