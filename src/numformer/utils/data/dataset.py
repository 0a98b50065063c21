"""Datasets as PyTorch's ``torch.utils.data.dataset``: map-style (``Dataset``: ``dataset[i]``,
``len``) and iterable (``IterableDataset``: ``iter``), ``TensorDataset``, ``StackDataset``,
``ConcatDataset``, ``ChainDataset``, ``Subset`` and ``random_split``.

numformer's ``TensorDataset`` also takes NumPy arrays (made tensors); everything else is
PyTorch's behaviour, errors included.
"""

from __future__ import annotations

import bisect
import itertools
import math
import warnings

from numformer.backend import default_generator, rng_of
from numformer.tensor import Tensor


class Dataset:
    """A map-style dataset: ``dataset[i]`` for an index (usually ``0 <= i < len(dataset)``).

    Subclasses define ``__getitem__`` and, for the default samplers, ``__len__``; an optional
    ``__getitems__(indices)`` returns the list of samples of a batch at once (the
    ``DataLoader`` calls it when present). ``a + b`` is ``ConcatDataset([a, b])``.
    """

    def __getitem__(self, index):
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A dataset read as a stream: subclasses define ``__iter__``.

    With worker processes each worker iterates its own copy: split the stream in ``__iter__``
    with ``get_worker_info()`` or every sample comes once per worker (PyTorch's rule).
    ``a + b`` is ``ChainDataset([a, b])``.
    """

    def __iter__(self):
        raise NotImplementedError("Subclasses of IterableDataset should implement __iter__.")

    def __add__(self, other: Dataset) -> ChainDataset:
        return ChainDataset([self, other])


class TensorDataset(Dataset):
    """Rows of tensors that share their first dimension: ``dataset[i]`` is
    ``tuple(t[i] for t in tensors)``. NumPy arrays are accepted and made tensors (numformer's).

    Shape: each tensor ``(N, *)``; an item a tuple of ``(*)`` tensors.

    Raises:
        IndexError: no tensors. AssertionError: first dimensions that differ (PyTorch's kind).
    """

    def __init__(self, *tensors) -> None:
        if not tensors:
            raise IndexError("TensorDataset: give at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)
        if any(t.ndim == 0 or t.shape[0] != self.tensors[0].shape[0] for t in self.tensors):
            raise AssertionError(f"Size mismatch between tensors: shapes {[tuple(t.shape) for t in self.tensors]}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class StackDataset(Dataset):
    """Datasets of one length zipped: ``StackDataset(a, b)[i] == (a[i], b[i])``, or with
    keywords ``StackDataset(x=a, y=b)[i] == {"x": a[i], "y": b[i]}``.

    Raises:
        ValueError: both positional and keyword datasets, none, or lengths that differ.
    """

    def __init__(self, *args, **kwargs) -> None:
        if args and kwargs:
            raise ValueError(
                "Supported either ``tuple``- (via ``args``) or ``dict``- (via ``kwargs``) like input/output, "
                "but both types are given."
            )
        if not args and not kwargs:
            raise ValueError("At least one dataset should be passed")
        datasets = list(args) if args else list(kwargs.values())
        self._length = len(datasets[0])
        if any(len(d) != self._length for d in datasets):
            raise ValueError("Size mismatch between datasets")
        self.datasets = args if args else kwargs

    def __getitem__(self, index):
        if isinstance(self.datasets, dict):
            return {key: d[index] for key, d in self.datasets.items()}
        return tuple(d[index] for d in self.datasets)

    def __getitems__(self, indices: list) -> list:
        named = isinstance(self.datasets, dict)
        parts = self.datasets.items() if named else enumerate(self.datasets)
        columns = {}
        for key, d in parts:
            if callable(getattr(d, "__getitems__", None)):
                items = d.__getitems__(indices)
                if len(items) != len(indices):
                    raise ValueError(
                        f"Nested dataset's output size mismatch. Expected {len(indices)}, got {len(items)}"
                    )
            else:
                items = [d[i] for i in indices]
            columns[key] = items
        if named:
            return [{key: column[row] for key, column in columns.items()} for row in range(len(indices))]
        return [tuple(column[row] for column in columns.values()) for row in range(len(indices))]

    def __len__(self) -> int:
        return self._length


class ConcatDataset(Dataset):
    """Map-style datasets one after another; ``cumulative_sizes[k]`` is the length of the
    first ``k + 1``.

    Raises:
        AssertionError: no datasets, or an ``IterableDataset`` among them (PyTorch's kind).
        ValueError: a negative index beyond the length.

    Args:
        datasets: the map-style datasets, in order.
    """

    @staticmethod
    def cumsum(sequence) -> list[int]:
        return list(itertools.accumulate(len(d) for d in sequence))

    def __init__(self, datasets) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise AssertionError("datasets should not be an empty iterable")
        if any(isinstance(d, IterableDataset) for d in self.datasets):
            raise AssertionError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = self.cumsum(self.datasets)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        offset = self.cumulative_sizes[which - 1] if which > 0 else 0
        return self.datasets[which][idx - offset]


class ChainDataset(IterableDataset):
    """Iterable datasets one after another (a stream of streams).

    Raises:
        AssertionError: a map-style dataset among them, when iterated or measured.

    Args:
        datasets: the iterable datasets, in order.
    """

    def __init__(self, datasets) -> None:
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise AssertionError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self) -> int:
        total = 0
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise AssertionError("ChainDataset only supports IterableDataset")
            total += len(d)
        return total


class Subset(Dataset):
    """The items of ``dataset`` at ``indices``, in that order.

    Raises:
        NotImplementedError: a subclass that overrides ``__getitem__`` but not
        ``__getitems__`` (the ``DataLoader`` would bypass its ``__getitem__``).

    Args:
        dataset: the dataset to take items from.
        indices: the indices kept, in order.
    """

    def __init__(self, dataset, indices) -> None:
        self.dataset = dataset
        self.indices = indices
        if type(self).__getitem__ is not Subset.__getitem__ and type(self).__getitems__ is Subset.__getitems__:
            raise NotImplementedError(
                f"{type(self).__name__} overrides __getitem__ but not __getitems__: define "
                "__getitems__(self, indices) as [self[i] for i in indices] so the DataLoader uses your logic"
            )

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list) -> list:
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset, lengths, generator=default_generator()) -> list[Subset]:  # noqa: B008 - PyTorch's default
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given ``lengths``.

    Fractions that sum to 1 are turned into lengths as PyTorch does: ``floor(len * f)`` each,
    then the remainder handed out one by one from the first split (a split of length 0 warns).

    Args:
        dataset: a map-style dataset.
        lengths: lengths summing to ``len(dataset)``, or fractions summing to 1.
        generator: the permutation's generator (default: numformer's global one; also a
            ``numpy.random.Generator``).

    Returns:
        One ``Subset`` per length.

    Raises:
        ValueError: a fraction outside [0, 1], or lengths that do not sum to the length.
    """
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        sizes = []
        for i, fraction in enumerate(lengths):
            if fraction < 0 or fraction > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
            sizes.append(math.floor(len(dataset) * fraction))
        for i in range(len(dataset) - sum(sizes)):
            sizes[i % len(sizes)] += 1
        for i, size in enumerate(sizes):
            if size == 0:
                warnings.warn(
                    f"Length of split at index {i} is 0. This might result in an empty dataset.", stacklevel=2
                )
        lengths = sizes
    if sum(lengths) != len(dataset):
        raise ValueError(
            f"Sum of input lengths ({sum(lengths)}) does not equal the length of the input dataset ({len(dataset)})!"
        )
    order = rng_of(generator).permutation(sum(lengths)).tolist()
    return [Subset(dataset, order[end - size : end]) for end, size in zip(itertools.accumulate(lengths), lengths)]
