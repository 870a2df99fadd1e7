"""One-stage detectors: preprocessor -> backbone -> optional neck -> dense head.

The dense head (``model.head``, from the ``DENSE_HEADS`` registry) turns feature maps into
boxes directly. These detectors take a fixed input (YOLO v1's grid, SSD300): ``input_size``
resizes every image to ``input_size x input_size`` (aspect ratio not kept, as in both
papers) inside the model, and boxes are mapped back. ``resize`` is the general form, as
torchvision's transform does it (the zoo configs set it).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from detseg.config import Component, PositiveInt, build
from detseg.errors import ConfigError
from detseg.models.backbones.base import Backbone
from detseg.models.base import Detector
from detseg.models.build import build_trunk, node_name, register_family_member, require_num_classes
from detseg.models.heads.base import DenseHead
from detseg.models.necks.fpn import Neck
from detseg.models.preprocessor import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageBatch,
    Preprocessor,
    ResizeConfig,
    as_resize,
    rescale_instances,
)
from detseg.registry import BACKBONES, DENSE_HEADS, MODELS, NECKS
from detseg.structures import DetSample, Instances


class OneStageDetector(Detector):
    """``loss(samples) -> dict`` of ``loss_*`` terms; ``predict(samples) -> list[Instances]``
    in each sample's original image coordinates."""


    def __init__(self, preprocessor: Preprocessor, backbone: Backbone, neck: Neck | None, head: DenseHead) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.neck = neck
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def features(self, samples: Sequence[DetSample]) -> tuple[ImageBatch, dict[str, Tensor]]:
        """Normalise, resize and pad (the preprocessor), then backbone (+ neck)."""
        batch = self.preprocessor(samples)
        features = self.backbone(batch.tensor)
        if self.neck is not None:
            features = self.neck(features)
        return batch, features

    def loss(self, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        batch, features = self.features(samples)
        raw = self.head(features, batch.padded_size)
        return self.head.loss(raw, batch.samples)  # ground truth at the input size

    def predict(self, samples: Sequence[DetSample]) -> list[Instances]:
        batch, features = self.features(samples)
        detections = self.head.predict(self.head(features, batch.padded_size), batch.samples)
        # each image's part of the (padded) batch is a rescaled image: one scaling maps to the original
        return [rescale_instances(_within(d.to("cpu"), image_size), s.orig_size)
                for d, image_size, s in zip(detections, batch.image_sizes, samples)]


def _within(detections: Instances, image_size: tuple[int, int]) -> Instances:
    """``detections`` on the padded batch, clipped to the image of ``image_size`` in it."""
    if detections.image_size == image_size:
        return detections
    return Instances(detections.boxes.clip(image_size), detections.labels, image_size, scores=detections.scores)


def build_one_stage(
    backbone: Component(BACKBONES),
    head: Component(DENSE_HEADS),
    num_classes: PositiveInt | None = None,
    input_size: int | None = None,
    neck: Component(NECKS) | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
    resize: ResizeConfig | None = None,
    size_divisibility: int = 1,
) -> OneStageDetector:
    """A one-stage detector; ``head`` names the family (``yolo_v1``, ``yolo``, ``ssd``).

    Give either ``input_size`` (images resized to that square) or ``resize`` (see
    :class:`~detseg.models.preprocessor.ResizeConfig`); ``size_divisibility`` pads the batch
    to a multiple of this. The heads are built for ``input_size``, or the largest side
    ``resize`` gives, and ``num_classes`` object classes (without background; by default the
    data set's count, see :func:`detseg.experiment.build_model_for`)."""
    num_classes = require_num_classes(num_classes)
    if (input_size is None) == (resize is None):
        raise ConfigError("model: give input_size (every image resized to that square) or resize "
                          "({fixed_size: [height, width]} or {min_size, max_size}), one of them")
    resize = as_resize(resize) or ResizeConfig(fixed_size=[input_size, input_size])
    largest_side = max(resize.fixed_size) if resize.fixed_size else resize.max_size
    backbone_module, neck_module, shape = build_trunk(backbone, neck)
    return OneStageDetector(
        Preprocessor(pixel_mean, pixel_std, size_divisibility, resize), backbone_module, neck_module,
        build(head, DENSE_HEADS, "model.head", input_shape=shape, model_input_size=largest_side,
              num_classes=num_classes),
    )


def _head_of_family(family: str):
    """The check that model ``name: family`` has a head of that family."""

    def problem(kwargs: dict) -> str | None:
        head = node_name(kwargs["head"])
        if head == family:
            return None
        return f"needs a '{family}' head, got model.head.name '{head}' (use name: {head} for that head)"

    return problem


for _family in ("ssd", "yolo", "yolo_v1"):
    register_family_member(MODELS, _family, build_one_stage, _head_of_family(_family))
