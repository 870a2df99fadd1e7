"""What every model offers: explicit ``loss`` and ``predict``, chosen by a mode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from detseg.structures import DetSample


class Model(nn.Module):
    """``loss(samples) -> dict`` of weighted ``loss_*`` terms; ``predict(samples)`` ->
    per-sample predictions in original image coordinates. ``forward`` dispatches on an
    explicit ``mode``, never on ``self.training``. ``task`` is ``detection`` or
    ``segmentation``."""

    task = "detection"

    def loss(self, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        raise NotImplementedError

    def predict(self, samples: Sequence[DetSample]) -> list[Any]:
        raise NotImplementedError

    def forward(self, samples: Sequence[DetSample], mode: str = "loss"):
        if mode == "loss":
            return self.loss(samples)
        if mode == "predict":
            return self.predict(samples)
        raise ValueError(f"mode must be 'loss' or 'predict', got {mode!r}")
