import math

import pytest
import torch

from detseg.errors import ConfigError
from detseg.models import build_model
from detseg.models.heads.yolo_v1 import build_grid_targets, yolo_v1_loss
from detseg.structures import DetSample

SIZE, S, B, C = (64, 64), 4, 2, 3  # 16-pixel cells


def test_grid_targets_by_hand():
    boxes = torch.tensor([[20.0, 4.0, 44.0, 36.0], [30.0, 18.0, 34.0, 22.0], [0.0, 48.0, 16.0, 64.0]])
    t = build_grid_targets(boxes, torch.tensor([1, 0, 2]), SIZE, S, C)
    # box 0: centre (32, 20) -> column 2, row 1; x = 32/16 - 2 = 0, y = 20/16 - 1 = 0.25
    # box 1 has its centre (32, 20) in the same cell and is smaller: the cell keeps box 0
    # box 2: centre (8, 56) -> column 0, row 3
    assert t.has_object.nonzero().tolist() == [[1, 2], [3, 0]]
    torch.testing.assert_close(t.box[1, 2], torch.tensor([0.0, 0.25, math.sqrt(24 / 64), math.sqrt(32 / 64)]))
    torch.testing.assert_close(t.box[3, 0], torch.tensor([0.5, 0.5, 0.5, 0.5]))
    assert t.classes[1, 2].tolist() == [0, 1, 0] and t.classes[3, 0].tolist() == [0, 0, 1]
    assert t.box_xyxy[1, 2].tolist() == [20, 4, 44, 36]


def perfect_predictions(targets, responsible=0):
    """Predictions that equal the targets, the object given to predictor ``responsible``."""
    out = torch.zeros(1, S, S, B * 5 + C)
    for row, col in targets.has_object.nonzero().tolist():
        j = responsible
        out[0, row, col, 5 * j: 5 * j + 4] = targets.box[row, col]
        out[0, row, col, 5 * j + 4] = 1.0  # IoU of a perfect box
        other = 1 - j
        out[0, row, col, 5 * other: 5 * other + 4] = torch.tensor([0.5, 0.5, 0.1, 0.1])  # a poor box
        out[0, row, col, 5 * B:] = targets.classes[row, col]
    return out


def targets():
    return build_grid_targets(torch.tensor([[20.0, 4.0, 44.0, 36.0]]), torch.tensor([1]), SIZE, S, C)


def test_loss_is_zero_when_predictions_equal_targets_and_each_term_grows_alone():
    t = targets()
    for j in (0, 1):
        losses = yolo_v1_loss(perfect_predictions(t, j), [t], SIZE, B)
        assert all(v.item() == pytest.approx(0.0, abs=1e-6) for v in losses.values()), losses
    base = perfect_predictions(t)
    changes = {
        "loss_coord": (1, 2, 0, 0.1),   # the responsible predictor's x
        "loss_obj": (1, 2, 4, 0.6),     # its confidence, which should be its IoU (1)
        "loss_noobj": (0, 0, 4, 0.3),   # a confidence in an empty cell
        "loss_cls": (1, 2, 5 * B, 0.4),  # a class probability of the object's cell
    }
    for term, (row, col, k, value) in changes.items():
        pred = base.clone()
        pred[0, row, col, k] = value
        if term == "loss_coord":
            # a moved box overlaps less; its confidence target follows: 0.1 cell = 1.6 px of
            # a 24 x 32 box gives IoU 22.4 / 25.6
            pred[0, row, col, 4] = 22.4 / 25.6
        losses = yolo_v1_loss(pred, [t], SIZE, B)
        assert losses[term].item() > 0, term
        assert all(v.item() == pytest.approx(0.0, abs=1e-6) for name, v in losses.items() if name != term), term
    # lambda_coord = 5 and lambda_noobj = 0.5 weigh those terms
    pred = base.clone()
    pred[0, 0, 0, 4] = 0.4
    assert yolo_v1_loss(pred, [t], SIZE, B)["loss_noobj"].item() == pytest.approx(0.5 * 0.16)
    pred = base.clone()
    pred[0, 1, 2, 0] += 0.1
    assert yolo_v1_loss(pred, [t], SIZE, B)["loss_coord"].item() == pytest.approx(5 * 0.01, rel=1e-5)


def test_the_predictor_with_the_higher_iou_is_responsible():
    t = targets()
    pred = perfect_predictions(t, responsible=1)
    pred[0, 1, 2, 9] = 0.3  # predictor 1 (the perfect box) says 0.3 instead of IoU 1
    losses = yolo_v1_loss(pred, [t], SIZE, B)
    assert losses["loss_obj"].item() == pytest.approx((1 - 0.3) ** 2)
    assert losses["loss_coord"].item() == pytest.approx(0.0, abs=1e-6)  # predictor 0's poor box is not judged
    # predictor 0 is not responsible, so its confidence is pushed to 0 (it is 0 here)
    pred[0, 1, 2, 4] = 0.5
    assert yolo_v1_loss(pred, [t], SIZE, B)["loss_noobj"].item() == pytest.approx(0.5 * 0.25)


def test_empty_image_gives_only_the_noobj_term():
    empty = build_grid_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), SIZE, S, C)
    pred = torch.full((1, S, S, B * 5 + C), 0.5)
    losses = yolo_v1_loss(pred, [empty], SIZE, B)
    assert losses["loss_coord"].item() == losses["loss_obj"].item() == losses["loss_cls"].item() == 0
    assert losses["loss_noobj"].item() == pytest.approx(0.5 * S * S * B * 0.25)


MODEL = {"name": "yolo_v1", "input_size": 64, "num_classes": 3,
         "backbone": {"name": "tiny_convnet", "widths": [8, 16, 16, 32], "out_features": ["c4"]},
         "head": {"name": "yolo_v1", "in_feature": "c4", "grid_size": 4, "hidden_dim": 32}}


def test_an_input_size_that_does_not_give_the_grid_fails_at_build_time_naming_sizes_that_work():
    with pytest.raises(ConfigError, match=r"model.input_size 96 gives a 6 x 6 map at c4 \(stride 16\), not the "
                                          r"4 x 4 grid; use input_size 64 or grid_size 6"):
        build_model({**MODEL, "input_size": 96})
    with pytest.raises(ConfigError, match="use input_size 64 or grid_size 6 with input_size 96"):
        build_model({**MODEL, "input_size": 100})


@pytest.mark.parametrize("head_type", ["fc", "conv"])
def test_two_iterations_and_predictions_in_original_coordinates(head_type):
    from detseg.data import ShapesDataset

    torch.manual_seed(0)
    model = build_model({**MODEL, "head": {**MODEL["head"], "head_type": head_type}})
    dataset = ShapesDataset(num_images=2, image_size=80)
    samples = [dataset[0], dataset[1]]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        losses = model.loss(samples)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    (pred,) = model.eval().predict(samples[:1])
    assert pred.image_size == (80, 80) and len(pred) > 0
    assert pred.boxes.tensor.min() >= 0 and pred.boxes.tensor.max() <= 80
    # the same pixels from an original of 160 x 240 (h x w): the same detections, x 3 in x, x 2 in y
    larger = DetSample(samples[0].image, samples[0].image_id, (160, 240), gt=samples[0].gt)
    (scaled,) = model.predict([larger])
    assert scaled.image_size == (160, 240) and torch.equal(scaled.labels, pred.labels)
    torch.testing.assert_close(scaled.boxes.tensor, pred.boxes.tensor * torch.tensor([3.0, 2.0, 3.0, 2.0]))
