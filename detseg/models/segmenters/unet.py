"""U-Net's decoder (Ronneberger et al. 2015)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec
from detseg.models.segmenters.base import SegDecoder, conv_bn_relu
from detseg.registry import SEG_DECODERS


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
