"""``DistributedSampler`` as PyTorch's ``torch.utils.data.distributed``: each of
``num_replicas`` processes reads its own share of a dataset.

The ranks default to numformer's MPI world (``numformer.distributed.world()``: its ``size`` and
``rank``; one process outside ``mpiexec``). The shuffled order comes from a
``numformer.Generator`` seeded with ``seed + epoch``, so every rank computes the same
permutation without communicating; it is not PyTorch's permutation (another generator), but
the split is PyTorch's: padded by repeating the permutation's first indices up to a multiple of
``num_replicas`` (or cut to one with ``drop_last``), then rank ``r`` takes every
``num_replicas``-th index from position ``r``.
"""

from __future__ import annotations

import math

from numformer.creation import randperm
from numformer.distributed import world
from numformer.utils.data._random import seeded
from numformer.utils.data.sampler import Sampler


class DistributedSampler(Sampler):
    """The indices of one rank's share of ``dataset``, reshuffled per epoch (``set_epoch``).

    Call ``set_epoch(epoch)`` before each epoch's iterator, or every epoch has the same order.

    Args:
        dataset: a map-style dataset (its length is read once, here).
        num_replicas: the number of processes (default: ``world().size``).
        rank: this process's rank (default: ``world().rank``).
        shuffle: permute the indices (else ``0 .. len - 1`` in order).
        seed: the permutation's seed, the same on every rank.
        drop_last: drop the tail that does not split evenly, instead of padding.

    Raises:
        ValueError: a rank outside ``[0, num_replicas)``.
    """

    def __init__(
        self,
        dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None:
            num_replicas = world().size
        if rank is None:
            rank = world().rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(self.dataset)
        if self.drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = randperm(n, generator=seeded(self.seed + self.epoch)).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[: self.total_size]
        else:
            padding = self.total_size - len(indices)
            indices += (indices * math.ceil(padding / len(indices)))[:padding] if padding else []
        return iter(indices[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` in the next permutation's seed (``seed + epoch``)."""
        self.epoch = epoch
