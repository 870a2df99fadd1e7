"""random_affine: boxes move as the affine matrix moves their corners (hand-worked), masks
with them, and objects pushed out of the image are dropped with their masks."""

import numpy as np
import pytest

from detseg.data import ImageRecord, build_transforms


def record(boxes, height=80, width=100):
    boxes = np.array(boxes, np.float32)
    masks = np.zeros((len(boxes), height, width), np.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
        mask[y0:y1, x0:x1] = 1
    return ImageRecord(image=np.full((height, width, 3), 200, np.uint8), image_id=0, orig_size=(height, width),
                       boxes=boxes, labels=np.arange(len(boxes)), ignore=np.zeros(len(boxes), bool), masks=masks)


def affine(**kwargs):
    return build_transforms([{"name": "random_affine", **kwargs}])


def mask_box(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def test_scale_about_the_centre_then_translate_moves_the_corners_by_hand():
    # 100 x 80 image, centre (50, 40); x' = 2 (x - 50) + 50 + 0.1 * 100, y' = 2 (y - 40) + 40 + 0.1 * 80
    out = affine(scale=[2.0, 2.0], translate=[0.1, 0.1])(record([[40, 30, 60, 50]]), seed=0)
    np.testing.assert_allclose(out.boxes, [[40, 28, 80, 68]], atol=1e-3)
    assert np.abs(np.array(mask_box(out.masks[0])) - [40, 28, 80, 68]).max() <= 1


def test_a_quarter_turn_maps_the_corners_as_the_rotation_matrix_says():
    # 100 x 100, centre (50, 50); 90 degrees counter-clockwise (y down): (dx, dy) -> (dy, -dx)
    # x in [10, 30] -> dx in [-40, -20]; y in [20, 60] -> dy in [-30, 10]
    # new x = 50 + dy in [20, 60]; new y = 50 - dx in [70, 90]
    out = affine(scale=[1.0, 1.0], translate=0.0, rotate=[90, 90])(record([[10, 20, 30, 60]], 100, 100), seed=0)
    np.testing.assert_allclose(out.boxes, [[20, 70, 60, 90]], atol=1e-3)
    assert np.abs(np.array(mask_box(out.masks[0])) - [20, 70, 60, 90]).max() <= 1
    assert out.masks[0].sum() == pytest.approx(20 * 40, rel=0.05)


def test_objects_pushed_out_below_min_visibility_are_dropped_with_their_masks():
    # shift right by 30 px: [60, 10, 90, 30] keeps 10 of its 30 px width (1/3); [10, 40, 30, 60] stays whole
    boxes = [[60, 10, 90, 30], [10, 40, 30, 60]]
    kept = affine(scale=[1, 1], translate=[0.3, 0.3], min_visibility=0.3)(record(boxes, 80, 100), seed=0)
    assert kept.labels.tolist() == [0, 1]
    np.testing.assert_allclose(kept.boxes, [[90, 34, 100, 54], [40, 64, 60, 80]], atol=1e-3)
    dropped = affine(scale=[1, 1], translate=[0.3, 0.3], min_visibility=0.4)(record(boxes, 80, 100), seed=0)
    assert dropped.labels.tolist() == [1] and dropped.masks.shape == (1, 80, 100)
    assert mask_box(dropped.masks[0]) == [40, 64, 60, 80]


def test_random_draws_stay_in_their_ranges_and_repeat_with_the_seed():
    pipeline = affine()  # YOLOv8's scale 0.5..1.5, translate 0.1
    widths = []
    for seed in range(30):
        out = pipeline(record([[40, 30, 60, 50]]), seed=seed)
        again = pipeline(record([[40, 30, 60, 50]]), seed=seed)
        np.testing.assert_array_equal(out.boxes, again.boxes)
        widths.append(float(out.boxes[0, 2] - out.boxes[0, 0]))
    assert 10 - 1e-3 <= min(widths) < 14 and 26 < max(widths) <= 30 + 1e-3
