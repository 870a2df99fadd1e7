"""SSD300's VGG-16 (Liu et al. 2016, figure 2): VGG-16 to conv5_3 with pool3 in ceil mode
(a 38 x 38 conv4_3 at 300 px), pool5 as 3x3 stride 1, fc6 as a 3x3 convolution with
dilation 6, fc7 as a 1x1 convolution, then the extra layers conv8_2..conv11_2.

Outputs at 300 x 300: ``conv4_3`` (512 x 38 x 38, L2-normalised per position with a
learned per-channel scale starting at 20, because its activations are much larger than the
later maps'), ``fc7`` (1024 x 19 x 19), ``conv8_2`` (512 x 10 x 10), ``conv9_2`` (256 x 5 x 5),
``conv10_2`` (256 x 3 x 3), ``conv11_2`` (256 x 1 x 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from detseg.models.backbones.base import Backbone, FeatureSpec, load_pretrained
from detseg.registry import BACKBONES

POOL3, POOL4 = 16, 23  # indices in torchvision's vgg16().features


class L2Norm(nn.Module):
    """``scale[c] * x / ||x||_2`` over channels, per position (ParseNet)."""

    def __init__(self, channels: int, initial_scale: float = 20.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), initial_scale))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale.view(1, -1, 1, 1) * F.normalize(x, dim=1)


def _extra(in_channels: int, mid: int, out: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, mid, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, out, 3, stride=stride, padding=padding), nn.ReLU(inplace=True))


@BACKBONES.register("ssd300_vgg16")
class SSDVGG16(Backbone):
    """The six SSD300 maps from VGG-16.

    Args:
        pretrained: a local state dict of torchvision's ``vgg16`` (ImageNet); its conv
            layers are loaded, fc6/fc7 and the extra layers start from Xavier init.
        out_features: maps to return (default: all six).

    Strides are nominal (``8, 16, 32, 64, 100, 300`` at 300 px, the reference
    implementation's steps); SSD's default boxes follow the actual map sizes.
    """

    min_input_size = 300  # the last two extra layers are unpadded 3x3 convolutions
    NAMES = ("conv4_3", "fc7", "conv8_2", "conv9_2", "conv10_2", "conv11_2")
    CHANNELS = (512, 1024, 512, 256, 256, 256)
    STRIDES = (8, 16, 32, 64, 100, 300)

    def __init__(self, pretrained: str | None = None, out_features: list[str] | None = None) -> None:
        super().__init__()
        vgg = torchvision.models.vgg16(weights=None)
        if pretrained:
            load_pretrained(vgg, pretrained, "vgg16")
        layers = vgg.features
        layers[POOL3].ceil_mode = True
        self.conv4_3 = nn.Sequential(*layers[:POOL4])
        self.l2norm = L2Norm(512)
        fc = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),  # fc6, dilated
            nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True),  # fc7
        )
        self.fc7 = nn.Sequential(*layers[POOL4:-1], fc)  # pool4, conv5_1..conv5_3, pool5', fc6, fc7
        self.extras = nn.ModuleList([
            _extra(1024, 256, 512, stride=2, padding=1),  # conv8_2: 10 x 10
            _extra(512, 128, 256, stride=2, padding=1),  # conv9_2: 5 x 5
            _extra(256, 128, 256, stride=1, padding=0),  # conv10_2: 3 x 3
            _extra(256, 128, 256, stride=1, padding=0),  # conv11_2: 1 x 1
        ])
        for module in [*fc.modules(), *self.extras.modules()]:
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.out_features = list(out_features or self.NAMES)
        self._shape = {n: FeatureSpec(c, s) for n, c, s in zip(self.NAMES, self.CHANNELS, self.STRIDES)}
        unknown = set(self.out_features) - set(self.NAMES)
        if unknown:
            raise ValueError(f"ssd300_vgg16: unknown out_features {sorted(unknown)}; choose from {list(self.NAMES)}")

    def output_shape(self) -> dict[str, FeatureSpec]:
        return {name: self._shape[name] for name in self.out_features}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f"ssd300_vgg16 needs inputs of at least {self.min_input_size} x {self.min_input_size} "
                             f"(set model.input_size or model.resize), got {tuple(x.shape[-2:])}")
        x = self.conv4_3(x)
        maps = [self.l2norm(x)]
        x = self.fc7(x)
        maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return {name: m for name, m in zip(self.NAMES, maps) if name in self.out_features}
