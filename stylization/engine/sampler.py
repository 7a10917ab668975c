"""A distributed, resumable sampler: per-epoch permutations that can start mid-epoch."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Shuffled indices of this rank's share of each epoch, after the epoch's first ``start`` samples.

    Epoch e's order is ``randperm(n)`` under a generator seeded with ``seed + e``, the same on
    every rank. ``set_epoch(e, start)`` drops the first ``start`` entries of that order (the
    samples all ranks together consumed before a resume), pads the rest by wrapping around to the
    start of the order until every rank gets the same count, ``ceil((n - start) / world_size)``,
    and gives rank r every ``world_size``-th entry from entry r (the global rank: ranks on other
    nodes hold the other residues). So within an epoch the ranks' shares are disjoint and together
    cover every sample once, plus at most ``world_size - 1`` padding repeats (as DistributedSampler
    does); with ``start = 0`` that is ``ceil(n / world_size) * world_size - n`` repeats.

    Because ``start`` counts samples of the whole world, not one rank's, a run resumed with another
    world size continues with exactly the samples of the epoch not yet consumed. With an unchanged
    world size and ``start = s * world_size``, rank r's share is the one of an uninterrupted epoch
    without its first ``s`` entries.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        if n < 1:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
        self.n, self.rank, self.world_size, self.seed, self.shuffle = n, rank, world_size, seed, shuffle
        self.per_rank = -(-n // world_size)  # a rank's share of a whole epoch, padding included
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Start epoch ``epoch`` after its first ``start`` samples (all ranks together)."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.epoch, self.start = epoch, start

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        rest = order[self.start :]
        padding = len(self) * self.world_size - len(rest)
        # Wrapping from the epoch's first entry (not the rest's) keeps an unchanged world's shares
        # identical to an uninterrupted epoch's, padding included.
        rest += (order * (padding // self.n + 1))[:padding]
        return rest[self.rank :: self.world_size]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return -(-max(0, self.n - self.start) // self.world_size)
