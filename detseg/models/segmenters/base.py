"""What every segmentation decoder provides."""

from __future__ import annotations

from torch import nn


class SegDecoder(nn.Module):
    """``forward(features dict) -> Tensor[B, out_channels, H/s, W/s]``; ``output_stride`` = s.

    A decoder with ``predicts_scores = True`` outputs the class scores itself (FCN); one
    with ``needs_indices = True`` is also given the encoder's max-pooling indices.
    """

    out_channels: int
    output_stride: int
    predicts_scores: bool = False
    needs_indices: bool = False


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
