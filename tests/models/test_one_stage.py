import math

import pytest
import torch

from detseg.config import load_node
from detseg.errors import ConfigError
from detseg.models import build_model
from detseg.models.backbones.base import FeatureSpec
from detseg.models.heads.ssd import SSDHead
from detseg.models.heads.yolo import YoloHead
from detseg.structures import Boxes, DetSample, Instances

SHAPES = {"p3": FeatureSpec(8, 8), "p4": FeatureSpec(8, 16)}
ANCHORS = [[[10, 10], [20, 12]], [[40, 40], [30, 60]]]


def yolo_head(**kwargs) -> YoloHead:
    return YoloHead(SHAPES, 64, ["p3", "p4"], num_classes=2, anchors=ANCHORS, **kwargs)


def features(batch: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"p3": torch.randn(batch, 8, 8, 8), "p4": torch.randn(batch, 8, 4, 4)}


def instances(boxes, labels, size=(64, 64)) -> Instances:
    return Instances(Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)), torch.tensor(labels, dtype=torch.int64), size)


def head_loss(head, gt: list[Instances], size=(64, 64)) -> dict[str, torch.Tensor]:
    """The head's loss through its contract: one forward, then loss on samples holding ``gt``."""
    samples = [DetSample(torch.zeros(3, *size, dtype=torch.uint8), i, size, gt=g) for i, g in enumerate(gt)]
    return head.loss(head(features(len(gt)), size), samples)


def test_yolo_assigns_each_box_to_the_best_anchor_over_all_maps_at_its_centre_cell():
    head = yolo_head()
    # 38 x 42 centred at (20, 44): closest in shape to [40, 40] (map p4, anchor 0), cell (2, 1)
    # 18 x 11 centred at (45, 13): [20, 12] (map p3, anchor 1), cell (1, 5)
    assigned = head.assign(torch.tensor([[1.0, 23.0, 39.0, 65.0], [36.0, 7.5, 54.0, 18.5]]), [(8, 8), (4, 4)])
    assert assigned == [(1, 0, 2, 1), (0, 1, 1, 5)]


def test_yolo_decodes_zero_outputs_to_the_anchor_at_the_cell_centre():
    head = yolo_head()
    raw = torch.zeros(1, 2, 4, 4, 7)
    boxes = head.decode(raw, level=1)  # stride 16, anchors [40, 40] and [30, 60]
    assert boxes[0, 1, 2, 3].tolist() == [3.5 * 16 - 15, 2.5 * 16 - 30, 3.5 * 16 + 15, 2.5 * 16 + 30]


def test_yolo_empty_ground_truth_gives_zero_box_and_class_loss_but_objectness_loss():
    losses = head_loss(yolo_head(), [instances([], [])])
    assert losses["loss_box"].item() == 0 and losses["loss_cls"].item() == 0
    assert losses["loss_obj"].item() > 0
    sum(losses.values()).backward()  # still a graph


@pytest.mark.parametrize("box_loss", ["ciou", "giou", "xywh"])
def test_yolo_box_loss_vanishes_when_the_prediction_is_the_box(box_loss):
    head = yolo_head(box_loss=box_loss)
    raw = torch.zeros(1, 7)  # anchor [20, 12] at cell (1, 5) of p3: centre (44, 12)
    decoded = torch.tensor([[34.0, 6.0, 54.0, 18.0]])
    where = torch.tensor([[0, 1, 1, 5]])
    assert head._box_loss(raw, decoded, decoded.clone(), where, (64, 64)).item() == pytest.approx(0, abs=1e-6)
    shifted = decoded + torch.tensor([[4.0, 0.0, 4.0, 0.0]])
    assert head._box_loss(raw, decoded, shifted, where, (64, 64)).item() > 0


def test_yolo_ignore_threshold_silences_good_unassigned_boxes():
    gt = [instances([[10, 10, 50, 50]], [1])]
    silent = head_loss(yolo_head(ignore_threshold=0.0), gt)["loss_obj"]
    counted = head_loss(yolo_head(ignore_threshold=1.0), gt)["loss_obj"]
    assert silent < counted


def test_yolo_needs_anchors_for_every_map_as_width_height_pairs():
    with pytest.raises(ConfigError, match="anchors for 1 maps"):
        YoloHead(SHAPES, 64, ["p3", "p4"], num_classes=2, anchors=ANCHORS[:1])
    with pytest.raises(ConfigError, match=r"\[width, height\] pairs.*\[10, 10, 20\]"):
        YoloHead(SHAPES, 64, ["p3", "p4"], num_classes=2, anchors=[[[10, 10, 20]], ANCHORS[1]])


