"""Reductions: sum, mean, max (with and without an axis), var.

``axis`` is ``None`` (all), an int or a tuple of ints, normalised to a tuple by the caller.
"""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp


def _expand(g, shape, axis, keepdims):
    """Put back the reduced axes of ``g`` as size-1 dims so it broadcasts against ``shape``."""
    if axis is None:
        return g.reshape((1,) * len(shape))
    if keepdims:
        return g
    return xp.expand_dims(g, axis)


def _count(shape, axis) -> int:
    if axis is None:
        n = 1
        for s in shape:
            n *= s
        return n
    n = 1
    for a in axis:
        n *= shape[a]
    return n


class Sum(Function):
    saves_inputs = False

    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return xp.sum(a, axis=axis, keepdims=keepdims)

    def backward(self, g):
        g = _expand(g, self.shape, self.axis, self.keepdims)
        return (xp.broadcast_to(g, self.shape),)


class Mean(Function):
    saves_inputs = False

    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        if a.size:
            return xp.mean(a, axis=axis, keepdims=keepdims)
        with xp.errstate(invalid="ignore"):  # the mean of nothing is NaN, as in PyTorch (no warning)
            return (xp.sum(a, axis=axis, keepdims=keepdims) / a.dtype.type(_count(a.shape, axis))).astype(a.dtype)

    def backward(self, g):
        with xp.errstate(divide="ignore", invalid="ignore"):
            g = _expand(g, self.shape, self.axis, self.keepdims) / _count(self.shape, self.axis)
        return (xp.broadcast_to(g, self.shape).astype(g.dtype, copy=False),)


class Var(Function):
    """Variance with ``correction`` (1 = unbiased, PyTorch's default). d/dx = 2 (x - mean) / (n - c)."""

    saves_inputs = False

    def forward(self, a, axis=None, keepdims=False, correction=1):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        n = _count(a.shape, axis)
        # n <= correction (one value, unbiased; or none): the variance is NaN, as in PyTorch
        self.denominator = a.dtype.type(max(n - correction, 0))
        with xp.errstate(divide="ignore", invalid="ignore"):
            self.centred = a - xp.sum(a, axis=axis, keepdims=True) / a.dtype.type(n)  # no "empty slice" warning
            sq = xp.sum(self.centred * self.centred, axis=axis, keepdims=keepdims)
            return (sq / self.denominator).astype(a.dtype, copy=False)

    def backward(self, g):
        g = _expand(g, self.shape, self.axis, self.keepdims)
        with xp.errstate(divide="ignore", invalid="ignore"):  # NaN where the variance is NaN
            return (g * (2 / self.denominator) * self.centred,)


class Max(Function):
    """Max over all elements or over ``axis`` (one int).

    Over all elements the gradient is shared equally among ties (PyTorch's ``max()``); over an
    axis it goes to the index ``argmax`` picks (PyTorch's ``max(dim)``), returned as ``indices``.
    """

    saves_inputs = False

    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        if axis is None:
            out = xp.max(a)
            self.mask = a == out
            return out
        self.indices = xp.argmax(a, axis=axis[0], keepdims=True)
        out = xp.take_along_axis(a, self.indices, axis=axis[0])
        return out if keepdims else xp.squeeze(out, axis=axis[0])

    def backward(self, g):
        if self.axis is None:
            return (self.mask * (g / self.mask.sum()).astype(g.dtype, copy=False),)
        g = _expand(g, self.shape, self.axis, self.keepdims)
        out = xp.zeros(self.shape, dtype=g.dtype)
        xp.put_along_axis(out, self.indices, g, axis=self.axis[0])
        return (out,)


class Cumsum(Function):
    """Running sum along ``axis``; d/da is the reversed running sum of the gradient."""

    saves_inputs = False

    def forward(self, a, axis):
        self.axis = axis
        return xp.cumsum(a, axis=axis)

    def backward(self, g):
        flipped = xp.flip(g, axis=self.axis)
        return (xp.flip(xp.cumsum(flipped, axis=self.axis), axis=self.axis),)
