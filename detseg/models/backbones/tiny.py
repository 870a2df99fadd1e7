"""A small, fast backbone for CPU training, tests and the demo."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from detseg.models.backbones.base import Backbone, FeatureSpec, features_of
from detseg.registry import BACKBONES


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register("tiny_convnet")
class TinyConvNet(Backbone):
    """Plain conv-BN-ReLU stages; each halves the resolution then adds ``depth - 1`` convs.

    Outputs ``c1..c5`` at strides 2..32 (``len(widths)`` stages).

    Args:
        widths: channels of each stage.
        depth: 3x3 convolutions per stage.
        out_features: which stages to return (default: ``c2..c5``).
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        depth: int = 2,
        out_features: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        stages = {}
        in_channels = 3
        for i, width in enumerate(widths):
            layers = [conv_bn_relu(in_channels, width, stride=2)]
            layers += [conv_bn_relu(width, width) for _ in range(depth - 1)]
            stages[f"c{i + 1}"] = nn.Sequential(*layers)
            in_channels = width
        self.stages = nn.ModuleDict(stages)
        self.out_features = list(out_features) if out_features else list(stages)[1:]
        self._shape = {f"c{i + 1}": FeatureSpec(w, 2 ** (i + 1)) for i, w in enumerate(widths)}
        for name in self.out_features:
            if name not in self._shape:
                raise ValueError(f"tiny_convnet: unknown out_feature '{name}'; choose from {list(self._shape)}")

    def output_shape(self) -> dict[str, FeatureSpec]:
        return {name: self._shape[name] for name in self.out_features}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return features_of(self.stages, x, self.out_features)


@BACKBONES.register("tiny_vgg")
class TinyVGG(Backbone):
    """VGG-style stages for the CPU: ``depth`` 3x3 conv-BN-ReLU, then 2x2 max-pooling.

    Outputs ``pool1..pool5`` at strides 2..32 (``len(widths)`` stages), the pooled maps as
    FCN names them. :meth:`forward_with_indices` also returns each pooling's argmax
    indices, for max un-pooling (SegNet, ``upsample: unpool``).

    Args:
        widths: channels of each stage.
        depth: 3x3 convolutions per stage.
        out_features: which pooled maps to return (default: all).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 256), depth: int = 2,
                 out_features: Sequence[str] | None = None) -> None:
        super().__init__()
        stages = {}
        in_channels = 3
        for i, width in enumerate(widths):
            stages[f"pool{i + 1}"] = nn.Sequential(conv_bn_relu(in_channels, width),
                                                   *[conv_bn_relu(width, width) for _ in range(depth - 1)])
            in_channels = width
        self.stages = nn.ModuleDict(stages)
        self._shape = {f"pool{i + 1}": FeatureSpec(w, 2 ** (i + 1)) for i, w in enumerate(widths)}
        self.out_features = list(out_features) if out_features else list(stages)
        for name in self.out_features:
            if name not in self._shape:
                raise ValueError(f"tiny_vgg: unknown out_feature '{name}'; choose from {list(self._shape)}")

    def output_shape(self) -> dict[str, FeatureSpec]:
        return {name: self._shape[name] for name in self.out_features}

    def forward_with_indices(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(features, indices)``: indices of every pooling up to the last output."""
        features, indices = {}, {}
        for name, stage in self.stages.items():
            x, indices[name] = F.max_pool2d(stage(x), 2, 2, return_indices=True)
            if name in self.out_features:
                features[name] = x
            if len(features) == len(self.out_features):
                break
        return features, indices

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.forward_with_indices(x)[0]
