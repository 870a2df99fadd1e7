"""The vocabulary config schemas are written in: component nodes and bounded numbers.

A config section is a dataclass whose fields carry these annotations; validation
(:mod:`detseg.config_validate`) reads them::

    dataset: Component(DATASETS)        # a {name: ..., **kwargs} node built from a registry
    batch_size: PositiveInt = 2         # Annotated[int, Range(1)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any

from detseg.registry import Registry

SUPPLIED_BY_CALLER = frozenset({"dataset", "transforms", "input_shape", "model_input_size", "model_num_classes"})
"""Builder parameters that code passes in (a data set to an evaluator, the transform
pipeline to a data set, the feature shapes and input side a neck or head is built for); a config node
never sets them and validation does not ask."""


def Component(registry: Registry) -> Any:
    """Annotation for a config node built from ``registry`` (``{name: ..., **kwargs}``)."""
    return Annotated[Mapping, registry]


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a numeric config value, carried by ``Annotated[int | float, Range(...)]``.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``; ``None`` is unbounded.
    Validation refuses a value outside them, naming the key and the allowed range.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{low}, {high}{right}"


PositiveInt = Annotated[int, Range(1)]
"""A count that must be at least 1: batch sizes, iteration counts, top-k."""
NonNegativeInt = Annotated[int, Range(0)]
"""A count where 0 means "none" or "off": warmup iterations, workers, evaluation period."""
PositiveFloat = Annotated[float, Range(0, low_open=True)]
"""A strictly positive real: learning rates, gradient-norm caps, loss weights' scales."""
NonNegativeFloat = Annotated[float, Range(0)]
"""A real that may be 0: weight decay, minimum box sizes."""
UnitInterval = Annotated[float, Range(0, 1)]
"""A value in [0, 1]: probabilities, IoU and score thresholds, fractions, momenta."""
