"""Up-sampling steps for segmentation decoders, one config word each.

- ``nearest``: copy each value into a ``factor x factor`` block;
- ``bilinear``: ``F.interpolate(..., mode="bilinear", align_corners=False)``;
- ``transposed``: a learnable transposed convolution (kernel ``2 * factor``, stride
  ``factor``, padding ``factor // 2``), initialised to bilinear interpolation as in FCN, so
  training starts from ``bilinear`` and may learn better;
- ``unpool``: max un-pooling (SegNet): each value goes back to the position where the
  matching max-pooling layer found its maximum, zeros elsewhere. It needs that layer's
  indices, which only encoders with max-pooling expose, and works at factor 2.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.errors import ConfigError

UpsampleKind = Literal["nearest", "bilinear", "transposed", "unpool"]
KINDS = ("nearest", "bilinear", "transposed", "unpool")


def bilinear_kernel(channels: int, factor: int) -> Tensor:
    """``[channels, channels, 2f - f % 2, 2f - f % 2]`` weights of a transposed convolution
    that up-samples each channel by ``factor`` bilinearly (off-diagonal channels zero)."""
    size = 2 * factor - factor % 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    steps = torch.arange(size, dtype=torch.float32)
    line = 1 - (steps - centre).abs() / factor
    kernel = line[:, None] * line[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


class Upsample(nn.Module):
    """Up-sample ``[N, C, H, W]`` by ``factor`` (to ``size`` when given, cropping or
    interpolating the last pixel of odd sizes).

    Args:
        kind: one of ``nearest``, ``bilinear``, ``transposed``, ``unpool``.
        channels: channel count (learnable kinds).
        factor: the scale factor (2 for ``unpool``).
    """

    def __init__(self, kind: UpsampleKind, channels: int, factor: int) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"upsampling kind must be one of {list(KINDS)}, got {kind!r}")
        if kind == "unpool" and factor != 2:
            raise ConfigError(f"unpool restores one 2x2 max-pooling at a time; factor {factor} needs "
                              f"{factor.bit_length() - 1} steps")
        self.kind = kind
        self.factor = factor
        if kind == "transposed":
            self.deconv = nn.ConvTranspose2d(channels, channels, 2 * factor - factor % 2, stride=factor,
                                             padding=(factor - factor % 2 + 1) // 2 if factor > 1 else 0, bias=False)
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(channels, factor))

    def forward(self, x: Tensor, size: tuple[int, int] | None = None, indices: Tensor | None = None) -> Tensor:
        size = tuple(size) if size is not None else (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        if self.kind == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        if self.kind == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.kind == "unpool":
            if indices is None:
                raise ConfigError("unpool needs the max-pooling indices of the encoder; use an encoder with "
                                  "max-pooling (tiny_vgg, vgg16_fcn) or another upsampling kind")
            return F.max_unpool2d(x, indices, kernel_size=2, stride=2, output_size=size)
        # replicate one border pixel first: bilinear with align_corners=False clamps at the
        # border, so the initialised deconvolution then equals it everywhere, edges included
        f = self.factor
        out = self.deconv(F.pad(x, (1, 1, 1, 1), mode="replicate"))[..., f:-f, f:-f]
        if tuple(out.shape[-2:]) != size:
            out = out[..., : size[0], : size[1]]
            if tuple(out.shape[-2:]) != size:  # asked for more than factor x: fill by interpolation
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out
