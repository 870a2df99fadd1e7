import numpy as np
import torch
from pycocotools import mask as mask_utils

from detseg.structures.masks import (
    mask_to_polygons,
    mask_to_rle,
    paste_masks_in_image,
    polygons_to_mask,
    rle_to_mask,
    segmentation_to_mask,
)


def test_polygon_of_a_rectangle_fills_exactly_its_pixels():
    mask = polygons_to_mask([[2, 3, 12, 3, 12, 8, 2, 8]], 20, 30)
    assert mask.shape == (20, 30)
    assert mask.sum() == 10 * 5
    assert mask[3:8, 2:12].all()


def test_rle_round_trip_compressed_and_uncompressed():
    rng = np.random.default_rng(0)
    mask = rng.random((17, 23)) > 0.6
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str)
    assert (rle_to_mask(rle) == mask).all()
    # uncompressed counts, column-major run lengths starting with zeros
    flat = mask.flatten(order="F").astype(int)
    runs, value, count = [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    assert (segmentation_to_mask({"size": [17, 23], "counts": runs}, 17, 23) == mask).all()


def test_mask_to_polygons_reproduces_a_convex_shape():
    mask = np.zeros((40, 40), bool)
    mask[5:25, 10:30] = True
    back = polygons_to_mask(mask_to_polygons(mask), 40, 40)
    assert mask_utils.iou([mask_to_rle(back)], [mask_to_rle(mask)], [0])[0, 0] > 0.9


def test_paste_full_mask_fills_the_box_and_nothing_else():
    masks = torch.ones(2, 28, 28)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 4.0, 4.0]])
    pasted = paste_masks_in_image(masks, boxes, (40, 50))
    assert pasted.shape == (2, 40, 50) and pasted.dtype == torch.bool
    expected = torch.zeros(40, 50, dtype=torch.bool)
    expected[5:15, 10:30] = True
    assert torch.equal(pasted[0], expected)
    assert pasted[1].sum() == 16
    assert paste_masks_in_image(torch.zeros(0, 28, 28), torch.zeros(0, 4), (8, 8)).shape == (0, 8, 8)


def test_paste_left_half_mask():
    mask = torch.zeros(1, 28, 28)
    mask[:, :, :14] = 1
    pasted = paste_masks_in_image(mask, torch.tensor([[0.0, 0.0, 20.0, 10.0]]), (10, 20))
    assert pasted[0, :, :10].all() and not pasted[0, :, 10:].any()
