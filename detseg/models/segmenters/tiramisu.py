"""The One Hundred Layers Tiramisu: FC-DenseNet (Jegou et al., CVPRW 2017).

- a 3x3 convolution to ``first_channels`` (48);
- down path: per step a dense block (``n`` layers of BN-ReLU-3x3 conv-dropout, each adding
  ``growth_rate`` channels and seeing everything before it), whose output (input and new
  maps) is the skip, then a **transition down** (BN-ReLU-1x1 conv-dropout-2x2 max-pool);
- a bottleneck dense block;
- up path: per step a **transition up** (3x3 transposed convolution, stride 2) of only the
  new maps of the previous block (not its input: that keeps the widths in check), concatenated
  with the skip, then a dense block;
- a 1x1 convolution to the classes on the last block's full output.

Named sizes (``depth``): FC-DenseNet56 (growth 12, 4 layers per block), FC-DenseNet67
(growth 16, 5 layers per block) and FC-DenseNet103 (growth 16, 4, 5, 7, 10, 12 layers down,
15 in the bottleneck, mirrored up).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import NonNegativeFloat, PositiveInt, UnitInterval
from detseg.errors import ConfigError
from detseg.models.backbones.base import Backbone, FeatureSpec
from detseg.models.build import require_num_classes
from detseg.models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, Preprocessor
from detseg.models.segmenters.base import SegDecoder
from detseg.models.segmenters.segmentor import Segmentor
from detseg.registry import MODELS

LAYERS = {  # down blocks, bottleneck; the up blocks mirror the down blocks
    56: ([4, 4, 4, 4, 4], 4, 12),
    67: ([5, 5, 5, 5, 5], 5, 16),
    103: ([4, 5, 7, 10, 12], 15, 16),
}


class DenseLayer(nn.Sequential):
    def __init__(self, in_channels: int, growth_rate: int, dropout: float) -> None:
        super().__init__(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, growth_rate, 3, padding=1), nn.Dropout(dropout))


class DenseBlock(nn.Module):
    """``n`` dense layers; returns ``(input + new maps, new maps)`` concatenated on channels."""

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth_rate, growth_rate, dropout)
                                    for i in range(num_layers))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        new = []
        for layer in self.layers:
            new.append(layer(torch.cat([x, *new], 1)))
        new_maps = torch.cat(new, 1)
        return torch.cat([x, new_maps], 1), new_maps


class TransitionDown(nn.Sequential):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1),
                         nn.Dropout(dropout), nn.MaxPool2d(2))


class TiramisuEncoder(Backbone):
    """First convolution, the down path and the bottleneck. Outputs the skips ``skip1..``
    (strides 1, 2, 4, ...) and ``bottleneck``: only the bottleneck's new maps."""

    def __init__(self, down_layers: Sequence[int], bottleneck_layers: int, growth_rate: int,
                 first_channels: int, dropout: float) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, first_channels, 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = first_channels
        self._shape = {}
        for i, n in enumerate(down_layers):
            self.blocks.append(DenseBlock(channels, n, growth_rate, dropout))
            channels += n * growth_rate
            self._shape[f"skip{i + 1}"] = FeatureSpec(channels, 2**i)
            self.downs.append(TransitionDown(channels, dropout))
        self.bottleneck = DenseBlock(channels, bottleneck_layers, growth_rate, dropout)
        self._shape["bottleneck"] = FeatureSpec(bottleneck_layers * growth_rate, 2 ** len(down_layers))

    def output_shape(self) -> dict[str, FeatureSpec]:
        return dict(self._shape)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.first(x)
        out = {}
        for i, (block, down) in enumerate(zip(self.blocks, self.downs)):
            x, _ = block(x)
            out[f"skip{i + 1}"] = x
            x = down(x)
        out["bottleneck"] = self.bottleneck(x)[1]
        return out


class TiramisuDecoder(SegDecoder):
    """The up path: transition up of the previous block's new maps, skip concatenation, dense block."""

    def __init__(self, input_shape: dict[str, FeatureSpec], up_layers: Sequence[int], growth_rate: int,
                 dropout: float) -> None:
        super().__init__()
        skips = [n for n in input_shape if n.startswith("skip")][::-1]  # coarse to fine
        self.skips = skips
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        new_channels = input_shape["bottleneck"].channels
        for skip, n in zip(skips, up_layers):
            self.ups.append(nn.ConvTranspose2d(new_channels, new_channels, 3, stride=2, padding=1, output_padding=1))
            in_channels = new_channels + input_shape[skip].channels
            self.blocks.append(DenseBlock(in_channels, n, growth_rate, dropout))
            new_channels = n * growth_rate
        self.out_channels = in_channels + new_channels
        self.output_stride = 1

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        new = features["bottleneck"]
        for skip, up, block in zip(self.skips, self.ups, self.blocks):
            target = features[skip]
            x = up(new)
            if x.shape[-2:] != target.shape[-2:]:
                x = F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)
            full, new = block(torch.cat([x, target], 1))
        return full


@MODELS.register("tiramisu")
def build_tiramisu(
    num_classes: PositiveInt | None = None,
    depth: int | None = 56,
    down_layers: list[int] | None = None,
    bottleneck_layers: int | None = None,
    growth_rate: PositiveInt | None = None,
    first_channels: PositiveInt = 48,
    dropout: UnitInterval = 0.2,
    dice_weight: NonNegativeFloat = 0.0,
    class_weights: list[float] | None = None,
    window: PositiveInt | None = None,
    window_stride: PositiveInt | None = None,
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
) -> Segmentor:
    """FC-DenseNet ``depth`` 56, 67 or 103 (the paper's), or your own layers with
    ``depth: null`` and ``down_layers``, ``bottleneck_layers``, ``growth_rate``."""
    num_classes = require_num_classes(num_classes)
    if depth is not None:
        if depth not in LAYERS:
            raise ConfigError(f"model.depth must be one of {sorted(LAYERS)} (or null with down_layers), got {depth}")
        named_down, named_bottleneck, named_growth = LAYERS[depth]
        down_layers = down_layers or named_down
        bottleneck_layers = bottleneck_layers or named_bottleneck
        growth_rate = growth_rate or named_growth
    if not down_layers or bottleneck_layers is None or growth_rate is None:
        raise ConfigError("model: with depth null, give down_layers, bottleneck_layers and growth_rate")
    encoder = TiramisuEncoder(down_layers, bottleneck_layers, growth_rate, first_channels, dropout)
    decoder = TiramisuDecoder(encoder.output_shape(), list(reversed(down_layers)), growth_rate, dropout)
    return Segmentor(Preprocessor(pixel_mean, pixel_std, 2 ** len(down_layers)), encoder, decoder, num_classes,
                     dice_weight, class_weights, window, window_stride)
