"""Samplers as PyTorch's ``torch.utils.data.sampler``: the order in which a ``DataLoader``
reads a map-style dataset.

Random samplers draw from their ``generator`` (a ``numformer.Generator``; numformer also takes
a ``numpy.random.Generator``) or, when it is None, as PyTorch does: ``RandomSampler`` draws one
seed from numformer's global generator at the start of each pass and permutes with a fresh
generator of that seed, so a pass costs the global stream one draw whatever the dataset's size.
numformer's generator is not PyTorch's, so the orders differ from PyTorch's; their structure
(what is drawn when, how many, from where) is PyTorch's.
"""

from __future__ import annotations

import itertools

import numpy as np

from numformer.backend import rng_of
from numformer.utils.data._random import draw_seed, seeded


class Sampler:
    """Yields indices (or, for a batch sampler, lists of indices) of a dataset. Subclasses
    define ``__iter__`` and, where they can, ``__len__``."""

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``.

    Args:
        data_source: the dataset (its length is used).
    """

    def __init__(self, data_source) -> None:
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random order of the dataset's indices, fresh at each pass.

    Without replacement: whole permutations, ``num_samples`` indices in all (several
    permutations back to back when it exceeds the length). With replacement: ``num_samples``
    independent uniform draws (made 32 at a time, as PyTorch's).

    Args:
        data_source: the dataset (its length is read at each pass).
        replacement: draw with replacement.
        num_samples: how many indices a pass yields (default: the dataset's length).
        generator: see the module's docstring.

    Raises:
        TypeError: ``replacement`` not a bool. ValueError: ``num_samples`` not a positive int.
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None, generator=None) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(self.replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={self.replacement}")
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        rng = rng_of(seeded(draw_seed()) if self.generator is None else self.generator)
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from rng.integers(n, size=32).tolist()
            yield from rng.integers(n, size=self.num_samples % 32).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from rng.permutation(n).tolist()
            yield from rng.permutation(n).tolist()[: self.num_samples % n]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order, fresh at each pass, drawn from ``generator``
    (numformer's global generator when None).

    Args:
        indices: the indices to draw from.
        generator: a ``numformer.Generator`` (or NumPy generator) to draw the order from.
    """

    def __init__(self, indices, generator=None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        for i in rng_of(self.generator).permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices in ``[0, len(weights))`` drawn with probabilities proportional
    to ``weights`` (with or without replacement).

    Raises:
        ValueError: ``num_samples`` not a positive int, ``replacement`` not a bool, weights not
        1-D. RuntimeError: at iteration, weights that are negative, not finite or all zero, or
        fewer positive weights than samples without replacement (PyTorch's ``multinomial``).

    Args:
        weights: one non-negative weight per index (need not sum to 1).
        num_samples: indices per pass.
        replacement: draw with replacement (True).
        generator: a ``numformer.Generator`` (or NumPy generator) to draw from.
    """

    def __init__(self, weights, num_samples: int, replacement: bool = True, generator=None) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={num_samples}")
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement should be a boolean value, but got replacement={replacement}")
        values = weights.numpy() if hasattr(weights, "numpy") else weights
        self.weights = np.asarray(values, dtype=np.float64)
        if self.weights.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape {self.weights.shape}")
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self):
        w = self.weights
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise RuntimeError("invalid multinomial distribution: weights must be finite, non-negative, not all zero")
        if not self.replacement and self.num_samples > int((w > 0).sum()):
            raise RuntimeError(
                "cannot sample n_sample > prob_dist.size(-1) samples without replacement: "
                f"{self.num_samples} samples, {int((w > 0).sum())} positive weights"
            )
        picks = rng_of(self.generator).choice(len(w), self.num_samples, replace=self.replacement, p=w / w.sum())
        yield from picks.tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Lists of ``batch_size`` indices from ``sampler``; the last may be shorter unless
    ``drop_last``.

    Raises:
        ValueError: ``batch_size`` not a positive int, or ``drop_last`` not a bool.

    Args:
        sampler: the indices to batch (a sampler or any iterable of indices).
        batch_size: indices per batch.
        drop_last: drop a last batch shorter than ``batch_size``.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        indices = iter(self.sampler)
        while batch := list(itertools.islice(indices, self.batch_size)):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
