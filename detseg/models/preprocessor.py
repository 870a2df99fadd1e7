"""Normalise and pad a list of samples into one batch tensor; map predictions back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.structures import DetSample, Instances

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class ImageBatch:
    """``tensor[B, 3, H, W]`` normalised and zero-padded at the bottom/right;
    ``image_sizes[i] = (h, w)`` of image ``i`` before padding."""

    tensor: Tensor
    image_sizes: list[tuple[int, int]]


class Preprocessor(nn.Module):
    """``(uint8 RGB - mean) / std``, then pad every image to a common size divisible by
    ``size_divisibility``. Resizing is not done here; it belongs to the data transforms.

    Args:
        pixel_mean: per-channel mean in 0..255 RGB.
        pixel_std: per-channel standard deviation in 0..255 RGB.
    """

    def __init__(
        self,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
        size_divisibility: int = 32,
    ) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), persistent=False)
        self.size_divisibility = size_divisibility

    def forward(self, samples: Sequence[DetSample]) -> ImageBatch:
        device = self.pixel_mean.device
        sizes = [s.image_size for s in samples]
        divisor = self.size_divisibility
        # rounded up with non-negative operands only: ONNX's integer Div truncates
        height = (max(h for h, _ in sizes) + divisor - 1) // divisor * divisor
        width = (max(w for _, w in sizes) + divisor - 1) // divisor * divisor
        padded = []
        for sample in samples:
            image = (sample.image.to(device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std
            # F.pad with sizes read off the tensors: a traced export keeps the image size dynamic
            padded.append(F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1])))
        return ImageBatch(torch.stack(padded), sizes)


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
