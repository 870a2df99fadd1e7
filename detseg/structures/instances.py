"""Instances: the objects of one image, ground truth or predicted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from detseg.structures.boxes import Boxes


@dataclass
class Instances:
    """``N`` objects in one image of ``image_size = (height, width)``.

    Attributes:
        boxes: xyxy absolute pixels.
        labels: ``int64[N]`` contiguous class indices in ``0..C-1``.
        scores: ``float[N]`` for predictions, ``None`` for ground truth.
        masks: ``bool[N, H, W]`` at ``image_size``, or ``None``.

    Whether these are ground truth or predictions is decided by the slot that holds
    them (``DetSample.gt`` or a model's output), never by a field name.
    """

    boxes: Boxes
    labels: Tensor
    image_size: tuple[int, int]
    scores: Tensor | None = None
    masks: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.boxes, Boxes):
            self.boxes = Boxes(self.boxes)
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64).reshape(-1)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = len(self.boxes)
        if self.labels.shape[0] != n:
            raise ValueError(f"Instances: {n} boxes but {self.labels.shape[0]} labels")
        if self.scores is not None:
            self.scores = torch.as_tensor(self.scores, dtype=torch.float32).reshape(-1)
            if self.scores.shape[0] != n:
                raise ValueError(f"Instances: {n} boxes but {self.scores.shape[0]} scores")
        if self.masks is not None:
            self.masks = torch.as_tensor(self.masks)
            expected = (n, *self.image_size)
            if tuple(self.masks.shape) != expected:
                raise ValueError(
                    f"Instances: masks must have shape {expected}, got {tuple(self.masks.shape)}"
                )

    @classmethod
    def empty(cls, image_size: tuple[int, int], with_masks: bool = False) -> Instances:
        masks = torch.zeros((0, *image_size), dtype=torch.bool) if with_masks else None
        return cls(Boxes(torch.zeros(0, 4)), torch.zeros(0, dtype=torch.int64), image_size,
                   masks=masks)

    def __len__(self) -> int:
        return len(self.boxes)

    def __repr__(self) -> str:
        fields = ["boxes", "labels"] + [f for f in ("scores", "masks") if getattr(self, f) is not None]
        return f"Instances(num={len(self)}, image_size={self.image_size}, fields={fields})"

    def __getitem__(self, index: Any) -> Instances:
        """Select by int, slice, ``bool[N]`` or ``int64[K]`` index."""
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return Instances(
            boxes=self.boxes[index],
            labels=self.labels[index],
            image_size=self.image_size,
            scores=None if self.scores is None else self.scores[index],
            masks=None if self.masks is None else self.masks[index],
        )

    def to(self, device: torch.device | str) -> Instances:
        return Instances(
            boxes=self.boxes.to(device),
            labels=self.labels.to(device),
            image_size=self.image_size,
            scores=None if self.scores is None else self.scores.to(device),
            masks=None if self.masks is None else self.masks.to(device),
        )

    @staticmethod
    def cat(parts: Sequence[Instances]) -> Instances:
        """Concatenate instances of the same image; all or none must have scores/masks."""
        if not parts:
            raise ValueError("Instances.cat needs at least one Instances")
        sizes = {p.image_size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"Instances.cat: different image sizes {sorted(sizes)}")

        def joined(field: str) -> Tensor | None:
            values = [getattr(p, field) for p in parts]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError(f"Instances.cat: '{field}' is set on some parts only")
            return torch.cat(values, dim=0)

        return Instances(
            boxes=Boxes.cat([p.boxes for p in parts]),
            labels=torch.cat([p.labels for p in parts]),
            image_size=parts[0].image_size,
            scores=joined("scores"),
            masks=joined("masks"),
        )
