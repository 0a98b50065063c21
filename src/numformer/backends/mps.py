"""``numformer.backends.mps``: Apple's GPU, which numformer does not run on."""

from __future__ import annotations


def is_available() -> bool:
    return False


def is_built() -> bool:
    return False
