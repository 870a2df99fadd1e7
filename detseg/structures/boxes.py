"""Axis-aligned boxes, always ``xyxy`` in absolute pixels.

Other formats exist only at the edges (annotation files, head parameterisations) and are
named in the function that converts them: ``xywh`` is COCO's (x, y, width, height),
``cxcywh`` is (centre x, centre y, width, height).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``Tensor[..., 4]`` (x, y, w, h) -> (x1, y1, x2, y2)."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``Tensor[..., 4]`` (x1, y1, x2, y2) -> (x, y, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``Tensor[..., 4]`` (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``Tensor[..., 4]`` (x1, y1, x2, y2) -> (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


class Boxes:
    """``N`` boxes as a float32 ``Tensor[N, 4]`` in xyxy absolute pixels.

    Construction checks the shape (an empty input becomes ``Tensor[0, 4]``); it does not
    require ``x2 >= x1`` because predicted boxes may be degenerate (see :meth:`nonempty`).
    """

    def __init__(self, tensor: Tensor | Sequence[Sequence[float]]) -> None:
        tensor = torch.as_tensor(tensor, dtype=torch.float32)
        if tensor.numel() == 0:
            tensor = tensor.reshape(0, 4)
        if tensor.dim() != 2 or tensor.shape[-1] != 4:
            raise ValueError(f"Boxes expects a Tensor[N, 4], got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    @classmethod
    def from_xywh(cls, boxes: Tensor | Sequence[Sequence[float]]) -> Boxes:
        return cls(xywh_to_xyxy(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)))

    @classmethod
    def from_cxcywh(cls, boxes: Tensor | Sequence[Sequence[float]]) -> Boxes:
        return cls(cxcywh_to_xyxy(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)))

    def xywh(self) -> Tensor:
        return xyxy_to_xywh(self.tensor)

    def cxcywh(self) -> Tensor:
        return xyxy_to_cxcywh(self.tensor)

    def widths(self) -> Tensor:
        return self.tensor[:, 2] - self.tensor[:, 0]

    def heights(self) -> Tensor:
        return self.tensor[:, 3] - self.tensor[:, 1]

    def area(self) -> Tensor:
        """``Tensor[N]``; degenerate boxes have area 0, never negative."""
        return self.widths().clamp(min=0) * self.heights().clamp(min=0)

    def clip(self, image_size: tuple[int, int]) -> Boxes:
        """A copy clipped to an image of ``(height, width)``."""
        h, w = image_size
        x1, y1, x2, y2 = self.tensor.unbind(-1)
        return Boxes(
            torch.stack((x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)), -1)
        )

    def nonempty(self, min_size: float = 0.0) -> Tensor:
        """``bool[N]``: width and height both greater than ``min_size``."""
        return (self.widths() > min_size) & (self.heights() > min_size)

    def inside(self, image_size: tuple[int, int]) -> Tensor:
        """``bool[N]``: the box lies within an image of ``(height, width)``."""
        h, w = image_size
        t = self.tensor
        return (t[:, 0] >= 0) & (t[:, 1] >= 0) & (t[:, 2] <= w) & (t[:, 3] <= h)

    def scale(self, scale_x: float, scale_y: float) -> Boxes:
        return Boxes(self.tensor * self.tensor.new_tensor([scale_x, scale_y, scale_x, scale_y]))

    def centers(self) -> Tensor:
        """``Tensor[N, 2]`` (cx, cy)."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    @staticmethod
    def cat(boxes: Sequence[Boxes]) -> Boxes:
        if not boxes:
            return Boxes(torch.zeros(0, 4))
        return Boxes(torch.cat([b.tensor for b in boxes], dim=0))

    def to(self, device: torch.device | str) -> Boxes:
        return Boxes(self.tensor.to(device))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def __getitem__(self, index: Any) -> Boxes:
        if isinstance(index, int):
            return Boxes(self.tensor[index].view(1, 4))
        return Boxes(self.tensor[index])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self):
        return iter(self.tensor)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Boxes) and torch.equal(self.tensor, other.tensor)

    __hash__ = None  # mutable container

    def __repr__(self) -> str:
        return f"Boxes({self.tensor.tolist() if len(self) <= 4 else f'{len(self)} boxes'})"
