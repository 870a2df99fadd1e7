"""The training stream: an endless, resumable sequence of ``(index, augmentation seed)``
pairs, optionally class-balanced (repeat-factor sampling) and grouped by aspect ratio."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from detseg.progress import progress as progress_bar


def repeat_factors(labels_per_image: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """Repeat-factor sampling of LVIS (Gupta et al., CVPR 2019), ``float64[num_images]``.

    With ``f(c)`` the fraction of images that contain class ``c``, the class repeat factor is
    ``r(c) = max(1, sqrt(threshold / f(c)))`` and an image repeats ``max r(c)`` over its
    classes (1 for an image without objects): classes in fewer than ``threshold`` of the
    images are seen more often, the others as before.
    """
    if threshold <= 0:
        raise ValueError(f"repeat_factor_threshold must be > 0, got {threshold}")
    classes_per_image = [set(np.asarray(labels).tolist()) for labels in labels_per_image]
    images_with: dict[int, int] = {}
    for classes in classes_per_image:
        for c in classes:
            images_with[c] = images_with.get(c, 0) + 1
    total = max(len(classes_per_image), 1)
    class_factor = {c: max(1.0, math.sqrt(threshold / (n / total))) for c, n in images_with.items()}
    return np.array([max((class_factor[c] for c in classes), default=1.0) for classes in classes_per_image])


def aspect_ratio_groups(sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """``int64[num_images]``: 0 for landscape or square images, 1 for portrait; ``sizes``
    are ``(height, width)``."""
    return np.array([int(height > width) for height, width in sizes], dtype=np.int64)


def read_summaries(dataset, progress: bool = True) -> list:
    """:meth:`~detseg.data.base.DetectionDataset.summary` of every image (with a progress
    bar, since data sets without annotation files read each image for it)."""
    return [dataset.summary(i) for i in progress_bar(range(len(dataset)), desc="reading labels for sampling",
                                             disable=not progress, leave=False)]


class InfiniteSampler(Sampler):
    """Epoch after epoch, an order of the data set's indices drawn from ``(seed, epoch)``.

    Each item is ``(index, sample_seed)`` where ``sample_seed`` is unique to its position
    in the stream, so data order *and* augmentation depend only on the seed and the
    position: starting at ``start`` reproduces exactly what an uninterrupted run would
    have seen from there on, whatever the number of loader workers.

    With ``num_replicas > 1`` each rank takes every ``num_replicas``-th item.

    Args:
        repeat_factors: per image (see :func:`repeat_factors`); an epoch holds image ``i``
            ``floor(r_i)`` times plus once more with probability ``r_i - floor(r_i)``.
        groups: per image, a group id (see :func:`aspect_ratio_groups`); the epoch is cut
            into runs of ``group_size`` items of one group each, so that every batch of
            every rank holds one group when ``group_size`` is ``batch_size x num_replicas``.
            The items of a group that do not fill a run wait for the next epoch's order
            (they are left out of this one).
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, start: int = 0,
                 rank: int = 0, num_replicas: int = 1, repeat_factors: Sequence[float] | None = None,
                 groups: Sequence[int] | None = None, group_size: int = 1) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty data set")
        for name, values in (("repeat_factors", repeat_factors), ("groups", groups)):
            if values is not None and len(values) != size:
                raise ValueError(f"{name} has {len(values)} values for {size} images")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.start = start
        self.rank = rank
        self.num_replicas = num_replicas
        self.repeat_factors = None if repeat_factors is None else torch.as_tensor(repeat_factors, dtype=torch.float64)
        self.groups = None if groups is None else torch.as_tensor(groups, dtype=torch.int64)
        self.group_size = group_size
        if self.groups is not None:
            largest_group = int(torch.bincount(self.groups).max())
            if largest_group < group_size:
                raise ValueError(f"grouping by aspect ratio needs at least {group_size} images (batch size "
                                 f"x processes) of one orientation; the largest group has {largest_group}")

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start * self.num_replicas + self.rank
        epoch, offset = 0, position
        order = self.epoch_order(epoch)
        while True:
            while offset >= len(order):
                offset -= len(order)
                epoch += 1
                order = self.epoch_order(epoch)
            yield int(order[offset]), (self.seed * 1_000_003 + position) % (2**31)
            position += self.num_replicas
            offset += self.num_replicas

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The indices of epoch ``epoch``, in the order they are drawn."""
        generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        order = torch.arange(self.size)
        if self.repeat_factors is not None:
            whole = self.repeat_factors.floor()
            extra = torch.rand(self.size, generator=generator, dtype=torch.float64) < self.repeat_factors - whole
            order = torch.repeat_interleave(order, (whole + extra).long())
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=generator)]
        if self.groups is not None:
            order = runs_of_one_group(order, self.groups, self.group_size)
        return order


def runs_of_one_group(order: torch.Tensor, groups: torch.Tensor, run: int) -> torch.Tensor:
    """``order`` regrouped into consecutive runs of ``run`` indices of one group each: each
    group fills its own bucket in order, a full bucket is emitted whole; what is left in
    the buckets at the end is dropped."""
    group_of = groups.tolist()  # plain ints: indexing a tensor item by item is slow
    buckets: dict[int, list[int]] = {}
    out: list[int] = []
    for index in order.tolist():
        bucket = buckets.setdefault(group_of[index], [])
        bucket.append(index)
        if len(bucket) == run:
            out.extend(bucket)
            bucket.clear()
    return torch.tensor(out, dtype=torch.int64)
