"""A distributed, resumable sampler: per-epoch permutations that can start mid-epoch."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Shuffled indices of this rank's share of each epoch, starting at ``start``.

    Epoch e's order is ``randperm(n)`` under a generator seeded with ``seed + e``, padded by
    wrapping so every rank gets ``ceil(n / world_size)`` indices, then strided by rank (as
    DistributedSampler does). ``set_epoch(e, start)`` skips the first ``start`` indices of
    this rank's share: that is how a resumed run continues from its data position.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        if n < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.rank, self.world_size, self.seed, self.shuffle = n, rank, world_size, seed, shuffle
        self.per_rank = -(-n // world_size)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        order = (order * (-(-total // self.n)))[:total]
        return order[self.rank :: self.world_size]

    def __iter__(self):
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start
