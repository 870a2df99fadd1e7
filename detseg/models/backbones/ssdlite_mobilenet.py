"""SSDLite's MobileNetV3-Large (Howard et al. 2019, section 6.3), as torchvision's
``ssdlite320_mobilenet_v3_large`` builds it.

The first map is taken inside the C4 block, after its 1x1 expansion (672 channels at stride
16) and before its stride-2 depthwise convolution; the second is the network's last layer
(480 channels at stride 32 with the reduced tail: the last stage has half the channels).
Four extra blocks follow (1x1 to half the width, 3x3 depthwise stride 2, 1x1; BatchNorm and
ReLU6 each), 512, 256, 256 and 128 channels. At 320 x 320 the six maps are 20, 10, 5, 3, 2
and 1 cells wide.
"""

from __future__ import annotations

from functools import partial

import torchvision
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from detseg.models.backbones.base import Backbone, FeatureSpec, features_of, load_pretrained
from detseg.registry import BACKBONES

SSDLITE_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
C4_BLOCK = 13  # index of the C4 block (the last stride-2 one) in mobilenet_v3_large().features


def _extra_block(in_channels: int, out_channels: int) -> nn.Sequential:
    mid = out_channels // 2
    return nn.Sequential(
        Conv2dNormActivation(in_channels, mid, 1, norm_layer=SSDLITE_NORM, activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, mid, 3, stride=2, groups=mid, norm_layer=SSDLITE_NORM, activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, out_channels, 1, norm_layer=SSDLITE_NORM, activation_layer=nn.ReLU6),
    )


def _normal_init(module: nn.Module) -> None:
    """torchvision's SSDLite initialisation: convolution weights from N(0, 0.03), biases 0."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.normal_(conv.weight, std=0.03)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)


@BACKBONES.register("ssdlite_mobilenet_v3_large")
class SSDLiteMobileNetV3(Backbone):
    """The six SSDLite320 maps ``c4, c5, c6, c7, c8, c9`` from MobileNetV3-Large.

    Args:
        pretrained: a local state dict of torchvision's ``mobilenet_v3_large`` (ImageNet);
            the network is then built with the full tail (960 channels at ``c5``), as
            torchvision does with a pretrained backbone. Without it, the reduced tail and
            N(0, 0.03) weights.
        out_features: maps to return (default: all six).

    Strides are nominal (16 to 512, doubling): the stride-2 extra blocks round up, so SSD's
    default boxes follow the actual map sizes.
    """

    min_input_size = 320  # the input the nominal strides are named for (smaller ones run too)
    NAMES = ("c4", "c5", "c6", "c7", "c8", "c9")
    STRIDES = (16, 32, 64, 128, 256, 512)

    def __init__(self, pretrained: str | None = None, out_features: list[str] | None = None) -> None:
        super().__init__()
        net = torchvision.models.mobilenet_v3_large(weights=None, reduced_tail=not pretrained, norm_layer=SSDLITE_NORM)
        if pretrained:
            load_pretrained(net, pretrained, "mobilenet_v3_large")
        else:
            _normal_init(net)
        layers, c4 = net.features, net.features[C4_BLOCK]
        extras = [_extra_block(layers[-1].out_channels, 512), _extra_block(512, 256), _extra_block(256, 256),
                  _extra_block(256, 128)]
        for extra in extras:
            _normal_init(extra)
        self.stages = nn.ModuleDict({
            "c4": nn.Sequential(*layers[:C4_BLOCK], c4.block[0]),  # to the C4 block's expansion
            "c5": nn.Sequential(c4.block[1:], *layers[C4_BLOCK + 1:]),  # its depthwise conv to the end
            **{name: extra for name, extra in zip(self.NAMES[2:], extras)},
        })
        channels = (c4.block[0].out_channels, layers[-1].out_channels, 512, 256, 256, 128)
        self._shape = {n: FeatureSpec(c, s) for n, c, s in zip(self.NAMES, channels, self.STRIDES)}
        self.out_features = list(out_features or self.NAMES)
        unknown = set(self.out_features) - set(self.NAMES)
        if unknown:
            raise ValueError(f"ssdlite_mobilenet_v3_large: unknown out_features {sorted(unknown)}; "
                             f"choose from {list(self.NAMES)}")

    def output_shape(self) -> dict[str, FeatureSpec]:
        return {name: self._shape[name] for name in self.out_features}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return features_of(self.stages, x, self.out_features)
