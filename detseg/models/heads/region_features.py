"""Region feature extractors: the part of an RoI head that turns boxes into fixed-size features.

- :class:`RoIPooler` pools from the feature maps of the whole image, computed once
  (Fast / Faster / Mask R-CNN, SPP-net): ``roi_align``, ``roi_pool`` or ``spp``;
- :class:`CropWarp` warps each region of the image to a fixed size and runs the trunk
  (backbone, and neck if any) on every crop (R-CNN).

Both return ``[sum K_i, C, S, S]`` for per-image boxes ``[K_i, 4]`` (xyxy pixels of the
batch's input images). :func:`build_region_extractor` makes either from an RoI head's
``pooler`` setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import NonNegativeInt, PositiveInt
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec, select_features, shared_channels
from detseg.ops import roi_align, roi_pool
from detseg.ops.roi import pools_levels_at_once, roi_align_levels
from detseg.structures import Boxes

PoolerKind = Literal["roi_align", "roi_pool", "spp", "crop_warp"]


@dataclass
class ImageFeatures:
    """What a two-stage detector hands its RoI head when the head's extractor reads the image
    (:class:`CropWarp`) instead of feature maps: the normalised ``images[B, 3, H, W]`` and the
    ``trunk`` that maps images to ``{name: Tensor[N, C, h, w]}``."""

    images: Tensor
    trunk: Callable[[Tensor], dict[str, Tensor]]


@dataclass
class CropConfig:
    """The ``roi_head.crop`` node of ``pooler: crop_warp``: each box is widened so that
    ``context_padding`` pixels of context surround it in a ``size x size`` warp (the paper's
    p = 16 at 227); at inference ``batch_size`` crops go through the trunk at once."""

    size: PositiveInt = 224
    context_padding: NonNegativeInt = 16
    batch_size: PositiveInt = 256


class RoIPooler(nn.Module):
    """Fixed-size features for boxes, from one level or from an FPN by box size.

    With several levels, a box of area ``A`` goes to level
    ``k = floor(k0 + log2(sqrt(A) / canonical_size))`` (FPN paper, eq. 1), clamped to the
    available levels.

    Args:
        strides: stride of each level in ``in_features`` order (finest first).
        output_size: side of the pooled grid (7 in Faster R-CNN).
        kind: ``roi_align`` (bilinear, Mask R-CNN), ``roi_pool`` (max, Fast R-CNN) or
            ``spp`` (SPP-net: max pooling into each grid of ``spp_levels``, flattened and
            concatenated; the output is then ``[K, C * sum(l * l), 1, 1]``).
        spp_levels: the pyramid's grid sides for ``spp``.
        sampling_ratio: RoIAlign sample points per bin side; 0 takes ``ceil(roi side / output_size)``
            (adaptive, as detectron2), which is cheapest for small RoIs.
        aligned: RoIAlign's half-pixel correction (Detectron2); torchvision's zoo models
            were trained without it.
    """

    reads_image = False

    def __init__(
        self,
        strides: Sequence[int],
        output_size: int = 7,
        kind: Literal["roi_align", "roi_pool", "spp"] = "roi_align",
        sampling_ratio: NonNegativeInt = 0,
        canonical_size: float = 224.0,
        canonical_level: int = 4,
        spp_levels: Sequence[int] = (1, 2, 4),
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.aligned = aligned
        if kind not in ("roi_align", "roi_pool", "spp"):
            raise ConfigError(f"pooler kind must be 'roi_align', 'roi_pool' or 'spp', got {kind!r}")
        self.spp_levels = list(spp_levels)
        self.strides = list(strides)
        self.levels = [int(math.log2(s)) for s in strides]
        self.output_size = output_size
        self.kind = kind
        self.sampling_ratio = sampling_ratio
        self.canonical_size = canonical_size
        self.canonical_level = canonical_level

    def forward(self, maps: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """``maps`` per level ``[B, C, H, W]``; ``boxes`` per image ``[K_i, 4]`` -> ``[sum K_i, C, S, S]``."""
        all_boxes = torch.cat(boxes)
        if len(maps) == 1 or len(all_boxes) == 0:
            return self._pool(maps[0], boxes, self.strides[0])
        image_index = torch.cat([torch.full_like(b[:, 0], i, dtype=torch.int64) for i, b in enumerate(boxes)])
        areas = Boxes(all_boxes).area().clamp(min=1e-6)
        # the small epsilon keeps a box exactly at a level boundary where torchvision puts it
        level = torch.floor(self.canonical_level + torch.log2(areas.sqrt() / self.canonical_size) + 1e-6)
        level = level.clamp(self.levels[0], self.levels[-1]).long() - self.levels[0]
        if self.kind == "roi_align" and pools_levels_at_once(maps):  # no reordering of the pooled rows
            return roi_align_levels(maps, boxes, level, self.output_size, [1.0 / s for s in self.strides],
                                    self.sampling_ratio, self.aligned)
        pooled, order = [], []
        for k, (feature, stride) in enumerate(zip(maps, self.strides)):
            index = torch.nonzero(level == k).flatten()  # ascending, so grouped by image like _pool's output
            pooled.append(self._pool(feature, [all_boxes[index[image_index[index] == i]] for i in range(len(boxes))],
                                     stride))
            order.append(index)
        pooled = torch.cat(pooled)
        out = torch.zeros_like(pooled)
        out[torch.cat(order)] = pooled  # back to the order of the boxes
        return out

    def output_size_of(self, channels: int) -> int:
        """Numbers per RoI that :meth:`forward` returns for ``channels`` input channels."""
        if self.kind == "spp":
            return channels * sum(level * level for level in self.spp_levels)
        return channels * self.output_size * self.output_size

    def _pool(self, feature: Tensor, boxes: list[Tensor], stride: int) -> Tensor:
        if self.kind == "spp":
            pyramid = [roi_pool(feature, boxes, level, 1.0 / stride).flatten(1) for level in self.spp_levels]
            return torch.cat(pyramid, dim=1)[:, :, None, None]
        if self.kind == "roi_align":
            return roi_align(feature, boxes, self.output_size, 1.0 / stride, self.sampling_ratio, self.aligned)
        return roi_pool(feature, boxes, self.output_size, 1.0 / stride)


def context_boxes(boxes: Tensor, crop_size: int, context_padding: int) -> Tensor:
    """Widen xyxy ``boxes`` so that, warped to ``crop_size``, the original box spans
    ``crop_size - 2 * context_padding`` pixels with ``context_padding`` of context around
    it (the paper's p = 16 at 227)."""
    scale = crop_size / (crop_size - 2 * context_padding)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
    return torch.cat([centre - half, centre + half], dim=1)


class CropWarp(nn.Module):
    """R-CNN's region features (Girshick et al. 2014): each box widened by context and warped
    to ``crop.size x crop.size`` (a batched RoIAlign on the normalised image, which is a
    bilinear warp; outside the image it reads 0, the mean colour, as the paper pads), then the
    trunk on every crop; its ``in_features`` maps, each max-pooled to ``output_size``, are
    concatenated along channels ("pool5"): ``[sum K_i, sum C, output_size, output_size]``.

    In training all crops go through the trunk at once; at inference, per image,
    ``crop.batch_size`` at a time, so that 2000 crops of 224 pixels need not fit in memory.
    """

    reads_image = True
    kind = "crop_warp"

    def __init__(self, in_features: Sequence[str], channels: int, output_size: int, crop: CropConfig) -> None:
        super().__init__()
        if not 0 <= 2 * crop.context_padding < crop.size:
            raise ConfigError(f"roi_head.crop: context_padding {crop.context_padding} leaves no box in a "
                              f"{crop.size}-pixel crop")
        self.in_features = list(in_features)
        self.channels = channels
        self.output_size = output_size
        self.crop = crop

    def forward(self, features: ImageFeatures, boxes: list[Tensor]) -> Tensor:
        if not isinstance(features, ImageFeatures):
            raise TypeError("CropWarp reads the image: the detector must pass ImageFeatures, not feature maps")
        if self.training:
            return self._pool5(self._crops(features.images, boxes), features.trunk)
        pooled = [self._pool5(self._crops(features.images[i:i + 1], [chunk]), features.trunk)
                  for i, image_boxes in enumerate(boxes) for chunk in image_boxes.split(self.crop.batch_size)]
        if not pooled:
            return features.images.new_zeros((0, self.channels, self.output_size, self.output_size))
        return torch.cat(pooled)

    def output_size_of(self, channels: int) -> int:
        return channels * self.output_size * self.output_size

    def _crops(self, images: Tensor, boxes: Sequence[Tensor]) -> Tensor:
        widened = [context_boxes(b, self.crop.size, self.crop.context_padding) for b in boxes]
        return roi_align(images, widened, self.crop.size, 1.0, sampling_ratio=2, aligned=True)

    def _pool5(self, crops: Tensor, trunk: Callable[[Tensor], dict[str, Tensor]]) -> Tensor:
        maps = trunk(crops)
        return torch.cat([F.adaptive_max_pool2d(maps[name], self.output_size) for name in self.in_features], dim=1)


def build_region_extractor(kind: PoolerKind, input_shape: dict[str, FeatureSpec], in_features: Sequence[str],
                           pool_size: int, sampling_ratio: int, aligned: bool, crop: CropConfig | dict | None,
                           owner: str = "roi_head") -> tuple[RoIPooler | CropWarp, int]:
    """The extractor an RoI head's ``pooler`` names, and the channel count of its output.

    ``crop`` (a :class:`CropConfig` node) belongs to ``crop_warp`` and is refused with another
    pooler; ``input_shape`` is the trunk's output, whose ``in_features`` the extractor reads."""
    specs = select_features(input_shape, in_features, owner)
    if kind == "crop_warp":
        crop = crop if isinstance(crop, CropConfig) else CropConfig(**(crop or {}))
        channels = sum(spec.channels for spec in specs.values())
        return CropWarp(in_features, channels, pool_size, crop), channels
    if crop is not None:
        raise ConfigError(f"{owner}.crop is the setting of pooler: crop_warp; pooler '{kind}' pools feature maps")
    channels = shared_channels(specs, owner)
    pooler = RoIPooler([spec.stride for spec in specs.values()], pool_size, kind, sampling_ratio, aligned=aligned)
    return pooler, channels


def extract_regions(extractor: RoIPooler | CropWarp, features: dict[str, Tensor] | ImageFeatures,
                    in_features: Sequence[str], boxes: list[Tensor]) -> Tensor:
    """``[sum K_i, C, S, S]`` features of ``boxes`` by ``extractor``: from the ``in_features``
    maps of ``features``, or from the image crops of :class:`ImageFeatures`."""
    if extractor.reads_image:
        return extractor(features, boxes)
    return extractor([features[name] for name in in_features], boxes)


__all__ = ["CropConfig", "CropWarp", "ImageFeatures", "PoolerKind", "RoIPooler", "build_region_extractor",
           "context_boxes", "extract_regions"]
