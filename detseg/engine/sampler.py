"""An endless, resumable stream of ``(index, augmentation seed)`` pairs."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class InfiniteSampler(Sampler):
    """Epoch after epoch, a permutation of ``range(size)`` drawn from ``(seed, epoch)``.

    Each item is ``(index, sample_seed)`` where ``sample_seed`` is unique to its position
    in the stream, so data order *and* augmentation depend only on the seed and the
    position: starting at ``start`` reproduces exactly what an uninterrupted run would
    have seen from there on, whatever the number of loader workers.

    With ``num_replicas > 1`` each rank takes every ``num_replicas``-th item.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, start: int = 0,
                 rank: int = 0, num_replicas: int = 1) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty data set")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.start = start
        self.rank = rank
        self.num_replicas = num_replicas

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start * self.num_replicas + self.rank
        while True:
            epoch, offset = divmod(position, self.size)
            order = self._order(epoch)
            while offset < self.size:
                yield int(order[offset]), (self.seed * 1_000_003 + position) % (2**31)
                position += self.num_replicas
                epoch_now, offset = divmod(position, self.size)
                if epoch_now != epoch:
                    break

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return torch.randperm(self.size, generator=generator)
