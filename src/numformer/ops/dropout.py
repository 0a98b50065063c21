"""Inverted dropout: the scaled keep-mask drawn once and kept for backward."""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp
from numformer.ops._threads import binary, dropout_mask


class Dropout(Function):
    """Inverted dropout: y = x * keep / (1 - p), the scaled mask kept for backward (dx = g * it)."""

    saves_inputs = False

    def forward(self, x, p, rng):
        self.mask = dropout_mask(rng, x.shape, p, x.dtype)
        return binary(xp.multiply, x, self.mask)

    def backward(self, g):
        return (binary(xp.multiply, g, self.mask),)
