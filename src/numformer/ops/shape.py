"""Shape primitives: reshape, permute, broadcast, indexing, concatenation and stacking."""

from __future__ import annotations

from numformer.autograd import Function, unbroadcast
from numformer.backend import xp


class Reshape(Function):
    saves_inputs = False
    view = True

    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return (g.reshape(self.shape),)


class Permute(Function):
    saves_inputs = False
    view = True

    def forward(self, a, axes):
        inverse = [0] * len(axes)
        for i, axis in enumerate(axes):
            inverse[axis] = i
        self.inverse = tuple(inverse)
        return a.transpose(axes)

    def backward(self, g):
        return (g.transpose(self.inverse),)


class BroadcastTo(Function):
    saves_inputs = False
    view = True

    def forward(self, a, shape):
        self.shape = a.shape
        return xp.broadcast_to(a, shape)

    def backward(self, g):
        return (unbroadcast(g, self.shape),)


def is_basic_index(index) -> bool:
    """True for ints, slices, None and Ellipsis only: such an index selects a view, with no
    repeated elements."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, slice, type(None), type(Ellipsis))) and not isinstance(p, bool) for p in parts)


class GetItem(Function):
    """``a[index]`` for ints, slices, None and Ellipsis (basic indexing): a view of ``a``.

    Backward puts the gradient into zeros at the view's place."""

    saves_inputs = False
    view = True

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        out = xp.zeros(self.shape, dtype=self.dtype)
        out[self.index] = g
        return (out,)


class Index(Function):
    """``a[index]`` with integer arrays or boolean masks (advanced indexing): a copy.

    An index may repeat an element, so backward scatters with ``add.at`` (sums duplicates)."""

    saves_inputs = False

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        out = xp.zeros(self.shape, dtype=self.dtype)
        xp.add.at(out, self.index, g)
        return (out,)


class Cat(Function):
    saves_inputs = False

    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.bounds = xp.cumsum([a.shape[axis] for a in arrays])[:-1]
        return xp.concatenate(arrays, axis=axis)

    def backward(self, g):
        return tuple(xp.split(g, self.bounds, axis=self.axis))


class Stack(Function):
    saves_inputs = False

    def forward(self, *arrays, axis=0):
        self.axis = axis
        return xp.stack(arrays, axis=axis)

    def backward(self, g):
        return tuple(xp.moveaxis(g, self.axis, 0))
