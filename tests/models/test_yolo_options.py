"""The YOLO head's training options (issue 19): the ratio assigner, IoU-aware objectness,
the CIoU box loss, YOLOv5's box decode and the decoupled head."""

import math

import pytest
import torch
import torchvision.ops as tv_ops

from detseg.config import load_node
from detseg.errors import ConfigError
from detseg.models import build_model
from detseg.models.heads.yolo import YoloHead, YoloOutput
from detseg.ops.matcher import near_ignore_regions
from tests.models.test_head_contract import SHAPES, SIZE, crowd_gradient, features, sample

ANCHORS = [[[10, 10], [20, 12]], [[40, 40], [30, 60]]]  # the grid of tests/ops/test_yolo_assign.py
OPTIONS = {
    "default": {},
    "ratio": {"assigner": "ratio", "box_decode": "v5"},
    "iou_objectness": {"objectness_target": "iou"},
    "ratio_iou_decoupled": {"assigner": "ratio", "box_decode": "v5", "objectness_target": "iou", "decoupled": True},
    "xywh_v5": {"box_decode": "v5", "box_loss": "xywh"},
}


def yolo_head(**kwargs) -> YoloHead:
    torch.manual_seed(0)
    return YoloHead(SHAPES, 64, ["p3", "p4"], num_classes=2, anchors=ANCHORS, **kwargs)


def samples_with(boxes, labels):
    s = sample(boxes)
    s.gt.labels = torch.tensor(labels)
    return [s]


def test_a_cell_two_objects_claim_goes_to_the_one_whose_centre_is_in_it():
    # object 0's right neighbour on map 0 (row 2, column 2) is the centre cell of object 1
    head = yolo_head(assigner="ratio", box_decode="v5")
    boxes = [[10.0, 18.0, 18.0, 26.0], [16.0, 16.0, 24.0, 24.0]]
    targets = head.targets(head(features(), SIZE), samples_with(boxes, [0, 1]))
    owner = {w: int(label) for w, label in zip(targets.where, targets.labels)}
    assert owner[(0, 0, 0, 2, 2)] == 1 and owner[(0, 0, 1, 2, 2)] == 1
    assert owner[(0, 0, 0, 2, 1)] == 0 and owner[(0, 0, 0, 3, 1)] == 0
    assert len(targets.where) == 6  # 6 of object 0, 2 of object 1, two (anchors 0 and 1 at (2, 2)) shared
    assert sum(int(p.sum()) for p in targets.positive) == 6


@pytest.mark.parametrize("assigner", [{}, {"assigner": "ratio", "box_decode": "v5"}])
def test_iou_objectness_targets_are_the_iou_of_the_assigned_prediction(assigner):
    head = yolo_head(objectness_target="iou", **assigner)
    maps = [m.detach().requires_grad_() for m in head(features(), SIZE).maps]
    raw = YoloOutput(maps, [head.decode(m, k) for k, m in enumerate(maps)], SIZE)
    gt = [[10.0, 18.0, 18.0, 26.0], [34.0, 30.0, 62.0, 60.0]]
    targets = head.targets(raw, samples_with(gt, [0, 1]))
    assert targets.where
    for (n, k, a, i, j), box in zip(targets.where, targets.boxes):
        expected = tv_ops.box_iou(raw.boxes[k][n, a, i, j].detach()[None], box[None])[0, 0]
        assert targets.objectness[k][n, a, i, j].item() == pytest.approx(expected.item(), abs=1e-6)
    assert max(targets.objectness[k][n, a, i, j].item() for n, k, a, i, j in targets.where) > 0.1
    for t, p in zip(targets.objectness, targets.positive):
        assert (t[~p] == 0).all()
    # the loss learns these targets: d loss_obj / d t_o = (sigmoid(t_o) - target) / N+
    head.loss(raw, samples_with(gt, [0, 1]))["loss_obj"].backward()
    for n, k, a, i, j in targets.where:
        logit = maps[k][n, a, i, j, 4].detach()
        expected = (logit.sigmoid() - targets.objectness[k][n, a, i, j]) / len(targets.where)
        assert maps[k].grad[n, a, i, j, 4].item() == pytest.approx(expected.item(), abs=1e-6)


def test_objectness_target_one_is_one_at_every_positive():
    head = yolo_head(assigner="ratio", box_decode="v5")
    targets = head.targets(head(features(), SIZE), samples_with([[34.0, 30.0, 62.0, 60.0]], [1]))
    assert [targets.objectness[k][n, a, i, j].item() for n, k, a, i, j in targets.where] == [1.0] * len(targets.where)


