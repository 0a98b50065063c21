"""The random draws of ``numformer.utils.data``: the int64 seeds PyTorch's data utilities
draw from a ``generator=`` argument.

``generator`` is resolved by ``numformer.backend.rng_of``, as everywhere in numformer: a
``numformer.Generator`` (PyTorch's ``torch.Generator``), None (numformer's global generator,
reseeded by ``manual_seed``) or, as numformer's extension, a ``numpy.random.Generator`` used
as it is (the ``Trainer`` drives a loader's sampler with one).
"""

from __future__ import annotations

from numformer import backend


def draw_seed(generator=None) -> int:
    """One seed in [0, 2^63) drawn from ``generator`` (PyTorch's ``torch.empty((),
    dtype=torch.int64).random_(generator=...)``): one draw, whatever uses the seed after."""
    return int(backend.rng_of(generator).integers(2**63))


def seeded(seed: int) -> backend.Generator:
    """A fresh ``numformer.Generator`` seeded with ``seed``."""
    return backend.Generator().manual_seed(seed)
