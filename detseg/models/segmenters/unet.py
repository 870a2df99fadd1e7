"""Semantic segmentation: backbone (encoder) -> decoder -> 1x1 head, and U-Net's decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import Component, build
from detseg.constants import IGNORE_INDEX
from detseg.errors import ConfigError
from detseg.models.backbones.base import Backbone, FeatureSpec
from detseg.models.base import Model
from detseg.models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, Preprocessor
from detseg.ops import cross_entropy, soft_dice_loss
from detseg.registry import BACKBONES, MODELS, SEG_DECODERS
from detseg.structures import DetSample


class SegDecoder(nn.Module):
    """``forward(features dict) -> Tensor[B, out_channels, H/s, W/s]``; ``output_stride`` = s."""

    out_channels: int
    output_stride: int


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


@SEG_DECODERS.register("unet")
class UNetDecoder(SegDecoder):
    """Ronneberger et al. 2015: from the coarsest map up, upsample x2, concatenate the
    skip of the same stride, two 3x3 convs; repeated for every finer backbone map.

    Args:
        input_shape: the encoder's output shape (supplied by the model builder).
        channels: decoder width at each step, coarse to fine (one per skip).
        upsample: ``bilinear`` or ``transposed`` (learned 2x2 stride-2 deconvolution).
    """

    def __init__(self, input_shape: dict[str, FeatureSpec], channels: Sequence[int] = (128, 64, 32, 16),
                 upsample: str = "bilinear") -> None:
        super().__init__()
        if upsample not in ("bilinear", "transposed"):
            raise ConfigError(f"unet decoder: upsample must be 'bilinear' or 'transposed', got {upsample!r}")
        names = sorted(input_shape, key=lambda n: input_shape[n].stride)  # fine to coarse
        if len(channels) != len(names) - 1:
            raise ConfigError(f"unet decoder: {len(channels)} channels for {len(names) - 1} up steps "
                              f"(encoder maps {names})")
        self.names = names
        self.upsample = upsample
        previous = input_shape[names[-1]].channels
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for width, skip in zip(channels, reversed(names[:-1])):
            self.ups.append(nn.ConvTranspose2d(previous, previous, 2, stride=2) if upsample == "transposed"
                            else nn.Identity())
            self.blocks.append(nn.Sequential(conv_bn_relu(previous + input_shape[skip].channels, width),
                                             conv_bn_relu(width, width)))
            previous = width
        self.out_channels = previous
        self.output_stride = input_shape[names[0]].stride

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x = features[self.names[-1]]
        for up, block, skip in zip(self.ups, self.blocks, reversed(self.names[:-1])):
            target = features[skip]
            x = up(x) if self.upsample == "transposed" else x
            if x.shape[-2:] != target.shape[-2:]:
                x = F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, target], dim=1))
        return x


class Segmentor(Model):
    """``loss(samples) -> {loss_seg[, loss_dice]}``; ``predict(samples) -> list[int64[H, W]]``
    at each sample's original size.

    Args:
        num_classes: classes including background (semantic-map values ``0..C-1``).
        dice_weight: weight of the soft Dice loss added to cross-entropy (0: none).
        class_weights: optional per-class CE weights.
    """

    task = "segmentation"

    def __init__(self, preprocessor: Preprocessor, backbone: Backbone, decoder: SegDecoder,
                 num_classes: int, dice_weight: float = 0.0, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.decoder = decoder
        self.head = nn.Conv2d(decoder.out_channels, num_classes, 1)
        self.num_classes = num_classes
        self.dice_weight = dice_weight
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)

    def logits(self, samples: Sequence[DetSample]) -> Tensor:
        """``[B, C, H, W]`` at the padded batch size."""
        batch = self.preprocessor(samples)
        x = self.head(self.decoder(self.backbone(batch.tensor)))
        return F.interpolate(x, size=batch.tensor.shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        logits = self.logits(samples)
        target = torch.full((len(samples), *logits.shape[-2:]), IGNORE_INDEX, dtype=torch.int64,
                            device=logits.device)
        for i, sample in enumerate(samples):
            if sample.gt_sem_seg is None:
                raise ConfigError(f"image {sample.image_id} has no semantic map; segmentation needs one")
            h, w = sample.gt_sem_seg.shape
            target[i, :h, :w] = sample.gt_sem_seg
        losses = {"loss_seg": cross_entropy(logits, target, weight=self.class_weights)}
        if self.dice_weight:
            losses["loss_dice"] = self.dice_weight * soft_dice_loss(logits, target)
        return losses

    @torch.no_grad()
    def predict(self, samples: Sequence[DetSample]) -> list[Tensor]:
        logits = self.logits(samples)
        out = []
        for i, sample in enumerate(samples):
            h, w = sample.image_size
            image_logits = logits[i:i + 1, :, :h, :w]
            if (h, w) != tuple(sample.orig_size):
                image_logits = F.interpolate(image_logits, size=sample.orig_size, mode="bilinear",
                                             align_corners=False)
            out.append(image_logits[0].argmax(0).cpu())
        return out



@MODELS.register("unet")
def build_unet(
    backbone: Component(BACKBONES),
    num_classes: int,
    decoder: Component(SEG_DECODERS) | None = None,
    dice_weight: float = 0.0,
    class_weights: list[float] | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
) -> Segmentor:
    """U-Net: any registered backbone as encoder (all its maps are skips), U-Net decoder."""
    encoder = build(backbone, BACKBONES, "model.backbone")
    decoder_module = build(decoder or {"name": "unet"}, SEG_DECODERS, "model.decoder",
                           input_shape=encoder.output_shape())
    return Segmentor(Preprocessor(pixel_mean, pixel_std, encoder.size_divisibility), encoder, decoder_module,
                     num_classes, dice_weight, class_weights)
