"""What every model offers: explicit ``loss`` and ``predict``, chosen by a mode, and the
interface that says what ``predict`` returns (:class:`Detector`: :class:`Instances`, or
:class:`Segmenter`: :class:`SemanticMap`).

Code that treats detection and segmentation differently (evaluation, training's metric,
the Predictor, export) asks ``isinstance(model, Segmenter)``, never a string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from detseg.structures import DetSample, Instances, SemanticMap


class Model(nn.Module):
    """``loss(samples) -> dict`` of weighted ``loss_*`` terms; ``predict(samples)`` ->
    per-sample predictions in original image coordinates. ``forward`` dispatches on an
    explicit ``mode``, never on ``self.training``."""

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


class Detector(Model):
    """``predict(samples) -> list[Instances]``: boxes (xyxy pixels of the original image),
    ``scores``, ``labels`` in ``0..C-1``, and ``masks`` when :attr:`predicts_masks`."""

    num_classes: int

    @property
    def predicts_masks(self) -> bool:
        return False

    @property
    def proposals_in_graph(self) -> bool:
        """False when the model reads its region proposals from outside the network
        (selective search, a proposal file): no exported graph can hold it."""
        return True

    def predict(self, samples: Sequence[DetSample]) -> list[Instances]:
        raise NotImplementedError


class Segmenter(Model):
    """``predict(samples) -> list[SemanticMap]``: per sample the class of each pixel,
    ``int64[H, W]`` (``0..C-1``), at the original image's size."""

    num_classes: int

    @property
    def any_input_size(self) -> bool:
        """Whether one traced graph serves every image size (fully convolutional)."""
        return True

    def predict(self, samples: Sequence[DetSample]) -> list[SemanticMap]:
        raise NotImplementedError


def task_name(model: nn.Module) -> str:
    """``segmentation`` or ``detection``: the name checkpoints record for people and tools."""
    return "segmentation" if isinstance(model, Segmenter) else "detection"
