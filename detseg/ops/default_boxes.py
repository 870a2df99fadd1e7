"""SSD's default boxes (Liu et al. 2016, section 2.2 "Choosing scales and aspect ratios").

For ``m`` feature maps the scale of map ``k`` (1-based) is::

    s_k = s_min + (s_max - s_min) * (k - 1) / (m - 1)

and each aspect ratio ``a_r`` gives a box of width ``s_k * sqrt(a_r)`` and height
``s_k / sqrt(a_r)`` (fractions of the input side). Ratio 1 gets one more box of scale
``s'_k = sqrt(s_k * s_{k+1})``. Box centres on an ``f_k x f_k`` map are
``((j + 0.5) / f_k, (i + 0.5) / f_k)``.

The paper's inputs are square, so "fraction of the input side" is one length. For a
non-square input (an aspect-kept resize, or a batch padded to its largest image) the sizes
can be taken as fractions of one ``box_side`` in pixels, the model's input side, so that a
ratio-1 box stays square and keeps its size whatever shape the batch is padded to; without
it each axis scales by its own side (the paper's square input stretched, as torchvision does).

Clipping keeps the boxes inside the image (the paper's reference code), or, as torchvision
does, clips only each box's width and height to the image side and keeps its centre, so a
box near the border may reach outside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor


def ssd_scales(num_maps: int, min_scale: float, max_scale: float) -> list[float]:
    """``s_1..s_m`` of the paper's formula, plus ``s_{m+1} = 1.0`` (the extra ratio-1 box of
    the last map uses ``sqrt(s_m * 1.0)``, as in the reference implementation)."""
    if num_maps == 1:
        return [min_scale, 1.0]
    return [min_scale + (max_scale - min_scale) * k / (num_maps - 1) for k in range(num_maps)] + [1.0]


class DefaultBoxGenerator:
    """Default boxes for SSD's feature maps.

    Args:
        aspect_ratios: per map, the ratios ``r >= 1`` besides 1; each adds ``r`` and ``1/r``
            (SSD300: ``[[2], [2, 3], [2, 3], [2, 3], [2], [2]]``).
        min_scale, max_scale: ``s_min`` and ``s_max`` of the formula (0.2 and 0.9).
        scales: explicit ``s_1..s_{m+1}`` instead of the formula (m + 1 values).
        steps: per map, input pixels between box centres; ``None`` uses ``input / f_k``
            (the paper). torchvision's SSD300 uses ``[8, 16, 32, 64, 100, 300]``.
        clip: ``True``: clip the boxes to the image (corners in ``[0, 1]``); ``"sizes"``: clip
            only widths and heights to ``[0, 1]``, centres kept (torchvision's ``clip=True``);
            ``False``: no clipping.
    """

    def __init__(
        self,
        aspect_ratios: Sequence[Sequence[float]],
        min_scale: float = 0.2,
        max_scale: float = 0.9,
        scales: Sequence[float] | None = None,
        steps: Sequence[float] | None = None,
        clip: bool | Literal["sizes"] = True,
    ) -> None:
        num_maps = len(aspect_ratios)
        if scales is None:
            if not 0 < min_scale <= max_scale:
                raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
            scales = ssd_scales(num_maps, min_scale, max_scale)
        if len(scales) != num_maps + 1:
            raise ValueError(f"scales needs {num_maps + 1} values for {num_maps} maps, got {len(scales)}")
        if steps is not None and len(steps) != num_maps:
            raise ValueError(f"steps needs {num_maps} values, got {len(steps)}")
        if clip not in (True, False, "sizes"):
            raise ValueError(f"clip is true, false or 'sizes', got {clip!r}")
        for ratios in aspect_ratios:
            if any(r < 1 for r in ratios):
                raise ValueError(f"aspect_ratios lists ratios >= 1 (each adds r and 1/r), got {list(ratios)}")
        self.aspect_ratios = [list(map(float, r)) for r in aspect_ratios]
        self.scales = [float(s) for s in scales]
        self.steps = None if steps is None else [float(s) for s in steps]
        self.clip = clip
        self._cache: dict[tuple, Tensor] = {}

    @property
    def num_boxes_per_cell(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def cell_shapes(self, k: int) -> list[tuple[float, float]]:
        """``(width, height)`` fractions of map ``k``'s boxes, in output order: ratio 1 at
        ``s_k``, ratio 1 at ``s'_k``, then ``r`` and ``1/r`` for each ratio."""
        s, s_next = self.scales[k], self.scales[k + 1]
        shapes = [(s, s), (math.sqrt(s * s_next),) * 2]
        for r in self.aspect_ratios[k]:
            shapes += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
        return shapes

    def __call__(self, feature_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int],
                 device: torch.device | str = "cpu", box_side: float | None = None) -> Tensor:
        """All default boxes, ``Tensor[P, 4]`` xyxy in pixels of ``image_size = (h, w)``,
        ordered (map, row, column, box), which matches each map's head output permuted to
        ``[N, H, W, A * K]``. Centres lie on each map's grid over ``image_size``; widths and
        heights are fractions of ``box_side`` pixels, or of the image's width and height
        when it is ``None``."""
        if len(feature_sizes) != len(self.aspect_ratios):
            raise ValueError(f"{len(self.aspect_ratios)} maps configured, got {len(feature_sizes)} feature maps")
        key = (tuple(map(tuple, feature_sizes)), tuple(image_size), box_side, str(device))
        if key not in self._cache:
            self._cache[key] = self._make(feature_sizes, image_size, box_side).to(device)
        return self._cache[key]

    def _make(self, feature_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int],
              box_side: float | None) -> Tensor:
        img_h, img_w = image_size
        # box sizes as fractions of the image's own sides: box_side in each axis, then in [0, 1] units
        size_scale = torch.tensor([1.0, 1.0] if box_side is None else [box_side / img_w, box_side / img_h],
                                  dtype=torch.float64)
        levels = []
        for k, (fh, fw) in enumerate(feature_sizes):
            # cells per image side (fractional with steps), divided as torchvision does, to the bit
            cells_y, cells_x = (img_h / self.steps[k], img_w / self.steps[k]) if self.steps else (fh, fw)
            cy, cx = torch.meshgrid((torch.arange(fh) + 0.5) / cells_y, (torch.arange(fw) + 0.5) / cells_x,
                                    indexing="ij")
            wh = (torch.tensor(self.cell_shapes(k), dtype=torch.float64) * size_scale).float()  # [A, 2]
            if self.clip == "sizes":
                wh = wh.clamp(0.0, 1.0)
            centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2)
            boxes = torch.cat([centres - wh / 2, centres + wh / 2], -1).reshape(-1, 4)
            levels.append(boxes)
        boxes = torch.cat(levels)
        if self.clip is True:
            boxes = boxes.clamp(0.0, 1.0)
        return boxes * torch.tensor([img_w, img_h, img_w, img_h], dtype=boxes.dtype)
