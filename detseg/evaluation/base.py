"""The streaming evaluator protocol and the multi-process gather it relies on."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


class Evaluator:
    """``reset()``, then ``update(...)`` per batch, then ``compute() -> dict[str, float]``.

    Subclasses keep their state in plain Python objects; :func:`gather` concatenates the
    state of all processes before ``compute`` so a multi-process run gives the numbers of
    a single-process run.

    ``dataset`` is the data set an evaluator was built for (``None`` when built from files):
    the report's gallery draws its images.
    """

    dataset: Any = None

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


def gather(items: list[Any]) -> list[Any]:
    """All processes' ``items`` concatenated in rank order (a no-op without distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    everything: list[list[Any]] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(everything, items)
    return [item for part in everything for item in part]


def nest_per_class(metrics: dict[str, float]) -> dict[str, Any]:
    """``{"AP": .5, "AP/cat": .4}`` -> ``{"AP": .5, "per_class": {"cat": {"AP": .4}}}``."""
    out: dict[str, Any] = {}
    per_class: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if "/" in key:
            metric, name = key.split("/", 1)
            per_class.setdefault(name, {})[metric] = value
        else:
            out[key] = value
    if per_class:
        out["per_class"] = per_class
    return out
