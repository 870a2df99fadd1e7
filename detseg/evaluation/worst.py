"""Keep the lowest-scoring images of a streaming evaluation, for the report's gallery."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

from detseg.evaluation.base import gather


class WorstImages:
    """The ``capacity`` images with the lowest score among those offered, each with what
    ``make_payload`` returned for it (called only for images that are kept).

    Images are numbered in the order they are offered. In a distributed run, process ``r``
    of ``W`` evaluates data-set images ``r, r + W, r + 2W, ...``
    (:func:`detseg.engine.evaluate.this_process_share`), so its ``k``-th image is data-set
    image ``r + k W``: :meth:`gathered` gives data-set indices.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.reset()

    def reset(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []  # (-score, -position, payload): root = best kept
        self.seen = 0

    def offer(self, score: float, make_payload: Callable[[], Any]) -> None:
        """Consider the next image; NaN scores (nothing to score) are never kept."""
        position = self.seen
        self.seen += 1
        if self.capacity <= 0 or math.isnan(score):
            return
        entry = (-score, -position, None)
        if len(self._heap) < self.capacity:
            heapq.heappush(self._heap, (entry[0], entry[1], make_payload()))
        elif entry[:2] > self._heap[0][:2]:  # lower score (or equal and earlier) than the best kept
            heapq.heapreplace(self._heap, (entry[0], entry[1], make_payload()))

    def gathered(self) -> list[tuple[float, int, Any]]:
        """``(score, data-set index, payload)`` of the ``capacity`` worst images of all
        processes, lowest score first (collective in a distributed run: call it on all)."""
        enabled = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if enabled else (0, 1)
        mine = [(-neg, rank + (-neg_position) * world, payload) for neg, neg_position, payload in self._heap]
        everything = sorted(gather(mine), key=lambda item: (item[0], item[1]))
        return everything[: self.capacity]
