"""Every head follows one contract (``forward`` -> raw, ``loss(raw, samples)``,
``predict(raw, samples)``), detectors run ``forward`` once per step, and every head treats a
crowd region (``gt_ignore``) as neither object nor background."""

import inspect

import pytest
import torch

from detseg.models import build_model
from detseg.models.backbones.base import FeatureSpec
from detseg.models.heads import (
    RPN,
    DenseHead,
    ProposalSource,
    RoIHead,
    SSDHead,
    StandardRoIHead,
    YoloV1Head,
)
from detseg.models.heads.yolo_v1 import YoloV1Output
from detseg.ops import box_iou
from detseg.ops.matcher import near_ignore_regions
from detseg.registry import DENSE_HEADS, PROPOSAL_SOURCES, ROI_HEADS
from detseg.structures import Boxes, DetSample, Instances

SIZE = (64, 64)
SHAPES = {"p3": FeatureSpec(8, 8), "p4": FeatureSpec(8, 16)}


def instances(boxes, labels=None) -> Instances:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.zeros(len(boxes), dtype=torch.int64) if labels is None else torch.tensor(labels)
    return Instances(Boxes(boxes), labels, SIZE)


def sample(gt, crowd=None) -> DetSample:
    return DetSample(torch.zeros(3, *SIZE, dtype=torch.uint8), 0, SIZE, gt=instances(gt),
                     gt_ignore=None if crowd is None else instances(crowd))


def features() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"p3": torch.randn(1, 8, 8, 8), "p4": torch.randn(1, 8, 4, 4)}


@pytest.mark.parametrize("registry, base", [(DENSE_HEADS, DenseHead), (PROPOSAL_SOURCES, ProposalSource)])
def test_every_registered_head_subclasses_its_contract_and_keeps_its_signatures(registry, base):
    for name in registry.names():
        head = registry.get(name)
        assert issubclass(head, base), name
        assert list(inspect.signature(head.loss).parameters)[:3] == ["self", "raw", "samples"], name
        assert list(inspect.signature(head.predict).parameters)[:3] == ["self", "raw", "samples"], name


def test_every_registered_roi_head_takes_raw_outputs_in_loss_and_predict():
    for name in ROI_HEADS.names():
        head = ROI_HEADS.get(name)
        assert issubclass(head, RoIHead), name
        assert list(inspect.signature(head.forward).parameters)[:4] == ["self", "features", "proposals", "samples"]
        assert list(inspect.signature(head.loss).parameters)[:3] == ["self", "raw", "samples"], name
        assert list(inspect.signature(head.predict).parameters)[:3] == ["self", "raw", "samples"], name


@pytest.mark.parametrize("config, heads", [
    ("configs/model/ssd_tiny.yaml", ["head"]),
    ("configs/model/yolo_tiny.yaml", ["head"]),
    ("configs/model/yolo_v1_tiny.yaml", ["head"]),
    ("configs/model/mask_rcnn_tiny.yaml", ["proposal_source", "roi_head"]),
    ("configs/model/rcnn_tiny.yaml", ["proposal_source", "roi_head"]),
])
def test_detectors_run_each_head_forward_once_per_loss_and_per_predict(config, heads):
    from detseg.config import load_config
    from detseg.data import ShapesDataset

    torch.manual_seed(0)
    node = load_config(config, ["num_classes=3"])  # with its defaults list
    model = build_model(node)
    data = ShapesDataset(num_images=2, image_size=int(node.get("input_size") or 128))
    samples = [data[0], data[1]]
    calls = {name: 0 for name in heads}
    for name in heads:
        def count(module, args, name=name):
            calls[name] += 1
        getattr(model, name).register_forward_pre_hook(count)
    model.train()
    model.loss(samples)
    assert calls == {name: 1 for name in heads}
    model.eval()
    with torch.no_grad():
        model.predict(samples)
    assert calls == {name: 2 for name in heads}


def crowd_gradient(head, raw, leaf, gt, crowd, mark):
    """Gradient of the head's loss with respect to ``leaf`` at the entries ``mark`` selects,
    with and without the crowd region."""
    grads = []
    for ignore in (crowd, None):
        leaf.grad = None
        losses = head.loss(raw, [sample(gt, ignore)])
        sum(losses.values()).backward(retain_graph=True)
        grads.append(mark(leaf.grad).abs().sum().item())
    return grads


def test_ssd_does_not_mine_crowd_priors_as_background():
    head = SSDHead(SHAPES, 64, ["p3", "p4"], num_classes=2, aspect_ratios=[[2], [2]], min_scale=0.2, max_scale=0.6)
    raw = head(features(), SIZE)
    crowd = [[36.0, 36.0, 60.0, 60.0]]
    near = near_ignore_regions(raw.priors, torch.tensor(crowd))
    assert near.sum() > 0
    logits = raw.class_logits.detach().clone()
    logits[0, near, 0] += 10  # confident objects on the crowd: the hardest negatives, were they negatives
    raw.class_logits = logits.requires_grad_()
    with_crowd, without = crowd_gradient(head, raw, raw.class_logits, [[2, 2, 20, 20]], crowd,
                                         lambda g: g[0, near])
    assert with_crowd == 0 and without > 0


