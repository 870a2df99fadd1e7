import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator as TorchvisionDefaultBoxes
from torchvision.models.detection.image_list import ImageList

from detseg.ops.default_boxes import DefaultBoxGenerator, ssd_scales
from detseg.ops.kmeans_anchors import kmeans_anchors, shape_iou
from detseg.ops.sampler import hard_negative_mining


def test_kmeans_recovers_planted_clusters():
    generator = torch.Generator().manual_seed(0)
    planted = torch.tensor([[10.0, 12.0], [40.0, 20.0], [25.0, 70.0]])
    wh = torch.cat([c * (1 + 0.05 * torch.randn(200, 2, generator=generator)) for c in planted])
    anchors, mean_iou = kmeans_anchors(wh, 3, seed=1)
    assert torch.allclose(anchors, planted, rtol=0.03)  # sorted by area, as planted
    assert mean_iou > 0.9


def test_kmeans_distance_is_one_minus_shape_iou():
    # a 10x10 box inside a 20x20 one on one centre: IoU 100 / 400
    assert shape_iou(torch.tensor([[10.0, 10.0]]), torch.tensor([[20.0, 20.0], [10.0, 10.0]])).tolist() == [[0.25, 1.0]]
    with pytest.raises(ValueError, match="positive"):
        kmeans_anchors(torch.tensor([[0.0, 3.0], [2.0, 2.0]]), 1)


def test_ssd_scales_follow_the_paper_formula():
    # s_k = s_min + (s_max - s_min)(k - 1)/(m - 1), m = 6: 0.2, 0.34, ..., 0.9, then 1.0 for s'_m
    assert ssd_scales(6, 0.2, 0.9) == pytest.approx([0.2, 0.34, 0.48, 0.62, 0.76, 0.9, 1.0])


def test_default_boxes_by_the_formula_on_a_3x3_map():
    generator = DefaultBoxGenerator([[2], [2, 3]], min_scale=0.2, max_scale=0.9, clip=False)
    boxes = generator([(3, 3), (1, 1)], (300, 300))
    assert generator.num_boxes_per_cell == [4, 6]
    assert boxes.shape == (3 * 3 * 4 + 1 * 6, 4)
    cell = boxes[(1 * 3 + 2) * 4:(1 * 3 + 2) * 4 + 4] / 300  # row 1, column 2 of the 3x3 map
    cx, cy = (2 + 0.5) / 3, (1 + 0.5) / 3
    s, s_next = 0.2, 0.9
    expected_wh = [(s, s), (math.sqrt(s * s_next),) * 2, (s * math.sqrt(2), s / math.sqrt(2)),
                   (s / math.sqrt(2), s * math.sqrt(2))]
    for box, (w, h) in zip(cell.tolist(), expected_wh):
        assert box == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=1e-6)
    last = boxes[-6:] / 300  # the 1x1 map: s = 0.9, s' = sqrt(0.9 * 1.0), ratios 2, 1/2, 3, 1/3
    widths = (last[:, 2] - last[:, 0]).tolist()
    assert widths == pytest.approx([0.9, math.sqrt(0.9), 0.9 * math.sqrt(2), 0.9 / math.sqrt(2),
                                    0.9 * math.sqrt(3), 0.9 / math.sqrt(3)], abs=1e-6)


def test_default_boxes_equal_torchvisions_ssd300_boxes():
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    scales = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
    steps = [8, 16, 32, 64, 100, 300]
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    ours = DefaultBoxGenerator(ratios, scales=scales, steps=steps, clip=False)(sizes, (300, 300))
    reference = TorchvisionDefaultBoxes(ratios, scales=scales, steps=steps, clip=False)
    images = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    (theirs,) = reference(images, [torch.zeros(1, 1, h, w) for h, w in sizes])
    assert ours.shape == (8732, 4)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-3)


def test_default_boxes_keep_their_pixel_shape_on_a_padded_batch():
    # an aspect-kept input of longest side 320 in a 256 x 320 batch: the boxes are the same
    # pixel squares / ratios as in a 320 x 320 batch, centred on the 8 x 10 map's cells
    generator = DefaultBoxGenerator([[2]], scales=[0.25, 0.5], clip=False)
    wide = generator([(8, 10)], (256, 320), box_side=320)
    square = generator([(10, 10)], (320, 320), box_side=320)
    wh = lambda b: b[:, 2:] - b[:, :2]  # noqa: E731
    torch.testing.assert_close(wh(wide[:4]), wh(square[:4]))
    expected = [[80, 80], [320 * math.sqrt(0.125)] * 2, [80 * math.sqrt(2), 80 / math.sqrt(2)],
                [80 / math.sqrt(2), 80 * math.sqrt(2)]]
    torch.testing.assert_close(wh(wide[:4]), torch.tensor(expected), rtol=0, atol=1e-4)
    centres = (wide[:, :2] + wide[:, 2:]) / 2
    assert centres[(7 * 10 + 9) * 4].tolist() == pytest.approx([9.5 * 32, 7.5 * 32])  # last cell
    # a square image at box_side is the paper's case
    torch.testing.assert_close(square, generator([(10, 10)], (320, 320)))


def test_hard_negative_mining_keeps_three_per_positive_the_hardest():
    torch.manual_seed(0)
    loss = torch.rand(3, 20)
    positive = torch.zeros(3, 20, dtype=torch.bool)
    positive[0, [0, 5]] = True  # 2 positives -> the 6 hardest of 18 negatives
    positive[1, :6] = True  # 6 positives, 14 negatives -> all 14 (fewer than 18)
    kept = hard_negative_mining(loss, positive, neg_pos_ratio=3, min_negatives=0)
    assert kept.sum(1).tolist() == [6, 14, 0]  # no positives, no minimum: nothing
    negatives_0 = (~positive[0]).nonzero().flatten()
    hardest = negatives_0[loss[0, negatives_0].argsort(descending=True)[:6]]
    assert set(kept[0].nonzero().flatten().tolist()) == set(hardest.tolist())
    assert not (kept & positive).any()
    assert hard_negative_mining(loss, positive, 3, min_negatives=3)[2].sum() == 3
