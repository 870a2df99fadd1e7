import pytest
import torch

from detseg.structures import BoxCoder, Boxes, Instances
from detseg.structures.box_coder import DEFAULT_SCALE_CLAMP


def random_boxes(n, seed=0, size=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_format_conversions_round_trip_and_match_hand_values():
    boxes = Boxes([[10, 20, 30, 60]])
    assert boxes.xywh().tolist() == [[10, 20, 20, 40]]
    assert boxes.cxcywh().tolist() == [[20, 40, 20, 40]]
    t = random_boxes(50)
    assert torch.allclose(Boxes.from_xywh(Boxes(t).xywh()).tensor, t, atol=1e-4)
    assert torch.allclose(Boxes.from_cxcywh(Boxes(t).cxcywh()).tensor, t, atol=1e-4)


def test_area_clip_nonempty_scale():
    boxes = Boxes([[0, 0, 10, 5], [5, 5, 5, 9], [-5, -5, 120, 50]])
    assert boxes.area().tolist() == [50, 0, 125 * 55]
    assert boxes.nonempty().tolist() == [True, False, True]
    assert boxes.clip((40, 100)).tensor[2].tolist() == [0, 0, 100, 40]
    assert boxes.inside((40, 100)).tolist() == [True, True, False]
    assert boxes.scale(2, 3).tensor[0].tolist() == [0, 0, 20, 15]


def test_indexing_cat_and_empty():
    boxes = Boxes(random_boxes(5))
    assert len(boxes[1]) == 1 and len(boxes[1:3]) == 2
    assert len(boxes[torch.tensor([True, False, True, False, False])]) == 2
    assert len(Boxes.cat([boxes, boxes[:2]])) == 7
    empty = Boxes(torch.zeros(0))
    assert empty.tensor.shape == (0, 4) and empty.area().shape == (0,)
    with pytest.raises(ValueError, match="Tensor\\[N, 4\\]"):
        Boxes(torch.zeros(3, 5))


def test_instances_checks_lengths_and_indexes_every_field():
    boxes = Boxes(random_boxes(4))
    masks = torch.zeros(4, 8, 9, dtype=torch.bool)
    inst = Instances(boxes, torch.arange(4), (8, 9), scores=torch.rand(4), masks=masks)
    sub = inst[inst.scores.argsort()[:2]]
    assert len(sub) == 2 and sub.masks.shape == (2, 8, 9) and sub.scores.shape == (2,)
    assert len(inst[0]) == 1 and len(inst[-1]) == 1
    both = Instances.cat([inst, sub])
    assert len(both) == 6 and both.masks.shape[0] == 6
    assert inst.to("cpu").labels.dtype == torch.int64
    with pytest.raises(ValueError, match="labels"):
        Instances(boxes, torch.arange(3), (8, 9))
    with pytest.raises(ValueError, match="masks"):
        Instances(boxes, torch.arange(4), (8, 9), masks=torch.zeros(4, 9, 9))
    with pytest.raises(ValueError, match="scores"):
        Instances.cat([inst, Instances(boxes, torch.arange(4), (8, 9), masks=masks)])


def test_box_coder_matches_the_rcnn_formulas_by_hand():
    coder = BoxCoder(weights=(10, 10, 5, 5))
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), w 10, h 20
    target = torch.tensor([[2.0, 4.0, 22.0, 14.0]])  # centre (12, 9), w 20, h 10
    deltas = coder.encode(anchor, target)
    expected = [10 * 7 / 10, 10 * -1 / 20, 5 * torch.log(torch.tensor(2.0)), 5 * torch.log(torch.tensor(0.5))]
    assert torch.allclose(deltas[0], torch.tensor(expected))
    assert torch.allclose(coder.decode(deltas, anchor), target, atol=1e-5)


def test_box_coder_round_trip_class_specific_and_clamp():
    coder = BoxCoder()
    ref, tgt = random_boxes(100, 1), random_boxes(100, 2)
    assert torch.allclose(coder.decode(coder.encode(ref, tgt), ref), tgt, atol=1e-3)
    two_classes = torch.cat([coder.encode(ref, tgt), coder.encode(ref, ref)], dim=1)
    decoded = coder.decode(two_classes, ref)
    assert decoded.shape == (100, 8)
    assert torch.allclose(decoded[:, 4:], ref, atol=1e-3)
    huge = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    box = coder.decode(huge, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    width = box[0, 2] - box[0, 0]
    assert torch.isclose(width, torch.exp(torch.tensor(DEFAULT_SCALE_CLAMP)), rtol=1e-4)
