"""A segmenter's prediction for one image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SemanticMap:
    """The class of every pixel of one image: ``labels`` is ``int64[H, W]`` with values
    ``0..C-1`` (0 is background; class ``k`` of the data set's ``class_names`` is ``k + 1``),
    at the size of the original image."""

    labels: Tensor

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the map."""
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    def to(self, device: torch.device | str) -> SemanticMap:
        return SemanticMap(self.labels.to(device))