def test_yolo_v1_leaves_confidence_on_a_crowd_region_untaught():
    from detseg.models.heads.yolo_v1 import decode_grid_boxes

    head = YoloV1Head({"c5": FeatureSpec(8, 16)}, 64, "c5", num_classes=2, grid_size=4, head_type="conv")
    grid = head({"c5": features()["p4"]}, SIZE).grid.detach().requires_grad_()
    raw = YoloV1Output(grid, SIZE)
    boxes = decode_grid_boxes(grid.detach()[..., :10].reshape(1, 4, 4, 2, 5)[..., :4], SIZE)
    crowd = [boxes[0, 3, 3, 0].tolist()]
    near = near_ignore_regions(boxes.reshape(-1, 4), torch.tensor(crowd)).view(1, 4, 4, 2)
    confidence = lambda g: g[..., :10].reshape(1, 4, 4, 2, 5)[..., 4][near]
    with_crowd, without = crowd_gradient(head, raw, grid, [[2, 2, 12, 12]], crowd, confidence)
    assert with_crowd == 0 and without > 0


def test_rpn_never_samples_anchors_on_a_crowd_region():
    head = RPN(SHAPES, ["p3", "p4"], [[16], [32]], aspect_ratios=[1.0], batch_size_per_image=100000)
    raw = head(features(), SIZE)
    objectness = [o.detach().requires_grad_() for o in raw.objectness]
    raw.objectness = objectness
    anchors = torch.cat(raw.anchors)
    crowd = [anchors[40].tolist()]
    near = near_ignore_regions(anchors, torch.tensor(crowd))
    grads = []
    for ignore in (crowd, None):
        for o in objectness:
            o.grad = None
        sum(head.loss(raw, [sample([[2, 2, 14, 14]], ignore)]).values()).backward(retain_graph=True)
        grads.append(torch.cat([o.grad for o in objectness], 1)[0, near].abs().sum().item())
    assert grads[0] == 0 and grads[1] > 0


def test_roi_head_never_samples_a_crowd_proposal_as_background():
    head = StandardRoIHead(SHAPES, ["p3", "p4"], num_classes=2, fc_dim=16, batch_size_per_image=100000,
                           positive_fraction=1.0)
    crowd = [[36.0, 36.0, 60.0, 60.0]]
    proposals = [Instances(Boxes(torch.tensor([[37.0, 37.0, 60.0, 59.0], [0.0, 30.0, 20.0, 60.0]])),
                           torch.zeros(2, dtype=torch.int64), SIZE, scores=torch.ones(2))]
    for ignore, expected in ((crowd, 0), (None, 1)):
        raw = head(features(), proposals, [sample([[2, 2, 14, 14]], ignore)])
        on_crowd = box_iou(torch.cat(raw.rois), torch.tensor(crowd)).flatten() >= 0.5
        assert int(on_crowd.sum()) == expected
        assert set(head.loss(raw, [sample([[2, 2, 14, 14]], ignore)])) == {"loss_cls", "loss_box"}


@pytest.mark.parametrize("config, name, message", [
    ("configs/model/ssd_tiny.yaml", "yolo", r"name 'yolo' needs a 'yolo' head, got model.head.name 'ssd'"),
    ("configs/model/yolo_tiny.yaml", "ssd", r"name 'ssd' needs a 'ssd' head, got model.head.name 'yolo'"),
    ("configs/model/faster_rcnn_tiny.yaml", "mask_rcnn", r"name 'mask_rcnn' needs roi_head.mask_head"),
    ("configs/model/faster_rcnn_tiny.yaml", "fast_rcnn", r"name 'fast_rcnn' takes external proposals"),
    ("configs/model/fast_rcnn_tiny.yaml", "faster_rcnn", r"name 'faster_rcnn' needs proposal_source \{name: rpn\}"),
    ("configs/model/mask_rcnn_tiny.yaml", "faster_rcnn", r"name 'faster_rcnn' builds no mask branch"),
    ("configs/model/fast_rcnn_tiny.yaml", "rcnn", r"name 'rcnn' needs roi_head.pooler: crop_warp"),
    ("configs/model/rcnn_tiny.yaml", "fast_rcnn", r"name 'fast_rcnn' pools the image's feature maps"),
    ("configs/model/rcnn_tiny.yaml", "faster_rcnn", r"name 'faster_rcnn' needs proposal_source \{name: rpn\}"),
])
def test_model_names_select_what_they_say(config, name, message):
    from detseg.config import load_config, to_plain
    from detseg.errors import ConfigError

    node = to_plain(load_config(config, ["num_classes=3"]))
    build_model(node)  # as written, it builds
    with pytest.raises(ConfigError, match=message):
        build_model({**node, "name": name})
