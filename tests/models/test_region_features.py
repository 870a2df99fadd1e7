"""Region feature extractors as swappable parts of the RoI heads: R-CNN's warped crops
(``crop_warp``) and the poolers of the Fast R-CNN line, under either RoI head, and the
combinations that cannot work refused by name."""

import pytest
import torch
from torch import nn

from detseg.config import load_config, to_plain
from detseg.errors import ConfigError
from detseg.models import build_model
from detseg.models.backbones.base import FeatureSpec
from detseg.models.heads import RCNNRoIHead, StandardRoIHead
from detseg.models.heads.region_features import (
    CropConfig,
    CropWarp,
    ImageFeatures,
    build_region_extractor,
)
from detseg.structures import Boxes, Instances


def trunk(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """A fixed, BatchNorm-free trunk: a stride-4 average pool and a stride-8 one."""
    return {"a": nn.functional.avg_pool2d(images, 4), "b": nn.functional.avg_pool2d(images, 8)}


SHAPE = {"a": FeatureSpec(3, 4), "b": FeatureSpec(3, 8)}


def test_crop_warp_gives_the_same_features_in_chunks_as_all_at_once():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 40, 50)
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 30.0], [5.0, 5.0, 45.0, 35.0], [10.0, 2.0, 12.0, 9.0]]),
             torch.tensor([[1.0, 1.0, 49.0, 39.0], [30.0, 20.0, 50.0, 40.0]])]
    extractor = CropWarp(["a", "b"], 6, 2, CropConfig(size=16, context_padding=2, batch_size=2))
    together = extractor.train()(ImageFeatures(images, trunk), boxes)
    chunked = extractor.eval()(ImageFeatures(images, trunk), boxes)
    assert together.shape == (5, 6, 2, 2)  # both levels, each max-pooled to 2x2, along channels
    torch.testing.assert_close(chunked, together)
    # each box is warped from its own image: the second image's crops differ from the first's
    alone = extractor(ImageFeatures(images[1:], trunk), [boxes[1]])
    torch.testing.assert_close(alone, together[3:])


def test_crop_warp_of_no_boxes_is_empty_with_the_pool5_shape():
    extractor = CropWarp(["a"], 3, 2, CropConfig(size=16, context_padding=2)).eval()
    out = extractor(ImageFeatures(torch.zeros(1, 3, 20, 20), trunk), [torch.zeros(0, 4)])
    assert out.shape == (0, 3, 2, 2)


@pytest.mark.parametrize("head", [StandardRoIHead, RCNNRoIHead])
@pytest.mark.parametrize("pooler", ["roi_align", "roi_pool", "spp", "crop_warp"])
def test_every_extractor_plugs_into_every_roi_head(head, pooler):
    torch.manual_seed(0)
    in_features = ["a"]
    module = head(SHAPE, in_features, num_classes=2, pooler=pooler, pool_size=2, fc_dim=8,
                  crop={"size": 16, "context_padding": 2} if pooler == "crop_warp" else None).eval()
    images = torch.randn(1, 3, 32, 32)
    features = ImageFeatures(images, trunk) if pooler == "crop_warp" else trunk(images)
    proposals = [Instances(Boxes(torch.tensor([[2.0, 2.0, 20.0, 20.0], [8.0, 4.0, 30.0, 28.0]])),
                           torch.zeros(2, dtype=torch.int64), (32, 32), scores=torch.ones(2))]
    with torch.no_grad():
        raw = module(features, proposals)
    assert raw.class_logits.shape == (2, 3) and raw.box_deltas.shape == (2, 8)
    assert module.reads_image == (pooler == "crop_warp")
    assert len(module.predict(raw, [None])[0]) <= 2 * 2


def test_crop_settings_with_a_feature_map_pooler_are_refused():
    with pytest.raises(ConfigError, match="roi_head.crop is the setting of pooler: crop_warp"):
        build_region_extractor("roi_align", SHAPE, ["a"], 7, 0, True, {"size": 64})


def test_context_padding_that_leaves_no_box_is_refused():
    with pytest.raises(ConfigError, match="context_padding 32 leaves no box in a 64-pixel crop"):
        CropWarp(["a"], 3, 2, CropConfig(size=64, context_padding=32))


def rcnn_tiny() -> dict:
    return to_plain(load_config("configs/model/rcnn_tiny.yaml", ["num_classes=3"]))


def test_crop_warp_with_an_rpn_is_refused():
    node = {**rcnn_tiny(), "name": "faster_rcnn",
            "proposal_source": {"name": "rpn", "in_features": ["c5"], "anchor_sizes": [[32]]}}
    with pytest.raises(ConfigError, match="pooler 'crop_warp' runs the trunk on region crops, so there are no "
                                          "feature maps of the whole image for an RPN"):
        build_model(node)


def test_crop_warp_with_a_mask_branch_is_refused():
    node = rcnn_tiny()
    head = {k: v for k, v in node["roi_head"].items() if k != "classifier"}
    node = {**node, "name": "mask_rcnn", "roi_head": {**head, "name": "standard", "mask_head": {"pool_size": 14}}}
    with pytest.raises(ConfigError, match="the mask branch pools feature maps of the image"):
        build_model(node)
