"""The random draws of ``numformer.utils.data``: which NumPy generator a ``generator=``
argument means, and the int64 seeds PyTorch's data utilities draw from it.

``generator`` is a ``numformer.Generator`` (PyTorch's ``torch.Generator``), None (numformer's
global generator, reseeded by ``manual_seed``) or, as numformer's extension, a
``numpy.random.Generator`` used as it is (the ``Trainer`` drives a loader's sampler with one).
"""

from __future__ import annotations

import numpy as np

from numformer import backend


def rng_of(generator) -> np.random.Generator:
    """The NumPy generator behind a ``generator=`` argument.

    Raises:
        TypeError: anything but None, a ``numformer.Generator`` or a ``numpy.random.Generator``."""
    if generator is None:
        return backend.generator()
    if isinstance(generator, backend.Generator):
        return generator.rng
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a numformer.Generator (or None), got {type(generator).__name__}")


def draw_seed(generator=None) -> int:
    """One seed in [0, 2^63) drawn from ``generator`` (PyTorch's ``torch.empty((),
    dtype=torch.int64).random_(generator=...)``): one draw, whatever uses the seed after."""
    return int(rng_of(generator).integers(2**63))


def seeded(seed: int) -> backend.Generator:
    """A fresh ``numformer.Generator`` seeded with ``seed``."""
    return backend.Generator().manual_seed(seed)
