"""Normalise, optionally resize, and pad a list of samples into one batch tensor; map
predictions back."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.errors import ConfigError
from detseg.structures import DetSample, Instances

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class ResizeConfig:
    """The model's own resize, as torchvision's detection models do it (``GeneralizedRCNNTransform``).

    Either ``fixed_size: [height, width]`` (SSD: every image to 300 x 300), or the shorter
    side to ``min_size`` and the longer side at most ``max_size``, aspect kept (Faster R-CNN:
    800 / 1333). A list of ``min_size`` values picks one at random per training image (the
    last one at inference). Bilinear, ``align_corners=False``, on the normalised image.
    Most detseg configs resize in the data transforms instead and leave this unset.
    """

    min_size: int | list[int] | None = None
    max_size: int | None = None
    fixed_size: list[int] | None = None

    def __post_init__(self) -> None:
        if (self.fixed_size is None) == (self.min_size is None):
            raise ConfigError("model.resize: give either fixed_size: [height, width] or min_size (and max_size)")
        if self.min_size is not None and self.max_size is None:
            raise ConfigError("model.resize: min_size needs max_size")

    def size_for(self, height: int, width: int, training: bool) -> tuple[list[int] | None, float | None]:
        """``(size, None)`` for a fixed size, else ``(None, scale factor)``."""
        if self.fixed_size is not None:
            return list(self.fixed_size), None
        sizes = self.min_size if isinstance(self.min_size, list) else [self.min_size]
        target = random.choice(sizes) if training else sizes[-1]
        return None, min(float(target) / min(height, width), float(self.max_size) / max(height, width))


def as_resize(resize: ResizeConfig | dict | None) -> ResizeConfig | None:
    """A ``resize`` config node as :class:`ResizeConfig`."""
    return ResizeConfig(**resize) if isinstance(resize, dict) else resize


@dataclass
class ImageBatch:
    """``tensor[B, 3, H, W]`` normalised and zero-padded at the bottom/right;
    ``image_sizes[i] = (h, w)`` of image ``i`` before padding. ``samples`` are the input
    samples with their ground truth in the batch's coordinates (the same objects when the
    model does not resize)."""

    tensor: Tensor
    image_sizes: list[tuple[int, int]]
    samples: list[DetSample] | None = None

    @property
    def padded_size(self) -> tuple[int, int]:
        """``(H, W)`` of the padded batch, which anchors and priors are laid on."""
        return self.tensor.shape[-2], self.tensor.shape[-1]


class Preprocessor(nn.Module):
    """``(uint8 RGB - mean) / std``, then pad every image to a common size divisible by
    ``size_divisibility``. Resizing is not done here; it belongs to the data transforms.

    Args:
        pixel_mean: per-channel mean in 0..255 RGB.
        pixel_std: per-channel standard deviation in 0..255 RGB.
        resize: an optional resize inside the model (see :class:`ResizeConfig`); the
            ground truth of the returned ``batch.samples`` is resized with the images.
    """

    def __init__(
        self,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
        size_divisibility: int = 32,
        resize: ResizeConfig | dict | None = None,
    ) -> None:
        super().__init__()
        # kept in 0..1 units and applied to image / 255, as torchvision does, so that a zoo
        # model sees its inputs to the last bit
        self.register_buffer("unit_mean", torch.tensor([m / 255 for m in pixel_mean]).view(3, 1, 1), persistent=False)
        self.register_buffer("unit_std", torch.tensor([s / 255 for s in pixel_std]).view(3, 1, 1), persistent=False)
        self.size_divisibility = size_divisibility
        self.resize = as_resize(resize)

    def forward(self, samples: Sequence[DetSample]) -> ImageBatch:
        images = [self.normalise(s.image) for s in samples]
        samples = list(samples)
        if self.resize is not None:
            images = [self._resize(image) for image in images]
            samples = [resize_sample(s, image) for s, image in zip(samples, images)]
        sizes = [(image.shape[1], image.shape[2]) for image in images]
        divisor = self.size_divisibility
        # rounded up with non-negative operands only: ONNX's integer Div truncates
        height = (max(h for h, _ in sizes) + divisor - 1) // divisor * divisor
        width = (max(w for _, w in sizes) + divisor - 1) // divisor * divisor
        # F.pad with sizes read off the tensors: a traced export keeps the image size dynamic
        padded = [F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1])) for image in images]
        return ImageBatch(torch.stack(padded), sizes, samples)

    def normalise(self, image: Tensor) -> Tensor:
        """``uint8[3, H, W]`` RGB -> ``float[3, H, W]`` normalised, on this module's device."""
        return (image.to(self.unit_mean.device, non_blocking=True).float() / 255 - self.unit_mean) / self.unit_std

    def _resize(self, image: Tensor) -> Tensor:
        size, scale = self.resize.size_for(int(image.shape[1]), int(image.shape[2]), self.training)
        return F.interpolate(image[None], size=size, scale_factor=scale, mode="bilinear",
                             recompute_scale_factor=scale is not None, align_corners=False)[0]


def resize_sample(sample: DetSample, image: Tensor) -> DetSample:
    """``sample`` at the size of ``image`` (its resized, normalised image): boxes scaled,
    masks and semantic maps resized by nearest neighbour."""
    (h, w), (new_h, new_w) = sample.image_size, (image.shape[1], image.shape[2])
    if (h, w) == (new_h, new_w):
        return DetSample(image, sample.image_id, sample.orig_size, sample.gt, sample.gt_ignore,
                         sample.gt_sem_seg, sample.proposals)

    def instances(inst: Instances | None) -> Instances | None:
        if inst is None:
            return None
        masks = inst.masks
        if masks is not None:
            masks = F.interpolate(masks[:, None].float(), size=(new_h, new_w), mode="nearest")[:, 0] > 0.5
        return Instances(inst.boxes.scale(new_w / w, new_h / h), inst.labels, (new_h, new_w), inst.scores, masks)

    sem_seg = sample.gt_sem_seg
    if sem_seg is not None:
        sem_seg = F.interpolate(sem_seg[None, None].float(), size=(new_h, new_w), mode="nearest")[0, 0].long()
    return DetSample(image, sample.image_id, sample.orig_size, instances(sample.gt), instances(sample.gt_ignore),
                     sem_seg, instances(sample.proposals))


def rescale_instances(instances: Instances, orig_size: tuple[int, int]) -> Instances:
    """Boxes (and masks) from the transformed image's coordinates to the original image's."""
    h, w = instances.image_size
    oh, ow = orig_size
    if (h, w) == (oh, ow):
        return instances
    boxes = instances.boxes.scale(ow / w, oh / h).clip(orig_size)
    masks = None
    if instances.masks is not None:
        masks = F.interpolate(instances.masks[:, None].float(), size=orig_size, mode="nearest")[:, 0] > 0.5
    return Instances(boxes, instances.labels, orig_size, scores=instances.scores, masks=masks)
