"""Feature Pyramid Network (Lin et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import PositiveInt
from detseg.models.backbones.base import FeatureSpec, select_features
from detseg.registry import NECKS


class Neck(nn.Module):
    """``forward(dict[name, Tensor]) -> dict[name, Tensor]`` with :meth:`output_shape`."""

    def output_shape(self) -> dict[str, FeatureSpec]:
        raise NotImplementedError


def unique_names(names: list[str]) -> list[str]:
    """``[p5, p5, p6]`` -> ``[p5, p5_1, p6]``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        out.append(name if count == 0 else f"{name}_{count}")
        seen[name] = count + 1
    return out


@NECKS.register("fpn")
class FPN(Neck):
    """Top-down pathway with lateral 1x1 and output 3x3 convolutions.

    Input ``c<k>`` at stride ``2**k`` becomes ``p<k>``; ``extra_p6`` adds ``p6`` by
    stride-2 max pooling of the coarsest output (as in Faster R-CNN with FPN).

    Args:
        input_shape: the backbone's output shape (supplied by the model builder).
        in_features: backbone maps to use, finest first.
        out_channels: channels of every output map.
        extra_p6: also return a stride-doubled map from the coarsest level.
        norm: BatchNorm after every convolution (which then has no bias), as torchvision's
            v2 models.

    Outputs are named ``p<k>`` after their stride ``2**k``. Inputs that share a stride
    (MobileNetV3's last two maps) are named ``p<k>``, ``p<k>_1``, ...
    """

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        in_features: Sequence[str],
        out_channels: PositiveInt = 256,
        extra_p6: bool = False,
        norm: bool = False,
    ) -> None:
        super().__init__()
        select_features(input_shape, in_features, "fpn")
        self.in_features = list(in_features)
        strides = [input_shape[n].stride for n in self.in_features]
        self.out_names = unique_names([f"p{int(math.log2(s))}" for s in strides])

        def conv(in_channels: int, kernel: int) -> nn.Module:
            layer = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=not norm)
            nn.init.kaiming_uniform_(layer.weight, a=1)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
            return nn.Sequential(layer, nn.BatchNorm2d(out_channels)) if norm else layer

        self.lateral = nn.ModuleList(conv(input_shape[n].channels, 1) for n in in_features)
        self.output = nn.ModuleList(conv(out_channels, 3) for _ in in_features)
        self.extra_p6 = extra_p6
        self._shape = {name: FeatureSpec(out_channels, s) for name, s in zip(self.out_names, strides)}
        if extra_p6:
            name = unique_names([*self.out_names, f"p{int(math.log2(strides[-1])) + 1}"])[-1]
            self._shape[name] = FeatureSpec(out_channels, strides[-1] * 2)

    def output_shape(self) -> dict[str, FeatureSpec]:
        return dict(self._shape)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        laterals = [conv(features[n]) for conv, n in zip(self.lateral, self.in_features)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + F.interpolate(merged[0], size=lateral.shape[-2:], mode="nearest"))
        outputs = {name: conv(x) for name, conv, x in zip(self.out_names, self.output, merged)}
        if self.extra_p6:
            name = list(self._shape)[-1]
            outputs[name] = F.max_pool2d(outputs[self.out_names[-1]], kernel_size=1, stride=2)
        return outputs
