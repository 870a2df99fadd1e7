"""Two-stage detectors: backbone -> neck -> proposal source -> RoI head.

Faster R-CNN is this class with an RPN as the proposal source; Fast R-CNN swaps in
external proposals (selective search or a file) and Mask R-CNN adds a mask branch to the
RoI head, without touching the other parts. R-CNN is Fast R-CNN whose RoI head warps image
crops through the trunk (``pooler: crop_warp``) instead of pooling its feature maps.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from torch import Tensor

from detseg.config import Component, PositiveInt, build
from detseg.errors import ConfigError
from detseg.models.backbones.base import Backbone
from detseg.models.base import Detector
from detseg.models.build import build_trunk, node_name, register_family_member, require_num_classes
from detseg.models.heads.base import ProposalSource, RoIHead
from detseg.models.heads.region_features import ImageFeatures
from detseg.models.necks.fpn import Neck
from detseg.models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, Preprocessor, ResizeConfig
from detseg.registry import BACKBONES, MODELS, NECKS, PROPOSAL_SOURCES, ROI_HEADS
from detseg.structures import DetSample, Instances


class TwoStageDetector(Detector):
    """``loss(samples) -> dict`` of weighted ``loss_*`` terms; ``predict(samples) ->
    list[Instances]`` in each sample's original image coordinates."""


    def __init__(
        self,
        preprocessor: Preprocessor,
        backbone: Backbone,
        neck: Neck | None,
        proposal_source: ProposalSource,
        roi_head: RoIHead,
    ) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.neck = neck
        self.proposal_source = proposal_source
        self.roi_head = roi_head

    @property
    def num_classes(self) -> int:
        return self.roi_head.num_classes

    @property
    def predicts_masks(self) -> bool:
        return self.roi_head.predicts_masks

    @property
    def proposals_in_graph(self) -> bool:
        return self.proposal_source.in_graph

    def trunk(self, images: Tensor) -> dict[str, Tensor]:
        """Backbone, then neck: ``images[B, 3, H, W]`` -> ``{name: Tensor[B, C, h, w]}``."""
        features = self.backbone(images)
        return features if self.neck is None else self.neck(features)

    def features(self, samples: Sequence[DetSample]):
        """The preprocessed batch and what the heads read: the trunk's feature maps, or, for
        an RoI head that crops the image (R-CNN), the image and the trunk to run per crop."""
        batch = self.preprocessor(samples)
        if self.roi_head.reads_image:
            return batch, ImageFeatures(batch.tensor, self.trunk)
        return batch, self.trunk(batch.tensor)

    def loss(self, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        batch, features = self.features(samples)
        samples = batch.samples  # the ground truth at the batch's size (the model may resize)
        first = self.proposal_source(features, batch.padded_size)
        losses = self.proposal_source.loss(first, samples)
        second = self.roi_head(features, self.proposal_source.predict(first, samples, training=True), samples)
        return {**losses, **self.roi_head.loss(second, samples)}

    def predict(self, samples: Sequence[DetSample]) -> list[Instances]:
        batch, features = self.features(samples)
        proposals = self.proposal_source.predict(self.proposal_source(features, batch.padded_size), batch.samples)
        detections = self.roi_head.predict(self.roi_head(features, proposals), batch.samples,
                                           output_sizes=[s.orig_size for s in samples])
        return [d.to("cpu") for d in detections]


def build_faster_rcnn(
    backbone: Component(BACKBONES),
    proposal_source: Component(PROPOSAL_SOURCES),
    roi_head: Component(ROI_HEADS),
    num_classes: PositiveInt | None = None,
    neck: Component(NECKS) | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
    resize: ResizeConfig | None = None,
    size_divisibility: int | None = None,
) -> TwoStageDetector:
    """Faster R-CNN (Ren et al. 2015): the proposal source is normally ``{name: rpn}``.
    Mask R-CNN (He et al. 2017) is the same with ``roi_head.mask_head`` set.

    R-CNN (Girshick et al. 2014) takes external proposals and an RoI head with ``pooler:
    crop_warp``, which runs the trunk on each warped region instead of on the image.

    ``resize`` resizes inside the model as torchvision does (its zoo configs set it);
    ``size_divisibility`` pads to a multiple of this (default: the backbone's largest stride;
    1 when the trunk runs on crops). ``num_classes``: object classes without background,
    passed to the RoI head (by default the data set's count, see
    :func:`detseg.experiment.build_model_for`)."""
    num_classes = require_num_classes(num_classes)
    backbone_module, neck_module, shape = build_trunk(backbone, neck)
    source = build(proposal_source, PROPOSAL_SOURCES, "model.proposal_source", input_shape=shape)
    head = build(roi_head, ROI_HEADS, "model.roi_head", input_shape=shape, num_classes=num_classes)
    if head.reads_image and source.in_graph:
        raise ConfigError("model.roi_head: pooler 'crop_warp' runs the trunk on region crops, so there are no "
                          "feature maps of the whole image for an RPN; take external proposals (proposal_source "
                          "selective_search or precomputed)")
    divisor = size_divisibility or (1 if head.reads_image else backbone_module.size_divisibility)
    return TwoStageDetector(Preprocessor(pixel_mean, pixel_std, divisor, resize), backbone_module, neck_module,
                            source, head)


def _has_mask_head(kwargs: dict) -> bool:
    return isinstance(kwargs["roi_head"], dict) and kwargs["roi_head"].get("mask_head") is not None


def _crops_image(kwargs: dict) -> bool:
    """Whether the RoI head node has ``pooler: crop_warp`` (given, or its head's default)."""
    node = kwargs["roi_head"]
    if not isinstance(node, dict):
        return False
    default = inspect.signature(ROI_HEADS.get(node_name(node), where="model.roi_head.name")).parameters["pooler"]
    return node.get("pooler", default.default) == "crop_warp"


def _faster_rcnn_problem(kwargs: dict) -> str | None:
    if node_name(kwargs["proposal_source"]) != "rpn":
        return (f"needs proposal_source {{name: rpn}}, got '{node_name(kwargs['proposal_source'])}' "
                f"(external proposals make a fast_rcnn)")
    return "builds no mask branch; with roi_head.mask_head, use name: mask_rcnn" if _has_mask_head(kwargs) else None


def _fast_rcnn_problem(kwargs: dict) -> str | None:
    if node_name(kwargs["proposal_source"]) == "rpn":
        return "takes external proposals (selective_search or precomputed); an RPN makes a faster_rcnn"
    if _crops_image(kwargs):
        return "pools the image's feature maps; roi_head.pooler 'crop_warp' makes an rcnn"
    return "builds no mask branch (roi_head.mask_head is for mask_rcnn)" if _has_mask_head(kwargs) else None


def _rcnn_problem(kwargs: dict) -> str | None:
    if node_name(kwargs["proposal_source"]) == "rpn":
        return "takes external proposals (selective_search or precomputed); an RPN makes a faster_rcnn"
    return None if _crops_image(kwargs) else "needs roi_head.pooler: crop_warp (pooled feature maps make a fast_rcnn)"


def _mask_rcnn_problem(kwargs: dict) -> str | None:
    return None if _has_mask_head(kwargs) else "needs roi_head.mask_head (without it, it is a faster_rcnn)"


register_family_member(MODELS, "faster_rcnn", build_faster_rcnn, _faster_rcnn_problem)
register_family_member(MODELS, "fast_rcnn", build_faster_rcnn, _fast_rcnn_problem)
register_family_member(MODELS, "rcnn", build_faster_rcnn, _rcnn_problem)
register_family_member(MODELS, "mask_rcnn", build_faster_rcnn, _mask_rcnn_problem)

