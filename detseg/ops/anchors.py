"""Anchor boxes: sizes x aspect ratios at every position of every feature level."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


class AnchorGenerator:
    """Places ``len(sizes[l]) * len(aspect_ratios[l])`` anchors at each cell of level ``l``.

    An anchor of size ``s`` and aspect ratio ``r = height / width`` has area ``s**2``:
    ``w = s / sqrt(r)``, ``h = s * sqrt(r)``. The anchors of cell ``(i, j)`` on a level of
    stride ``t`` are centred at ``((j + offset) * t, (i + offset) * t)``.

    Args:
        sizes: per level, anchor sizes in input pixels, e.g. ``[[32], [64], [128]]``.
        aspect_ratios: per level, height/width ratios; one list is reused for all levels.
        offset: 0.5 centres anchors on their cell (the receptive field's centre); 0.0 on
            its top-left corner, as torchvision does.
        round_cells: round the cell anchors' corners to whole pixels, as torchvision does.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]] = ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,)),
        aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),),
        offset: float = 0.5,
        round_cells: bool = False,
    ) -> None:
        if len(aspect_ratios) == 1:
            aspect_ratios = list(aspect_ratios) * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise ValueError(
                f"aspect_ratios has {len(aspect_ratios)} levels but sizes has {len(sizes)}"
            )
        self.sizes = [tuple(float(s) for s in level) for level in sizes]
        self.aspect_ratios = [tuple(float(r) for r in level) for level in aspect_ratios]
        self.offset = offset
        self.cell_anchors = [
            self._cell_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)
        ]
        if round_cells:
            self.cell_anchors = [self._torchvision_cell_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)]

    @property
    def num_anchors_per_cell(self) -> list[int]:
        return [len(a) for a in self.cell_anchors]

    @staticmethod
    def _cell_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> Tensor:
        """``Tensor[A, 4]`` xyxy anchors centred at (0, 0), sizes varying fastest."""
        anchors = []
        for ratio in ratios:
            for size in sizes:
                w = size / math.sqrt(ratio)
                h = size * math.sqrt(ratio)
                anchors.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(anchors, dtype=torch.float32)

    @staticmethod
    def _torchvision_cell_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> Tensor:
        """The same anchors computed in float32 and rounded, exactly as torchvision's
        ``AnchorGenerator.generate_anchors`` (so a zoo checkpoint sees the anchors it learned)."""
        scales = torch.as_tensor(sizes, dtype=torch.float32)
        h_ratios = torch.sqrt(torch.as_tensor(ratios, dtype=torch.float32))
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def __call__(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        strides: Sequence[int | float | tuple[int | float, int | float]],
        device: torch.device | str = "cpu",
    ) -> list[Tensor]:
        """Anchors per level.

        Args:
            feature_sizes: ``(H_l, W_l)`` of each level's feature map.
            strides: input pixels per feature cell of each level, one number or
                ``(stride_y, stride_x)``.

        Returns:
            Per level ``Tensor[H_l * W_l * A_l, 4]`` xyxy, ordered (row, column, anchor),
            which matches ``head_output.permute(0, 2, 3, 1).reshape(B, -1, ...)``.
        """
        if len(feature_sizes) != len(self.cell_anchors) or len(strides) != len(self.cell_anchors):
            raise ValueError(
                f"anchor generator has {len(self.cell_anchors)} levels, got "
                f"{len(feature_sizes)} feature maps and {len(strides)} strides"
            )
        out = []
        for (height, width), stride, cell in zip(feature_sizes, strides, self.cell_anchors):
            stride_y, stride_x = stride if isinstance(stride, (tuple, list)) else (stride, stride)
            ys = (torch.arange(height, dtype=torch.float32, device=device) + self.offset) * stride_y
            xs = (torch.arange(width, dtype=torch.float32, device=device) + self.offset) * stride_x
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)
            out.append((shifts + cell.to(device)[None]).reshape(-1, 4))
        return out
