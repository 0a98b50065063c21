"""Shape primitives: reshape, permute, broadcast, indexing, concatenation and stacking."""

from __future__ import annotations

from numformer.autograd import Function, unbroadcast
from numformer.backend import xp


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return (g.reshape(self.shape),)


class Permute(Function):
    def forward(self, a, axes):
        inverse = [0] * len(axes)
        for i, axis in enumerate(axes):
            inverse[axis] = i
        self.inverse = tuple(inverse)
        return a.transpose(axes)

    def backward(self, g):
        return (g.transpose(self.inverse),)


class BroadcastTo(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return xp.broadcast_to(a, shape)

    def backward(self, g):
        return (unbroadcast(g, self.shape),)


def _is_basic_index(index) -> bool:
    """True for ints, slices, None and Ellipsis only: such a view has no repeated elements."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, slice, type(None), type(Ellipsis))) and not isinstance(p, bool) for p in parts)


class GetItem(Function):
    """``a[index]`` for ints, slices, integer arrays and boolean masks.

    Backward scatters into zeros; advanced (array) indices may repeat an element, so they
    scatter with ``add.at`` (sums duplicates) while basic indices assign a view directly.
    """

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        out = xp.zeros(self.shape, dtype=self.dtype)
        if _is_basic_index(self.index):
            out[self.index] = g
        else:
            xp.add.at(out, self.index, g)
        return (out,)


class Cat(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.bounds = xp.cumsum([a.shape[axis] for a in arrays])[:-1]
        return xp.concatenate(arrays, axis=axis)

    def backward(self, g):
        return tuple(xp.split(g, self.bounds, axis=self.axis))


class Stack(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        return xp.stack(arrays, axis=axis)

    def backward(self, g):
        return tuple(xp.moveaxis(g, self.axis, 0))
