"""DataLoaders from a split's loader settings (``data.<split>``, :class:`~detseg.data.LoaderConfig`).

The training split feeds an endless, resumable stream (:class:`InfiniteSampler`); an
evaluation split is read once, in order. Between them every setting of the section is
used: ``dataset``, ``transforms`` and ``proposals`` by :func:`detseg.data.build_dataset`,
the rest here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detseg.config import build_section
from detseg.data import DetectionDataset, LoaderConfig, collate_samples
from detseg.engine.sampler import (
    InfiniteSampler,
    aspect_ratio_groups,
    read_summaries,
    repeat_factors,
)
from detseg.errors import ConfigError

TRAINING_ONLY = ("shuffle", "drop_last")
"""Settings of the training stream that an evaluation split refuses: it reads every image once, in order."""


def loader_settings(node: Any, path: str) -> LoaderConfig:
    """The loader settings of the split at ``path`` (``data.train``, ``data.val`` ...).

    Raises:
        ConfigError: a training-only setting turned on for an evaluation split.
    """
    settings = build_section(LoaderConfig, node, path)
    if not path.endswith(".train"):
        for key in TRAINING_ONLY:
            if getattr(settings, key):
                raise ConfigError(f"{path}.{key}: a setting of the training split (data.train) only; "
                                  f"evaluation reads every image once, in order")
    return settings


class WholeBatchSampler(InfiniteSampler):
    """:class:`InfiniteSampler` whose epochs are cut to a multiple of ``batch_span`` items
    (``drop_last``): every batch of every process then comes from one epoch, and what does
    not fill a last batch waits for the next epoch's order."""

    def __init__(self, size: int, batch_span: int, **kwargs: Any) -> None:
        if size < batch_span:
            raise ValueError(f"drop_last needs at least {batch_span} images (batch size x processes), "
                             f"the data set has {size}")
        super().__init__(size, **kwargs)
        self.batch_span = batch_span

    def epoch_order(self, epoch: int) -> torch.Tensor:
        order = super().epoch_order(epoch)
        return order[: len(order) - len(order) % self.batch_span]


def sampling_weights(dataset: DetectionDataset, settings: LoaderConfig, progress: bool,
                     say: Callable[[str], None]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Repeat factors and aspect-ratio groups of the training images, where the settings ask for them."""
    threshold, grouped = settings.repeat_factor_threshold, settings.group_by_aspect_ratio
    if threshold is None and not grouped:
        return None, None
    if threshold is not None and threshold <= 0:
        raise ConfigError(f"data.train.repeat_factor_threshold must be > 0 (a fraction of the images), "
                          f"got {threshold}")
    summaries = read_summaries(dataset, progress)
    factors = repeat_factors([s.labels for s in summaries], threshold) if threshold is not None else None
    groups = aspect_ratio_groups([(s.height, s.width) for s in summaries]) if grouped else None
    if factors is not None:
        say(f"repeat-factor sampling (threshold {threshold:g}): an epoch draws {factors.sum():.0f} "
            f"images for {len(factors)} ({factors.mean():.2f} per image, up to {factors.max():.2f})")
    if groups is not None:
        say(f"aspect-ratio grouping: {int((groups == 0).sum())} landscape/square and "
            f"{int((groups == 1).sum())} portrait images, batched apart")
    return factors, groups


def training_loader(dataset: DetectionDataset, settings: LoaderConfig, seed: int, start: int, rank: int = 0,
                    num_replicas: int = 1, factors: np.ndarray | None = None,
                    groups: np.ndarray | None = None) -> DataLoader:
    """The training stream of this process from item ``start`` (of the one-process stream) on.

    Raises:
        ConfigError: the settings cannot be sampled (too few images for a batch of one
            orientation, or for ``drop_last``), naming ``data.train``.
    """
    span = settings.batch_size * num_replicas
    options = dict(seed=seed, shuffle=settings.shuffle, start=start, rank=rank, num_replicas=num_replicas,
                   repeat_factors=factors, groups=groups, group_size=span)
    try:
        sampler = (WholeBatchSampler(len(dataset), span, **options) if settings.drop_last
                   else InfiniteSampler(len(dataset), **options))
    except ValueError as exc:
        raise ConfigError(f"data.train: {exc}") from None
    # A private generator: creating the loader must not draw from the global RNG, or a
    # resumed run would be one draw out of step with an uninterrupted one.
    return DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, num_workers=settings.num_workers,
                      collate_fn=collate_samples, persistent_workers=settings.num_workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def evaluation_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Every image of ``dataset`` once, in order, in batches of ``batch_size``."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_samples)
