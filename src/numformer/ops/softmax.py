"""Softmax and log-softmax, each one primitive with its backward, and the row helpers the
other kernels share (row sums as one GEMV, softmax in place)."""

from __future__ import annotations

import functools

from numformer.autograd import Function
from numformer.backend import get_array_module, xp


def constant_column(n: int, dtype, value: float):
    """A read-only ``(n, 1)`` column filled with ``value`` (GEMV operand for row sums and means),
    made once per array module, size, dtype and value."""
    return _constant_column(get_array_module(), n, dtype, value)


@functools.lru_cache(maxsize=64)
def _constant_column(module, n: int, dtype, value: float):
    column = xp.full((n, 1), value, dtype=dtype)
    column.flags.writeable = False
    return column


def row_sums(s):
    """sum(s, axis=-1, keepdims=True); for a contiguous ``s`` one GEMV with a ones vector,
    faster than NumPy's reduction over short rows."""
    if not (s.flags.c_contiguous and s.size):
        return xp.sum(s, axis=-1, keepdims=True)
    return (s.reshape(-1, s.shape[-1]) @ constant_column(s.shape[-1], s.dtype, 1.0)).reshape(s.shape[:-1] + (1,))


def softmax_inplace(s, axis=-1):
    """Softmax of ``s`` along ``axis``, written into ``s``. Rows that are all ``-inf`` become 0;
    an empty axis (attention over no keys) stays empty."""
    if s.shape[axis] == 0:
        return s
    m = xp.max(s, axis=axis, keepdims=True)
    finite = xp.isfinite(m)
    all_finite = finite.all()
    if not all_finite:
        m = xp.where(finite, m, 0).astype(s.dtype, copy=False)
    s -= m
    xp.exp(s, out=s)
    total = row_sums(s) if axis in (-1, s.ndim - 1) else xp.sum(s, axis=axis, keepdims=True)
    # With every row max finite, each total is >= 1 (the max term is exp(0)); else guard 0 / 0.
    if not all_finite and not (total > 0).all():
        total = xp.where(total > 0, total, 1).astype(s.dtype, copy=False)
    s /= total
    return s


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max)); dx = y * (g - sum(g * y)). All--inf rows give 0."""

    saves_inputs = False
    saves_output = True

    def forward(self, x, axis=-1):
        self.axis = axis
        self.out = softmax_inplace(x.copy(), axis) if x.shape[axis] else x.copy()  # an empty axis: empty
        return self.out

    def backward(self, g):
        y = self.out
        return (y * (g - xp.sum(g * y, axis=self.axis, keepdims=True)),)


class LogSoftmax(Function):
    """y = x - max - log(sum(exp(x - max))); dx = g - exp(y) * sum(g)."""

    saves_inputs = False
    saves_output = True

    def forward(self, x, axis=-1):
        self.axis = axis
        if not x.shape[axis]:  # an empty axis: empty
            self.out = x.copy()
            return self.out
        shifted = x - xp.max(x, axis=axis, keepdims=True)
        self.out = shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
        return self.out

    def backward(self, g):
        return (g - xp.exp(self.out) * xp.sum(g, axis=self.axis, keepdims=True),)
