"""Embedding lookup: rows of a table by integer index; backward scatter-adds into those rows."""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp


class Embedding(Function):
    """Rows of ``weight`` picked by integer ``indices``; backward scatter-adds into those rows.

    The row ``padding_idx`` (if any) never receives a gradient, as in PyTorch.
    """

    saves_inputs = False

    def forward(self, weight, indices, padding_idx=None):
        self.indices, self.shape, self.padding_idx = indices, weight.shape, padding_idx
        return weight[indices]

    def backward(self, g):
        # Sum the rows of g that share an index: sort once, then one reduceat (much faster
        # than add.at's unbuffered scatter).
        flat = self.indices.reshape(-1)
        rows = g.reshape(-1, self.shape[1])
        order = xp.argsort(flat, kind="stable")
        ordered = flat[order]
        starts = xp.flatnonzero(xp.diff(ordered, prepend=-1))
        grad = xp.zeros(self.shape, dtype=g.dtype)
        if flat.size:
            grad[ordered[starts]] = xp.add.reduceat(rows[order], starts, axis=0)
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0
        return (grad,)
