"""torchvision's MobileNetV3-Large as a backbone (Howard et al. 2019).

The network is torchvision's ``features`` sequence, kept whole, so its keys are
torchvision's (``features.<i>.…``) and a checkpoint loads with one renaming rule. Stages
end where torchvision's detection and segmentation models cut it (``stage_indices``):
after the stem ``features[0]``, after every block that halves the resolution, and after
the last 1x1 convolution. Stage ``layer<i>`` is the output of ``features[i]``: for the
default network ``layer0`` .. ``layer16`` at strides 2, 4, 8, 16, 32, 32 (``dilated``:
the last two at 16, as DeepLab v3 uses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torchvision
from torch import Tensor, nn

from detseg.config import NonNegativeInt
from detseg.errors import ConfigError
from detseg.models.backbones.base import (
    Backbone,
    FeatureSpec,
    freeze,
    freeze_batch_norm,
    load_pretrained,
)
from detseg.registry import BACKBONES, did_you_mean


def stage_indices(features: nn.Sequential) -> list[int]:
    """torchvision's ``stage_indices``: the stem, each down-sampling block, the last layer."""
    return [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]


@BACKBONES.register("mobilenet_v3_large")
class MobileNetV3Large(Backbone):
    """``forward(images[B, 3, H, W]) -> {layer<i>: Tensor[B, C, H/stride, W/stride]}``.

    Args:
        out_features: which stages to return (default: all, ``layer0`` .. ``layer16``).
        frozen_stages: freeze the parameters of the first ``k`` stages (``features[0]`` up to
            the ``k``-th stage's last layer; torchvision's ``trainable_layers`` cuts just before
            a stage's down-sampling block instead).
        frozen_bn: replace BatchNorm by FrozenBatchNorm (statistics and affine fixed).
        pretrained: torchvision's weights by name (``imagenet``, ``IMAGENET1K_V1``, ...) or a
            local state-dict file of ``torchvision.models.mobilenet_v3_large`` (see
            :func:`~detseg.models.backbones.base.load_pretrained`).
        dilated: the last stage's blocks dilated instead of strided (output stride 16).
        reduced_tail: halve the channels of the last stage (torchvision's option).
        norm_eps: BatchNorm's epsilon; torchvision's default here is 0.001, its detection
            models with pretrained weights use 1e-5 (FrozenBatchNorm2d).
    """

    def __init__(
        self,
        out_features: Sequence[str] | None = None,
        frozen_stages: NonNegativeInt = 0,
        frozen_bn: bool = False,
        pretrained: bool | str | None = None,
        dilated: bool = False,
        reduced_tail: bool = False,
        norm_eps: float = 0.001,
    ) -> None:
        super().__init__()
        model = torchvision.models.mobilenet_v3_large(
            weights=None, dilated=dilated, reduced_tail=reduced_tail,
            norm_layer=partial(nn.BatchNorm2d, eps=norm_eps, momentum=0.01))
        if pretrained:
            load_pretrained(model, pretrained, "mobilenet_v3_large")
        self.features = freeze_batch_norm(model.features) if frozen_bn else model.features
        self.stage_ends = {f"layer{i}": i for i in stage_indices(self.features)}
        self.out_features = list(out_features) if out_features else list(self.stage_ends)
        for name in self.out_features:
            if name not in self.stage_ends:
                raise ConfigError(f"backbone 'mobilenet_v3_large': unknown out_feature '{name}'"
                                  f"{did_you_mean(name, list(self.stage_ends))}; choose from {list(self.stage_ends)}")
        if not 0 <= frozen_stages <= len(self.stage_ends):
            raise ConfigError(f"backbone 'mobilenet_v3_large': frozen_stages must be 0..{len(self.stage_ends)}")
        if frozen_stages:
            freeze(list(self.features)[:list(self.stage_ends.values())[frozen_stages - 1] + 1])
        self.outputs = {i: name for name, i in self.stage_ends.items() if name in self.out_features}
        self._shape = self.measure_output_shape()

    def output_shape(self) -> dict[str, FeatureSpec]:
        return dict(self._shape)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.outputs:
                out[self.outputs[i]] = x
                if len(out) == len(self.outputs):
                    break
        return out