def test_ciou_box_loss_is_the_hand_worked_complete_iou_loss():
    head = yolo_head(box_loss="ciou")
    pred = torch.tensor([[0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 4.0, 4.0]])
    target = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 0.0, 6.0, 4.0]])
    # 1: IoU 8/16, centres (2, 1) and (2, 2) -> rho^2 1, enclosing box 4 x 4 -> c^2 32,
    #    v = 4/pi^2 (atan(4/4) - atan(4/2))^2, alpha = v / (1 - IoU + v)
    v = 4 / math.pi ** 2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    first = 1 - 0.5 + 1 / 32 + v / (1 - 0.5 + v) * v
    # 2: same shape (v = 0), IoU 8/24, rho^2 4, enclosing 6 x 4 -> c^2 52
    second = 1 - 1 / 3 + 4 / 52
    where = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0]])
    loss = head._box_loss(torch.zeros(2, 7), pred, target, where, SIZE)
    assert loss.tolist() == pytest.approx([first, second], abs=1e-6)
    assert loss.tolist() == pytest.approx(tv_ops.complete_box_iou_loss(pred, target, reduction="none").tolist())


def test_v5_decode_starts_at_the_anchor_and_reaches_half_a_cell_beyond_its_own():
    head = yolo_head(assigner="ratio", box_decode="v5")
    raw = torch.zeros(1, 2, 4, 4, 7)
    assert head.decode(raw, level=1)[0, 1, 2, 3].tolist() == [3.5 * 16 - 15, 2.5 * 16 - 30, 3.5 * 16 + 15, 2.5 * 16 + 30]
    raw[..., 0], raw[..., 2] = -20.0, 20.0  # sigmoid -> 0 and 1: centre half a cell left, width 4x
    box = head.decode(raw, level=1)[0, 0, 2, 3]
    assert ((box[0] + box[2]) / 2).item() == pytest.approx(2.5 * 16, abs=1e-4)
    assert (box[2] - box[0]).item() == pytest.approx(4 * 40, abs=1e-3)


def test_xywh_box_loss_under_the_v5_decode_vanishes_at_the_box():
    head = yolo_head(box_decode="v5", box_loss="xywh")
    decoded = torch.tensor([[34.0, 6.0, 54.0, 18.0]])  # zeros: anchor [20, 12] at cell (1, 5) of p3
    where = torch.tensor([[0, 1, 1, 5]])
    assert head._box_loss(torch.zeros(1, 7), decoded, decoded.clone(), where, SIZE).item() == pytest.approx(0, abs=1e-6)
    neighbour = torch.tensor([[0, 1, 1, 4]])  # from the cell on the left the centre is at offset 1.5
    assert head._box_loss(torch.zeros(1, 7), decoded, decoded.clone(), neighbour, SIZE).item() > 0


def test_ratio_assigner_with_the_v3_decode_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="set box_decode: v5"):
        yolo_head(assigner="ratio")
    with pytest.raises(ConfigError, match=r"assigner must be one of \['max_iou', 'ratio'\]"):
        yolo_head(assigner="ratoi")


def test_decoupled_head_keeps_the_output_layout_and_the_objectness_prior():
    head = yolo_head(decoupled=True)
    raw = head(features(), SIZE)
    assert [tuple(m.shape) for m in raw.maps] == [(1, 2, 8, 8, 7), (1, 2, 4, 4, 7)]
    assert head.layers[0].box[-1].bias.view(2, 5)[:, 4].sigmoid().tolist() == pytest.approx([0.01, 0.01])
    head.loss(raw, samples_with([[34.0, 30.0, 62.0, 60.0]], [1]))["loss_cls"].backward()
    assert head.layers[0].box[-1].weight.grad is None or head.layers[0].box[-1].weight.grad.abs().sum() == 0
    assert head.layers[1].cls[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("option", OPTIONS)
def test_crowd_region_objectness_stays_untaught_with_every_option(option):
    head = yolo_head(**OPTIONS[option])
    maps = [m.detach().requires_grad_() for m in head(features(), SIZE).maps]
    boxes = [head.decode(m, k) for k, m in enumerate(maps)]
    raw = YoloOutput(maps, boxes, SIZE)
    crowd = [boxes[1][0, 0, 2, 2].tolist()]  # exactly one prediction's box
    near = [near_ignore_regions(b.detach().reshape(-1, 4), torch.tensor(crowd)).view(b.shape[:4]) for b in boxes]
    grads = [0.0, 0.0]
    for k, m in enumerate(maps):
        g = crowd_gradient(head, raw, m, [[2, 2, 12, 12]], crowd, lambda grad, k=k: grad[..., 4][near[k]])
        grads = [grads[0] + g[0], grads[1] + g[1]]
    assert grads[0] == 0 and grads[1] > 0


@pytest.mark.parametrize("option", OPTIONS)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss_with_every_option(option):
    from detseg.data import ShapesDataset

    torch.manual_seed(0)
    node = load_node("configs/model/yolo_tiny.yaml")
    node.num_classes = 3
    for key, value in OPTIONS[option].items():
        node.head[key] = value
    model = build_model(node)
    data = ShapesDataset(num_images=2, image_size=128)
    batch = [data[0], data[1]]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    totals = []
    for _ in range(8):
        total = sum(model.loss(batch).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.8 * totals[0], totals
