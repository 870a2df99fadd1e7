"""Two-stage detectors: backbone -> neck -> proposal source -> RoI head.

Faster R-CNN is this class with an RPN as the proposal source; Fast R-CNN swaps in
precomputed proposals and Mask R-CNN adds a mask branch to the RoI head, without
touching the other parts.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from detseg.config import Component, PositiveInt, build
from detseg.models.backbones.base import Backbone
from detseg.models.base import Detector
from detseg.models.build import build_trunk, node_name, register_family_member, require_num_classes
from detseg.models.heads.base import ProposalSource
from detseg.models.heads.roi_heads import StandardRoIHead
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
        roi_head: StandardRoIHead,
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
        return self.roi_head.mask_branch is not None

    @property
    def proposals_in_graph(self) -> bool:
        return self.proposal_source.in_graph

    def features(self, samples: Sequence[DetSample]):
        batch = self.preprocessor(samples)
        features = self.backbone(batch.tensor)
        if self.neck is not None:
            features = self.neck(features)
        return batch, features

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

    ``resize`` resizes inside the model as torchvision does (its zoo configs set it);
    ``size_divisibility`` pads to a multiple of this (default: the backbone's largest stride).
    ``num_classes``: object classes without background, passed to the RoI head (by default the
    data set's count, see :func:`detseg.experiment.build_model_for`)."""
    num_classes = require_num_classes(num_classes)
    backbone_module, neck_module, shape = build_trunk(backbone, neck)
    divisor = size_divisibility or backbone_module.size_divisibility
    return TwoStageDetector(
        Preprocessor(pixel_mean, pixel_std, divisor, resize),
        backbone_module,
        neck_module,
        build(proposal_source, PROPOSAL_SOURCES, "model.proposal_source", input_shape=shape),
        build(roi_head, ROI_HEADS, "model.roi_head", input_shape=shape, num_classes=num_classes),
    )


def _has_mask_head(kwargs: dict) -> bool:
    return isinstance(kwargs["roi_head"], dict) and kwargs["roi_head"].get("mask_head") is not None


def _faster_rcnn_problem(kwargs: dict) -> str | None:
    if node_name(kwargs["proposal_source"]) != "rpn":
        return (f"needs proposal_source {{name: rpn}}, got '{node_name(kwargs['proposal_source'])}' "
                f"(external proposals make a fast_rcnn)")
    return "builds no mask branch; with roi_head.mask_head, use name: mask_rcnn" if _has_mask_head(kwargs) else None


def _fast_rcnn_problem(kwargs: dict) -> str | None:
    if node_name(kwargs["proposal_source"]) == "rpn":
        return "takes external proposals (selective_search or precomputed); an RPN makes a faster_rcnn"
    return "builds no mask branch (roi_head.mask_head is for mask_rcnn)" if _has_mask_head(kwargs) else None


def _mask_rcnn_problem(kwargs: dict) -> str | None:
    return None if _has_mask_head(kwargs) else "needs roi_head.mask_head (without it, it is a faster_rcnn)"


register_family_member(MODELS, "faster_rcnn", build_faster_rcnn, _faster_rcnn_problem)
register_family_member(MODELS, "fast_rcnn", build_faster_rcnn, _fast_rcnn_problem)
register_family_member(MODELS, "mask_rcnn", build_faster_rcnn, _mask_rcnn_problem)

