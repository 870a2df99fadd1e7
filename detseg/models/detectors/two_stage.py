"""Two-stage detectors: backbone -> neck -> proposal source -> RoI head.

Faster R-CNN is this class with an RPN as the proposal source; Fast R-CNN swaps in
precomputed proposals and Mask R-CNN adds a mask branch to the RoI head, without
touching the other parts.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from detseg.config import Component, build
from detseg.models.backbones.base import Backbone
from detseg.models.base import Model
from detseg.models.build import build_trunk
from detseg.models.heads.rpn import ProposalSource
from detseg.models.necks.fpn import Neck
from detseg.models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, Preprocessor, ResizeConfig
from detseg.registry import BACKBONES, MODELS, NECKS, PROPOSAL_SOURCES, ROI_HEADS
from detseg.structures import DetSample, Instances


class TwoStageDetector(Model):
    """``loss(samples) -> dict`` of weighted ``loss_*`` terms; ``predict(samples) ->
    list[Instances]`` in each sample's original image coordinates."""

    task = "detection"

    def __init__(
        self,
        preprocessor: Preprocessor,
        backbone: Backbone,
        neck: Neck | None,
        proposal_source: ProposalSource,
        roi_head: nn.Module,
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

    def features(self, samples: Sequence[DetSample]):
        batch = self.preprocessor(samples)
        features = self.backbone(batch.tensor)
        if self.neck is not None:
            features = self.neck(features)
        return batch, features

    def loss(self, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        batch, features = self.features(samples)
        samples = batch.samples  # the ground truth at the batch's size (the model may resize)
        proposals, losses = self.proposal_source(batch, features, samples, with_loss=True)
        return {**losses, **self.roi_head.loss(features, proposals, samples)}

    def predict(self, samples: Sequence[DetSample]) -> list[Instances]:
        batch, features = self.features(samples)
        proposals, _ = self.proposal_source(batch, features, batch.samples, with_loss=False)
        detections = self.roi_head.predict(features, proposals, output_sizes=[s.orig_size for s in samples])
        return [d.to("cpu") for d in detections]



@MODELS.register("faster_rcnn")
@MODELS.register("fast_rcnn")  # proposal_source {name: selective_search} or {name: precomputed}
@MODELS.register("mask_rcnn")  # Faster R-CNN whose roi_head has a mask_head node
def build_faster_rcnn(
    backbone: Component(BACKBONES),
    proposal_source: Component(PROPOSAL_SOURCES),
    roi_head: Component(ROI_HEADS),
    neck: Component(NECKS) | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
    resize: ResizeConfig | None = None,
    size_divisibility: int | None = None,
) -> TwoStageDetector:
    """Faster R-CNN (Ren et al. 2015): the proposal source is normally ``{name: rpn}``.
    Mask R-CNN (He et al. 2017) is the same with ``roi_head.mask_head`` set.

    ``resize`` resizes inside the model as torchvision does (its zoo configs set it);
    ``size_divisibility`` pads to a multiple of this (default: the backbone's largest stride)."""
    backbone_module, neck_module, shape = build_trunk(backbone, neck)
    divisor = size_divisibility or backbone_module.size_divisibility
    return TwoStageDetector(
        Preprocessor(pixel_mean, pixel_std, divisor, resize),
        backbone_module,
        neck_module,
        build(proposal_source, PROPOSAL_SOURCES, "model.proposal_source", input_shape=shape),
        build(roi_head, ROI_HEADS, "model.roi_head", input_shape=shape),
    )
