"""The contract every head follows.

One forward pass per step; the loss and the predictions both read its raw outputs::

    raw = head(features, ...)                 # a dataclass of tensors, one type per head kind
    losses = head.loss(raw, samples)          # dict of already weighted ``loss_*`` terms
    detections = head.predict(raw, samples)   # list[Instances], one per sample

``features`` is the backbone's (or neck's) ``{name: Tensor[N, C, H, W]}``; ``samples`` are
the batch's :class:`~detseg.structures.DetSample` with their ground truth (``gt``) and
crowd / difficult regions (``gt_ignore``) in the batch's input coordinates (xyxy pixels).
Predictions come back in the same coordinates; the detector maps them to each original image.

Heads score a crowd region's predictions neither as objects nor as background
(:func:`detseg.ops.matcher.ignore_near_regions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from detseg.structures import DetSample, Instances


def ignore_boxes(sample: DetSample) -> Tensor | None:
    """The sample's crowd / difficult regions, ``[R, 4]`` xyxy, or ``None``."""
    return None if sample.gt_ignore is None else sample.gt_ignore.boxes.tensor


class DenseHead(nn.Module):
    """A one-stage detector's head: ``forward(features, image_size) -> raw``, where
    ``image_size`` is the padded batch's ``(height, width)`` that priors are laid on, and
    :meth:`predict` returns detections at that size."""

    num_classes: int

    def forward(self, features: dict[str, Tensor], image_size: tuple[int, int]) -> Any:
        raise NotImplementedError

    def loss(self, raw: Any, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        raise NotImplementedError

    def predict(self, raw: Any, samples: Sequence[DetSample]) -> list[Instances]:
        raise NotImplementedError


class ProposalSource(nn.Module):
    """A two-stage detector's first stage: ``forward(features, image_size) -> raw``
    (``None`` for sources that do not learn), ``loss(raw, samples)`` (empty for those), and
    ``predict(raw, samples, training)``: per sample, proposal boxes with objectness
    ``scores`` in the sample's coordinates; ``training`` selects the training counts.
    ``in_graph``: False for sources that run outside the network (files, selective search)."""

    in_graph = True

    def forward(self, features: dict[str, Tensor], image_size: tuple[int, int]) -> Any:
        return None

    def loss(self, raw: Any, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        return {}

    def predict(self, raw: Any, samples: Sequence[DetSample], training: bool = False) -> list[Instances]:
        raise NotImplementedError


class RoIHead(nn.Module):
    """A two-stage detector's second stage: ``forward(features, proposals, samples=None) ->
    raw`` scores and refines the proposals (given ``samples``, the training step, it first
    samples RoIs among proposals and ground truth); ``loss(raw, samples)``;
    ``predict(raw, samples, output_sizes=None)`` returns detections at ``output_sizes`` (each
    original image's size) or at the proposals' size.

    ``reads_image``: True when the region features come from image crops (R-CNN), so the
    detector passes :class:`~detseg.models.heads.region_features.ImageFeatures` instead of
    feature maps."""

    num_classes: int

    @property
    def reads_image(self) -> bool:
        return False

    @property
    def predicts_masks(self) -> bool:
        return False

    def forward(self, features: Any, proposals: Sequence[Instances],
                samples: Sequence[DetSample] | None = None) -> Any:
        raise NotImplementedError

    def loss(self, raw: Any, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        raise NotImplementedError

    def predict(self, raw: Any, samples: Sequence[DetSample],
                output_sizes: Sequence[tuple[int, int]] | None = None) -> list[Instances]:
        raise NotImplementedError


__all__ = ["DenseHead", "ProposalSource", "RoIHead", "ignore_boxes"]
