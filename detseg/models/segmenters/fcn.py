"""Fully Convolutional Networks (Long et al., CVPR 2015), torchvision's FCN head and
DeepLab v3's ASPP decoder.

FCN: the classifier's fully connected layers become convolutions on the coarsest map
(``fc6`` a ``fc_kernel x fc_kernel`` convolution, ``fc7`` a 1x1, as VGG-16's 4096-wide FC
layers are 7x7 and 1x1 convolutions), a 1x1 ``score`` layer gives class scores at stride
32, and the variants differ in how they return to full resolution:

- ``32s``: one x32 up-sampling of the scores;
- ``16s``: x2, add the scores of pool4 (a 1x1 score layer on it), then x16;
- ``8s``: x2, add pool4's scores, x2, add pool3's scores, then x8.

Each up-sampling step uses ``upsample`` (one kind for all steps, or one per step): see
:mod:`detseg.models.segmenters.upsample`. The skip score layers start at zero, as in the
paper, so a finer variant starts out as the coarser one. Convolutions are padded
("same"); the paper's 100-pixel input padding and crops are not needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import NonNegativeInt, PositiveInt, UnitInterval
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec, select_features
from detseg.models.segmenters.base import SegDecoder
from detseg.models.segmenters.upsample import KINDS, Upsample
from detseg.registry import SEG_DECODERS

VARIANT_SKIPS = {"32s": 0, "16s": 1, "8s": 2}


class UnpoolUpsample(nn.Module):
    """Max un-pooling of a score map through the encoder's poolings, one x2 step each.

    Score maps have C channels, the pooling indices the encoder's; each step lifts the
    scores to the pooling layer's channels (1x1), un-pools them at the remembered maxima
    and projects back to C with a 3x3 convolution. Un-pooled maps are sparse (one value
    per 2x2 window); as in SegNet's decoder, the 3x3 convolution makes them dense again.
    With a 1x1 projection, three un-poolings leave 63 of every 64 pixels at the bias
    (measured: FCN-8s mIoU 0.31 on shapes).
    """

    def __init__(self, channels: int, pools: Sequence[tuple[str, int]]) -> None:
        super().__init__()
        self.pools = [name for name, _ in pools]  # coarse to fine
        self.lift = nn.ModuleList(nn.Conv2d(channels, c, 1) for _, c in pools)
        self.project = nn.ModuleList(nn.Conv2d(c, channels, 3, padding=1) for _, c in pools)
        self.unpool = Upsample("unpool", channels, 2)

    def forward(self, x: Tensor, size: tuple[int, int], indices: dict[str, Tensor]) -> Tensor:
        for name, lift, project in zip(self.pools, self.lift, self.project):
            idx = indices[name]
            x = project(self.unpool(lift(x), size=(idx.shape[-2] * 2, idx.shape[-1] * 2), indices=idx))
        return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear",
                                                                          align_corners=False)


@SEG_DECODERS.register("fcn")
class FCNDecoder(SegDecoder):
    """FCN-32s / 16s / 8s on the backbone's stride 8, 16 and 32 maps.

    Args:
        input_shape: the encoder's output shape (supplied by the model builder).
        model_num_classes: classes including background (supplied by the model builder).
        in_features: the pool3, pool4, pool5 maps (strides 8, 16, 32), finest first; for
            ``32s`` also a single map of any stride (torchvision's ``fcn_resnet50`` layout:
            a dilated ResNet's c5 at stride 8, scored and up-sampled once).
        variant: ``32s``, ``16s`` or ``8s``.
        upsample: one kind for every step or a list, one per step (``32s``: 1, ``16s``: 2,
            ``8s``: 3): ``nearest``, ``bilinear``, ``transposed``, ``unpool``.
        fc_dim: width of fc6 / fc7 (0: score the backbone's map directly).
        fc_kernel: fc6's kernel (7 for VGG-16's first FC layer).
        dropout: after fc6 and fc7.
    """

    predicts_scores = True

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        model_num_classes: int,
        in_features: Sequence[str],
        variant: str = "8s",
        upsample: str | Sequence[str] = "transposed",
        fc_dim: NonNegativeInt = 512,
        fc_kernel: int = 7,
        dropout: UnitInterval = 0.5,
    ) -> None:
        super().__init__()
        if variant not in VARIANT_SKIPS:
            raise ConfigError(f"fcn decoder: variant must be one of {list(VARIANT_SKIPS)}, got {variant!r}")
        specs = select_features(input_shape, list(in_features), "fcn decoder")
        strides = [s.stride for s in specs.values()]
        single = variant == "32s" and len(in_features) == 1  # one map, e.g. a dilated ResNet's c5 at stride 8
        if not single and (len(in_features) != 3 or strides != [8, 16, 32]):
            raise ConfigError(f"fcn decoder: in_features must be the stride 8, 16 and 32 maps (pool3, pool4, pool5), "
                              f"or one map for 32s; got {[(n, s.stride) for n, s in specs.items()]}")
        num_skips = VARIANT_SKIPS[variant]
        kinds = [upsample] * (num_skips + 1) if isinstance(upsample, str) else list(upsample)
        if len(kinds) != num_skips + 1:
            raise ConfigError(f"fcn decoder: FCN-{variant} has {num_skips + 1} up-sampling steps, "
                              f"upsample lists {len(kinds)}")
        for kind in kinds:
            if kind not in KINDS:
                raise ConfigError(f"fcn decoder: upsample kind must be one of {list(KINDS)}, got {kind!r}")
        c = model_num_classes
        pool3, pool4, pool5 = in_features if not single else (None, None, in_features[0])
        coarse = specs[pool5].channels
        layers: list[nn.Module] = []
        if fc_dim:
            layers += [nn.Conv2d(coarse, fc_dim, fc_kernel, padding=fc_kernel // 2), nn.ReLU(inplace=True),
                       nn.Dropout2d(dropout), nn.Conv2d(fc_dim, fc_dim, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout)]
            coarse = fc_dim
        self.fc = nn.Sequential(*layers)
        self.score = nn.Conv2d(coarse, c, 1)
        self.skip_names = [pool4, pool3][:num_skips]
        self.skip_scores = nn.ModuleList(nn.Conv2d(specs[n].channels, c, 1) for n in self.skip_names)
        for conv in self.skip_scores:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        # step strides: x2 per skip, then the rest of the way to full resolution
        top = strides[-1]
        from_strides = [top, top // 2][:num_skips] + [top // 2**num_skips]
        factors = [2] * num_skips + [from_strides[-1]]
        pools_by_stride = {spec.stride: (name, spec.channels) for name, spec in input_shape.items()}
        self.steps = nn.ModuleList()
        self.uses_indices = []
        for kind, start, factor in zip(kinds, from_strides, factors):
            if kind == "unpool":
                strides = [start // 2**k for k in range(factor.bit_length() - 1)]  # poolings to undo
                missing = [s for s in strides if s not in pools_by_stride]
                if missing:
                    raise ConfigError(f"fcn decoder: unpool from stride {start} needs the encoder's pooled maps at "
                                      f"strides {strides}; missing {missing} (give the backbone all its pools as "
                                      f"out_features)")
                self.steps.append(UnpoolUpsample(c, [pools_by_stride[s] for s in strides]))
            else:
                self.steps.append(Upsample(kind, c, factor))
            self.uses_indices.append(kind == "unpool")
        self.needs_indices = any(self.uses_indices)
        self.factors = factors
        self.in_features = list(in_features)
        self.out_channels = c
        self.output_stride = 1

    def forward(self, features: dict[str, Tensor], indices: dict[str, Tensor] | None = None) -> Tensor:
        x = self.score(self.fc(features[self.in_features[-1]]))
        for k, (step, factor) in enumerate(zip(self.steps, self.factors)):
            if k < len(self.skip_names):
                skip = features[self.skip_names[k]]
                size, add = skip.shape[-2:], self.skip_scores[k](skip)
            else:
                size, add = (x.shape[-2] * factor, x.shape[-1] * factor), None
            x = step(x, size, indices) if self.uses_indices[k] else step(x, size)
            if add is not None:
                x = x + add
        return x


@SEG_DECODERS.register("fcn_head")
class FCNHead(SegDecoder):
    """torchvision's ``FCNHead`` without its classifier: a 3x3 convolution (no bias),
    BatchNorm, ReLU and dropout on one map; the Segmentor's 1x1 head scores it and
    up-samples the scores bilinearly to the input, as torchvision's ``fcn_resnet50`` does
    on a dilated ResNet's ``c5`` at stride 8.

    ``forward(features) -> Tensor[B, channels, H/s, W/s]`` with ``s`` the map's stride.

    Args:
        input_shape: the encoder's output shape (supplied by the model builder).
        in_feature: the map to decode.
        channels: the convolution's width (default: the map's channels / 4, torchvision's).
        dropout: element-wise dropout after the ReLU (torchvision: 0.1).
    """

    def __init__(self, input_shape: dict[str, FeatureSpec], in_feature: str, channels: int | None = None,
                 dropout: UnitInterval = 0.1) -> None:
        super().__init__()
        spec = select_features(input_shape, [in_feature], "fcn_head decoder")[in_feature]
        channels = channels or spec.channels // 4
        self.layers = nn.Sequential(nn.Conv2d(spec.channels, channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.in_feature = in_feature
        self.out_channels = channels
        self.output_stride = spec.stride

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return self.layers(features[self.in_feature])


@SEG_DECODERS.register("aspp")
class ASPPDecoder(SegDecoder):
    """DeepLab v3's Atrous Spatial Pyramid Pooling (Chen et al. 2017) on one map: a 1x1
    convolution, three 3x3 convolutions with dilation ``rates``, and the image-level mean,
    concatenated and fused by a 1x1 convolution, then a 3x3 convolution.

    ``forward(features) -> Tensor[B, channels, H/s, W/s]`` with ``s`` the map's stride.
    torchvision's ``DeepLabHead`` is ``pool_norm: true, dropout: 0.5`` with rates 12, 24, 36.

    Args:
        input_shape: the encoder's output shape (supplied by the model builder).
        in_feature: the map to decode (a dilated ResNet's ``c5`` at stride 8 or 16).
        rates: dilations (6, 12, 18 at output stride 16; double them at 8).
        channels: width of every branch and of the output.
        pool_norm: BatchNorm in the image-level branch (torchvision's); training then needs
            batches of more than one image, as a 1x1 map of one image has no variance.
        dropout: element-wise dropout after the 1x1 fusion (0: none).
    """

    def __init__(self, input_shape: dict[str, FeatureSpec], in_feature: str, rates: Sequence[int] = (6, 12, 18),
                 channels: PositiveInt = 256, pool_norm: bool = False, dropout: UnitInterval = 0.0) -> None:
        super().__init__()
        spec = select_features(input_shape, [in_feature], "aspp decoder")[in_feature]

        def branch(kernel: int, dilation: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(spec.channels, channels, kernel, padding=dilation * (kernel // 2),
                                           dilation=dilation, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

        self.branches = nn.ModuleList([branch(1, 1), *[branch(3, r) for r in rates]])
        pool_bn = [nn.BatchNorm2d(channels)] if pool_norm else []
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(spec.channels, channels, 1, bias=False),
                                        *pool_bn, nn.ReLU(inplace=True))
        project = [nn.Conv2d(channels * (len(rates) + 2), channels, 1, bias=False), nn.BatchNorm2d(channels),
                   nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout else [])
        self.fuse = nn.Sequential(*project, nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.in_feature = in_feature
        self.out_channels = channels
        self.output_stride = spec.stride

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x = features[self.in_feature]
        # a broadcast of the 1x1 map, written as torchvision's bilinear resize: equal to the last bit
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))