def ssd_head() -> SSDHead:
    return SSDHead(SHAPES, 64, ["p3", "p4"], num_classes=2, aspect_ratios=[[2], [2]], min_scale=0.2, max_scale=0.6)


def test_ssd_empty_ground_truth_gives_zero_box_loss_and_classification_loss():
    losses = head_loss(ssd_head(), [instances([], [])])
    assert losses["loss_box"].item() == 0
    assert losses["loss_cls"].item() > 0


def test_ssd_every_object_gets_a_positive_and_negatives_are_three_per_positive(monkeypatch):
    from detseg.models.heads import ssd

    seen = {}
    original = ssd.hard_negative_mining

    def spy(background_loss, positive, ratio, min_negatives, ignored):
        kept = original(background_loss, positive, ratio, min_negatives, ignored)
        seen.update(positive=positive, kept=kept)
        return kept

    monkeypatch.setattr(ssd, "hard_negative_mining", spy)
    # a tiny box no default box reaches with IoU 0.5 still gets its best one
    head_loss(ssd_head(), [instances([[30, 30, 34, 33], [0, 0, 40, 40]], [0, 1])])
    num_positive = int(seen["positive"].sum())
    assert num_positive >= 2
    assert int(seen["kept"].sum()) == 3 * num_positive


SMOKE = {
    "yolo": "configs/model/yolo_tiny.yaml",
    "ssd": "configs/model/ssd_tiny.yaml",
}


@pytest.mark.parametrize("family", SMOKE)
def test_two_iterations_and_predictions_in_original_coordinates(family):
    from detseg.data import ShapesDataset

    torch.manual_seed(0)
    node = load_node(SMOKE[family])
    node.num_classes = 3
    node.head.score_threshold = 0.0  # untrained scores are low; boxes must still come out
    model = build_model(node)
    dataset = ShapesDataset(num_images=2, image_size=96)
    samples = [dataset[0], dataset[1]]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        losses = model.loss(samples)
        assert all(math.isfinite(v.item()) for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    (pred,) = model.eval().predict(samples[:1])
    assert pred.image_size == (96, 96) and len(pred) > 0
    assert pred.boxes.tensor.min() >= 0 and pred.boxes.tensor.max() <= 96
    # the same pixels from an original of 192 x 288 (h x w): the same detections, x 3 in x, x 2 in y
    larger = DetSample(samples[0].image, samples[0].image_id, (192, 288), gt=samples[0].gt)
    (scaled,) = model.predict([larger])
    assert scaled.image_size == (192, 288) and torch.equal(scaled.labels, pred.labels)
    torch.testing.assert_close(scaled.boxes.tensor, pred.boxes.tensor * torch.tensor([3.0, 2.0, 3.0, 2.0]))


def test_pan_keeps_names_strides_and_channels():
    from detseg.models.necks.pan import PAN

    shape = {"c3": FeatureSpec(16, 8), "c4": FeatureSpec(32, 16), "c5": FeatureSpec(64, 32)}
    pan = PAN(shape, ["c3", "c4", "c5"], out_channels=24)
    out = pan({"c3": torch.randn(1, 16, 12, 12), "c4": torch.randn(1, 32, 6, 6), "c5": torch.randn(1, 64, 3, 3)})
    assert {k: tuple(v.shape) for k, v in out.items()} == {"p3": (1, 24, 12, 12), "p4": (1, 24, 6, 6), "p5": (1, 24, 3, 3)}
    assert pan.output_shape() == {"p3": FeatureSpec(24, 8), "p4": FeatureSpec(24, 16), "p5": FeatureSpec(24, 32)}


def test_ssd300_vgg16_has_torchvisions_maps_and_parameter_count():
    from torchvision.models.detection import ssd300_vgg16

    from detseg.models.backbones.ssd_vgg import SSDVGG16

    ours = SSDVGG16().eval()
    with torch.no_grad():
        maps = ours(torch.zeros(1, 3, 300, 300))
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {
        "conv4_3": (512, 38, 38), "fc7": (1024, 19, 19), "conv8_2": (512, 10, 10),
        "conv9_2": (256, 5, 5), "conv10_2": (256, 3, 3), "conv11_2": (256, 1, 1)}
    reference = ssd300_vgg16(weights=None, weights_backbone=None).backbone
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
