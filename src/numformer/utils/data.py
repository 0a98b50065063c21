"""Datasets and batching as PyTorch's ``torch.utils.data`` has them.

``Dataset`` (map-style: ``__getitem__`` and ``__len__``), ``TensorDataset`` over arrays or
tensors of one first dimension, samplers (``SequentialSampler``, ``RandomSampler``,
``BatchSampler``), ``default_collate`` and ``DataLoader`` with ``batch_size``, ``shuffle``,
``sampler``, ``drop_last``, ``collate_fn`` and ``generator``. Shuffling draws from numformer's
generator (``manual_seed``) unless a ``numpy.random.Generator`` is given, so a seeded script
sees the same batches every run.

Differences from PyTorch: no worker processes (``num_workers``), batches are numformer
tensors, and a dataset with ``__getitems__(indices)`` (``TensorDataset`` has one) is asked for
a whole batch at once, already collated, when the default collate is used: one fancy index per
tensor instead of a Python loop over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from numformer import backend
from numformer.backend import xp
from numformer.tensor import Tensor, stack


class Dataset:
    """A map-style dataset: ``dataset[i]`` for ``0 <= i < len(dataset)``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Rows of tensors (or arrays) that share their first dimension: ``dataset[i]`` is the tuple
    ``(t[i] for t in tensors)``.

    Shape: each tensor ``(N, *)``; an item is a tuple of ``(*)`` tensors, a batch of ``B``
    indices a tuple of ``(B, *)`` tensors.

    Raises:
        ValueError: no tensors, or first dimensions that differ.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)
        sizes = [t.shape[0] if t.ndim else None for t in self.tensors]
        if None in sizes or len(set(sizes)) != 1:
            shapes = [t.shape for t in self.tensors]
            raise ValueError(f"TensorDataset: every tensor needs the same first dimension, got shapes {shapes}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices):
        """The batch at ``indices``, collated: one index per tensor."""
        idx = np.asarray(indices, dtype=np.int64)
        return tuple(Tensor._wrap(t.array[xp.asarray(idx)], False) for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class Sampler:
    """Yields the indices of a dataset in some order."""

    def __iter__(self):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation of the indices at each iteration, drawn from ``generator`` (a
    ``numpy.random.Generator``) or, when None, from numformer's generator (``manual_seed``)."""

    def __init__(self, data_source, generator: np.random.Generator | None = None):
        self.data_source, self.generator = data_source, generator

    def __iter__(self):
        rng = self.generator if self.generator is not None else backend.generator()
        return iter(rng.permutation(len(self.data_source)).tolist())

    def __len__(self) -> int:
        return len(self.data_source)


class BatchSampler(Sampler):
    """Lists of ``batch_size`` indices from ``sampler``; the last may be shorter unless
    ``drop_last``."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BatchSampler: batch_size must be a positive int, got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def default_collate(batch):
    """Stack a list of samples into a batch, as PyTorch's: tensors, arrays and numbers become one
    tensor with a new first dimension; tuples, lists and dicts are collated field by field;
    strings stay a list.

    Raises:
        TypeError: a sample of a type it cannot stack. ValueError: samples of different shapes.
    """
    first = batch[0]
    if isinstance(first, Tensor):
        return stack(list(batch))  # in the graph, as torch.stack
    if isinstance(first, (np.ndarray, xp.ndarray, np.generic, int, float)) and not isinstance(first, bool):
        try:
            return Tensor(xp.stack([xp.asarray(s) for s in batch]))
        except ValueError as err:
            raise ValueError(f"default_collate: samples of different shapes cannot be stacked: {err}") from None
    if isinstance(first, bool):
        return Tensor(xp.asarray(batch))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, Mapping):
        return {key: default_collate([s[key] for s in batch]) for key in first}
    if isinstance(first, Sequence):
        if any(len(s) != len(first) for s in batch):
            raise ValueError("default_collate: every sample must have the same number of fields")
        collated = [default_collate(list(fields)) for fields in zip(*batch)]
        return tuple(collated) if isinstance(first, tuple) else collated
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; pass collate_fn")


class DataLoader:
    """Batches of a dataset, as PyTorch's ``DataLoader``: ``for x, y in DataLoader(ds, 32,
    shuffle=True): ...``.

    ``shuffle`` draws a new order each epoch (``RandomSampler``, from ``generator`` or
    numformer's generator); ``sampler`` gives the order instead; ``drop_last`` drops a short
    last batch; ``collate_fn(list of samples) -> batch`` (default ``default_collate``).
    ``num_workers`` must be 0 and ``pin_memory`` is ignored (PyTorch scripts pass them).

    Raises:
        ValueError: ``batch_size`` not a positive int, or ``shuffle`` together with ``sampler``.
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        sampler: Sampler | None = None,
        drop_last: bool = False,
        collate_fn=None,
        generator: np.random.Generator | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        if num_workers != 0:
            raise ValueError(
                f"DataLoader: num_workers must be 0 (numformer loads in the calling process), got {num_workers}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(f"DataLoader: generator must be a numpy.random.Generator, got {type(generator).__name__}")
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DataLoader: dataset must be map-style (__getitem__ and __len__), got {type(dataset).__name__}"
            )
        if shuffle and sampler is not None:
            raise ValueError("DataLoader: shuffle=True and a sampler exclude each other (the sampler sets the order)")
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.collate_fn, self.generator = collate_fn, generator
        if sampler is None:
            sampler = RandomSampler(dataset, generator) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)

    def fetch(self, indices):
        """The batch at ``indices`` (one collated batch), as iteration yields it."""
        if self.collate_fn is None and hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(indices)
        collate = self.collate_fn or default_collate
        return collate([self.dataset[i] for i in indices])

    def __iter__(self):
        for indices in self.batch_sampler:
            yield self.fetch(indices)

    def __len__(self) -> int:
        return len(self.batch_sampler)
