"""One-stage detectors: preprocessor -> backbone -> optional neck -> dense head.

The dense head (``model.head``, from the ``DENSE_HEADS`` registry) turns feature maps into
boxes directly. Detectors that need a fixed input (YOLO v1's grid, SSD300) set
``input_size``: every image is then resized to ``input_size x input_size`` (aspect ratio not
kept, as in both papers) inside the model, and boxes are mapped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import Component, build
from detseg.models.backbones.base import Backbone
from detseg.models.base import Model
from detseg.models.build import build_trunk
from detseg.models.necks.fpn import Neck
from detseg.models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, Preprocessor, rescale_instances
from detseg.registry import BACKBONES, DENSE_HEADS, MODELS, NECKS
from detseg.structures import DetSample, Instances


class OneStageDetector(Model):
    """``loss(samples) -> dict`` of ``loss_*`` terms; ``predict(samples) -> list[Instances]``
    in each sample's original image coordinates."""

    task = "detection"

    def __init__(self, preprocessor: Preprocessor, backbone: Backbone, neck: Neck | None, head: nn.Module,
                 input_size: int) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.input_size = input_size

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def features(self, samples: Sequence[DetSample]) -> tuple[dict[str, Tensor], tuple[int, int]]:
        """Resize each normalised image to the square input, then backbone (+ neck)."""
        batch = self.preprocessor(samples)
        images = [batch.tensor[i:i + 1, :, :h, :w] for i, (h, w) in enumerate(batch.image_sizes)]
        size = (self.input_size, self.input_size)
        resized = [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in images]
        features = self.backbone(torch.cat(resized))
        if self.neck is not None:
            features = self.neck(features)
        return features, size

    def loss(self, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        features, size = self.features(samples)
        gt = [rescale_instances(Instances(s.gt.boxes, s.gt.labels, s.image_size), size) for s in samples]
        return self.head.loss(features, gt, size)

    def predict(self, samples: Sequence[DetSample]) -> list[Instances]:
        features, size = self.features(samples)
        detections = self.head.predict(features, size)
        # the square input is a rescaled image, so one scaling maps straight to the original
        return [rescale_instances(d.to("cpu"), s.orig_size) for d, s in zip(detections, samples)]


@MODELS.register("ssd")
@MODELS.register("yolo")
@MODELS.register("yolo_v1")
def build_one_stage(
    backbone: Component(BACKBONES),
    head: Component(DENSE_HEADS),
    input_size: int,
    neck: Component(NECKS) | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
) -> OneStageDetector:
    """A one-stage detector; ``head`` names the family (``yolo_v1``, ``yolo``, ``ssd``)."""
    backbone_module, neck_module, shape = build_trunk(backbone, neck)
    return OneStageDetector(
        Preprocessor(pixel_mean, pixel_std, 1), backbone_module, neck_module,
        build(head, DENSE_HEADS, "model.head", input_shape=shape, model_input_size=input_size),
        input_size,
    )
