"""torchvision classification networks as backbones: one registry line per model.

Each entry names the model's modules that make up each output stage; channels and
strides are measured by one dummy forward pass at construction. ``pretrained`` names
torchvision's weights (``imagenet``, ``IMAGENET1K_V2``, ...), fetched into the torch hub cache,
or a local file (see :func:`detseg.models.backbones.base.load_pretrained`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision
from torch import Tensor, nn

from detseg.config import NonNegativeInt
from detseg.errors import ConfigError
from detseg.models.backbones.base import (
    Backbone,
    FeatureSpec,
    features_of,
    freeze,
    freeze_batch_norm,
    load_pretrained,
)
from detseg.registry import BACKBONES, did_you_mean

RESNET_STAGES = {
    "c2": ["conv1", "bn1", "relu", "maxpool", "layer1"],
    "c3": ["layer2"],
    "c4": ["layer3"],
    "c5": ["layer4"],
}
VGG16_STAGES = {  # outputs before each max pool: conv5 is VGG's conv5_3 at stride 16
    "conv1": [f"features.{i}" for i in range(4)],
    "conv2": [f"features.{i}" for i in range(4, 9)],
    "conv3": [f"features.{i}" for i in range(9, 16)],
    "conv4": [f"features.{i}" for i in range(16, 23)],
    "conv5": [f"features.{i}" for i in range(23, 30)],
}

VGG16_FCN_STAGES = {  # FCN's layout: the pooled maps (strides 2..32) and fc6/fc7 as convolutions
    "pool1": [f"features.{i}" for i in range(5)],
    "pool2": [f"features.{i}" for i in range(5, 10)],
    "pool3": [f"features.{i}" for i in range(10, 17)],
    "pool4": [f"features.{i}" for i in range(17, 24)],
    "pool5": [f"features.{i}" for i in range(24, 31)],
    "fc7": ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7"],
}


def fully_convolutional_vgg(model: nn.Module) -> None:
    """Give a torchvision VGG its classifier as convolutions (Long et al. 2015), in place.

    A fully connected layer on a flattened ``C x 7 x 7`` map is a 7x7 convolution with the
    same weights, so ``fc6`` (25088 -> 4096) becomes a 7x7 convolution on pool5, padded by 3
    so that the map keeps its size, and ``fc7`` a 1x1. Pretrained weights carry over.
    """
    fc6, fc7 = model.classifier[0], model.classifier[3]
    if not all(torch.isfinite(p.sum()) for p in (fc6.weight, fc6.bias, fc7.weight, fc7.bias)):
        raise ConfigError("backbone 'vgg16_fcn': the pretrained weights have NaN in the classifier, which "
                          "becomes fc6/fc7 (torchvision's IMAGENET1K_FEATURES has no classifier); use imagenet")
    conv6 = nn.Conv2d(512, fc6.out_features, 7, padding=3)
    conv7 = nn.Conv2d(fc7.in_features, fc7.out_features, 1)
    with torch.no_grad():
        conv6.weight.copy_(fc6.weight.view(fc6.out_features, 512, 7, 7))
        conv6.bias.copy_(fc6.bias)
        conv7.weight.copy_(fc7.weight[:, :, None, None])
        conv7.bias.copy_(fc7.bias)
    model.fc6, model.relu6, model.drop6 = conv6, nn.ReLU(inplace=True), nn.Dropout2d(model.classifier[2].p)
    model.fc7, model.relu7, model.drop7 = conv7, nn.ReLU(inplace=True), nn.Dropout2d(model.classifier[5].p)


DILATION_FOR_OUTPUT_STRIDE = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
"""ResNet layer2..4 strides replaced by dilation (DeepLab): the last map at stride 8 or 16
with the same receptive field growth."""


class TorchvisionBackbone(Backbone):
    """Stages cut out of a torchvision classification model.

    Args:
        arch: the ``torchvision.models`` constructor name.
        stages: output name -> the model's module paths that make up that stage, in order.
        out_features: which stage outputs to return (default: all).
        frozen_stages: freeze the parameters of the first ``k`` stages.
        frozen_bn: replace BatchNorm by FrozenBatchNorm (statistics and affine fixed).
        pretrained: torchvision weights of ``arch`` by name (``imagenet`` / ``DEFAULT`` / ``true``
            for torchvision's default, or ``IMAGENET1K_V1``, ``IMAGENET1K_V2``, ...), fetched
            into the torch hub cache ``$TORCH_HOME/hub/checkpoints``; or a local state-dict
            file of the whole torchvision model. See :func:`~detseg.models.backbones.base.load_pretrained`.
        convert: changes the model in place after the weights are loaded (e.g. adds layers).
        model_kwargs: extra constructor arguments (e.g. ``replace_stride_with_dilation``).
    """

    def __init__(
        self,
        arch: str,
        stages: dict[str, list[str]],
        out_features: Sequence[str] | None = None,
        frozen_stages: NonNegativeInt = 0,
        frozen_bn: bool = False,
        pretrained: bool | str | None = None,
        convert: Callable[[nn.Module], None] | None = None,
        **model_kwargs,
    ) -> None:
        super().__init__()
        model = getattr(torchvision.models, arch)(weights=None, **model_kwargs)
        if pretrained:
            load_pretrained(model, pretrained, arch)
        if convert is not None:
            convert(model)
        if frozen_bn:
            model = freeze_batch_norm(model)
        self.stages = nn.ModuleDict(
            {name: nn.Sequential(*[model.get_submodule(p) for p in paths]) for name, paths in stages.items()}
        )
        self.out_features = list(out_features) if out_features else list(stages)
        for name in self.out_features:
            if name not in stages:
                raise ConfigError(f"backbone '{arch}': unknown out_feature '{name}'"
                                  f"{did_you_mean(name, list(stages))}; choose from {list(stages)}")
        if not 0 <= frozen_stages <= len(stages):
            raise ConfigError(f"backbone '{arch}': frozen_stages must be 0..{len(stages)}")
        freeze(list(self.stages.values())[:frozen_stages])
        self._shape = self.measure_output_shape()

    def output_shape(self) -> dict[str, FeatureSpec]:
        return dict(self._shape)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return features_of(self.stages, x, self.out_features)


def _register(name: str, stages: dict[str, list[str]], arch: str | None = None,
              convert: Callable[[nn.Module], None] | None = None) -> None:
    arch = arch or name

    def build(
        out_features: list[str] | None = None,
        frozen_stages: NonNegativeInt = 0,
        frozen_bn: bool = False,
        pretrained: bool | str | None = None,
        replace_stride_with_dilation: list[bool] | None = None,
        output_stride: int | None = None,
    ) -> TorchvisionBackbone:
        extra = {}
        if output_stride is not None:
            if name not in ("resnet50", "resnet101") or output_stride not in DILATION_FOR_OUTPUT_STRIDE:
                raise ConfigError(f"backbone '{name}': output_stride {output_stride} is not available; resnet50 "
                                  f"and resnet101 take {sorted(DILATION_FOR_OUTPUT_STRIDE)} (torchvision's "
                                  f"basic-block ResNets cannot dilate)")
            replace_stride_with_dilation = DILATION_FOR_OUTPUT_STRIDE[output_stride]
        if replace_stride_with_dilation is not None:
            extra["replace_stride_with_dilation"] = replace_stride_with_dilation
        return TorchvisionBackbone(arch, stages, out_features, frozen_stages, frozen_bn, pretrained, convert, **extra)

    build.__name__ = name
    build.__doc__ = (f"torchvision's {arch}{' (fully convolutional)' if convert else ''}; stages {list(stages)}. "
                     f"pretrained: imagenet, a name of torchvision.models.get_model_weights('{arch}') "
                     f"(IMAGENET1K_V1, ...) or a state-dict file.")
    BACKBONES.register(name, build)


for _arch in ("resnet18", "resnet34", "resnet50", "resnet101"):
    _register(_arch, RESNET_STAGES)
_register("vgg16", VGG16_STAGES)
_register("vgg16_bn", {  # the BN variant has a BatchNorm after every conv
    "conv1": [f"features.{i}" for i in range(6)],
    "conv2": [f"features.{i}" for i in range(6, 13)],
    "conv3": [f"features.{i}" for i in range(13, 23)],
    "conv4": [f"features.{i}" for i in range(23, 33)],
    "conv5": [f"features.{i}" for i in range(33, 43)],
})
_register("vgg16_fcn", VGG16_FCN_STAGES, arch="vgg16", convert=fully_convolutional_vgg)
