"""Path Aggregation Network neck (Liu et al., CVPR 2018), as in YOLOv4/v5: an FPN's
top-down pathway followed by a bottom-up one, so coarse maps also see fine detail."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from torch import Tensor, nn

from detseg.models.backbones.base import FeatureSpec
from detseg.models.necks.fpn import FPN
from detseg.registry import NECKS


@NECKS.register("pan")
class PAN(FPN):
    """FPN, then ``n_0 = p_0`` and ``n_k = conv3x3(p_k + conv3x3_stride2(n_{k-1}))``.

    Outputs keep the FPN's names (``p<k>`` at stride ``2**k``) and channels. Needs levels
    whose strides double from one to the next.

    Args:
        input_shape: the backbone's output shape (supplied by the model builder).
        in_features: backbone maps to use, finest first.
        out_channels: channels of every output map.
    """

    def __init__(self, input_shape: dict[str, FeatureSpec], in_features: Sequence[str], out_channels: int = 256) -> None:
        super().__init__(input_shape, in_features, out_channels)
        strides = [input_shape[n].stride for n in in_features]
        if any(b != 2 * a for a, b in pairwise(strides)):
            raise ValueError(f"pan: in_features {list(in_features)} have strides {strides}; each must double the last")
        self.downsample = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in in_features[1:])
        self.bottom_up = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_features[1:])
        for conv in [*self.downsample, *self.bottom_up]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        top_down = super().forward(features)
        names = self.out_names
        outputs = {names[0]: top_down[names[0]]}
        for name, previous, down, conv in zip(names[1:], names, self.downsample, self.bottom_up):
            outputs[name] = conv((top_down[name] + down(outputs[previous])).relu())
        return outputs
