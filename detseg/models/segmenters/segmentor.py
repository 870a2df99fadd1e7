"""Semantic segmentation: backbone (encoder) -> decoder -> 1x1 head, one class for every
segmenter (U-Net, FCN, DeepLab v3 with ASPP, Tiramisu), with CE (+ optional soft Dice)
loss and optional sliding-window inference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import Component, NonNegativeFloat, PositiveInt, build
from detseg.constants import IGNORE_INDEX
from detseg.errors import ConfigError
from detseg.models.backbones.base import Backbone
from detseg.models.base import Segmenter
from detseg.models.build import require_num_classes
from detseg.models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, Preprocessor
from detseg.models.segmenters.base import SegDecoder
from detseg.ops import cross_entropy, soft_dice_loss
from detseg.registry import BACKBONES, MODELS, SEG_DECODERS
from detseg.structures import DetSample, SemanticMap


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows of ``window`` pixels every ``stride`` covering ``length``; the last
    one ends at the border. One window at 0 when the image is not larger than it."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


class Segmentor(Segmenter):
    """``loss(samples) -> {loss_seg[, loss_dice]}``; ``predict(samples) -> list[int64[H, W]]``
    at each sample's original size.

    Inputs of any size are padded (bottom and right) to a multiple of the preprocessor's
    ``size_divisibility`` (by default the encoder's largest stride) and the prediction is
    cropped back, so odd sizes such as 97 x 131 work.

    Args:
        num_classes: classes including background (semantic-map values ``0..C-1``).
        dice_weight: weight of the soft Dice loss added to cross-entropy (0: none).
        class_weights: optional per-class CE weights.
        window: sliding-window inference with square windows of this side (None: whole
            image); logits of overlapping windows are averaged.
        window_stride: step between windows (default: ``window * 2 / 3``).
    """

    def __init__(self, preprocessor: Preprocessor, backbone: Backbone, decoder: SegDecoder,
                 num_classes: int, dice_weight: float = 0.0, class_weights: Sequence[float] | None = None,
                 window: int | None = None, window_stride: int | None = None) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.decoder = decoder
        self.head = nn.Identity() if decoder.predicts_scores else nn.Conv2d(decoder.out_channels, num_classes, 1)
        self.num_classes = num_classes
        self.dice_weight = dice_weight
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        if weights is not None and len(weights) != num_classes:
            raise ConfigError(f"model.class_weights has {len(weights)} values for {num_classes} classes")
        self.register_buffer("class_weights", weights, persistent=False)
        if window is not None and window % preprocessor.size_divisibility:
            raise ConfigError(f"model.window {window} must be a multiple of the encoder's stride "
                              f"{preprocessor.size_divisibility}")
        self.window = window
        self.window_stride = window_stride or (window * 2 // 3 if window else None)

    @property
    def any_input_size(self) -> bool:
        return not self.window  # the sliding-window grid is laid out for one size
    def forward_tensor(self, x: Tensor) -> Tensor:
        """Logits ``[B, C, H, W]`` of normalised images ``[B, 3, H, W]`` (H, W multiples of
        ``preprocessor.size_divisibility``)."""
        if self.decoder.needs_indices:
            features, indices = self.backbone.forward_with_indices(x)
            out = self.decoder(features, indices)
        else:
            out = self.decoder(self.backbone(x))
        out = self.head(out)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def logits(self, samples: Sequence[DetSample]) -> Tensor:
        """``[B, C, H, W]`` at the padded batch size."""
        return self.forward_tensor(self.preprocessor(samples).tensor)

    def sliding_window_logits(self, image: Tensor) -> Tensor:
        """Logits ``[1, C, H, W]`` of one normalised image ``[1, 3, H, W]`` from windows of
        ``self.window`` pixels, averaged where they overlap."""
        _, _, height, width = image.shape
        logits = image.new_zeros(1, self.num_classes, height, width)
        counts = image.new_zeros(1, 1, height, width)
        divisor = self.preprocessor.size_divisibility
        for top in window_starts(height, self.window, self.window_stride):
            for left in window_starts(width, self.window, self.window_stride):
                crop = image[..., top:top + self.window, left:left + self.window]
                h, w = crop.shape[-2:]
                padded = F.pad(crop, (0, -(-w // divisor) * divisor - w, 0, -(-h // divisor) * divisor - h))
                logits[..., top:top + h, left:left + w] += self.forward_tensor(padded)[..., :h, :w]
                counts[..., top:top + h, left:left + w] += 1
        return logits / counts

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
    def predict(self, samples: Sequence[DetSample]) -> list[SemanticMap]:
        if self.window:
            logits = [self.sliding_window_logits(self.preprocessor.normalise(s.image)[None]) for s in samples]
        else:
            batch = self.logits(samples)
            logits = [batch[i:i + 1] for i in range(len(samples))]
        out = []
        for image_logits, sample in zip(logits, samples):
            h, w = sample.image_size
            image_logits = image_logits[..., :h, :w]
            if (h, w) != tuple(sample.orig_size):
                image_logits = F.interpolate(image_logits, size=sample.orig_size, mode="bilinear",
                                             align_corners=False)
            out.append(SemanticMap(image_logits[0].argmax(0).cpu()))
        return out


def build_segmentor(backbone, decoder, num_classes: int, dice_weight: float, class_weights, window, window_stride,
                    pixel_mean, pixel_std, size_divisibility: int | None = None) -> Segmentor:
    """Encoder from ``backbone``, decoder from ``decoder`` (given the encoder's shapes and
    the class count), then :class:`Segmentor`; inputs padded to ``size_divisibility``
    (default: the encoder's)."""
    num_classes = require_num_classes(num_classes)
    encoder = build(backbone, BACKBONES, "model.backbone")
    decoder_module = build(decoder, SEG_DECODERS, "model.decoder", input_shape=encoder.output_shape(),
                           model_num_classes=num_classes)
    preprocessor = Preprocessor(pixel_mean, pixel_std, size_divisibility or encoder.size_divisibility)
    return Segmentor(preprocessor, encoder, decoder_module, num_classes, dice_weight, class_weights, window,
                     window_stride)


@MODELS.register("unet")
def build_unet(
    backbone: Component(BACKBONES),
    num_classes: PositiveInt | None = None,
    decoder: Component(SEG_DECODERS) | None = None,
    dice_weight: NonNegativeFloat = 0.0,
    class_weights: list[float] | None = None,
    window: PositiveInt | None = None,
    window_stride: PositiveInt | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
) -> Segmentor:
    """U-Net: any registered backbone as encoder (all its maps are skips), U-Net decoder."""
    return build_segmentor(backbone, decoder or {"name": "unet"}, num_classes, dice_weight, class_weights,
                           window, window_stride, pixel_mean, pixel_std)


@MODELS.register("fcn")
@MODELS.register("deeplabv3")
def build_fcn(
    backbone: Component(BACKBONES),
    decoder: Component(SEG_DECODERS),
    num_classes: PositiveInt | None = None,
    dice_weight: NonNegativeFloat = 0.0,
    class_weights: list[float] | None = None,
    window: PositiveInt | None = None,
    window_stride: PositiveInt | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
    size_divisibility: int | None = None,
) -> Segmentor:
    """FCN (``decoder: {name: fcn, variant: 8s, ...}``) or DeepLab v3 (``decoder: {name: aspp}``
    on a dilated ResNet): backbone -> decoder -> scores.

    ``size_divisibility``: pad inputs to a multiple of it (default: the encoder's largest
    stride). 1 does not pad, as torchvision's segmentation models: their decoders take a
    map of any size, and the scores are up-sampled to the input's size.
    """
    return build_segmentor(backbone, decoder, num_classes, dice_weight, class_weights, window, window_stride,
                           pixel_mean, pixel_std, size_divisibility)
