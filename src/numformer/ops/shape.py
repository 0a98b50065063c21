"""Shape primitives: reshape, permute, broadcast, indexing, concatenation and stacking."""

from __future__ import annotations

from numformer.autograd import Function, PlacedGrad, unbroadcast
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

    Backward hands the engine the gradient at the view's place (``PlacedGrad``): the views of
    one tensor (a split, an unbind) fill one zero buffer."""

    saves_inputs = False
    view = True

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        return (PlacedGrad(self.shape, self.dtype, self.index, g),)


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


class SetItem(Function):
    """``a`` with ``a[index] = value``: the functional form of index assignment, which
    ``Tensor.__setitem__`` writes back into ``a``'s memory.

    d/da: the gradient with the assigned places zeroed; d/dvalue: the gradient at those places,
    summed back to ``value``'s shape (it was broadcast into them)."""

    saves_inputs = False

    def forward(self, a, value, index):
        self.index, self.value_shape = index, value.shape
        out = a.copy()
        out[index] = value
        return out

    def backward(self, g):
        ga = gv = None
        if self.needs_grad[0]:
            ga = g.copy()
            ga[self.index] = 0
        if self.needs_grad[1]:
            gv = unbroadcast(xp.asarray(g[self.index]), self.value_shape)
        return ga, gv


class Gather(Function):
    """``torch.gather``: ``out[i][j][k] = a[i][index[i][j][k]][k]`` along ``dim`` (NumPy's
    ``take_along_axis``); backward adds each gradient back at the place it came from."""

    saves_inputs = False

    def forward(self, a, index, dim):
        self.shape, self.dtype, self.index, self.dim = a.shape, a.dtype, index, dim
        return xp.take_along_axis(a, index, axis=dim)

    def backward(self, g):
        out = xp.zeros(self.shape, dtype=self.dtype)
        xp.add.at(out, _along(self.index, self.dim), g)
        return (out,)


class Scatter(Function):
    """``torch.scatter``: ``a`` with ``src``'s values written at ``index`` along ``dim``
    (``out[i][index[i][j]][k] = src[i][j][k]`` for dim 1). d/da: zero where written; d/dsrc:
    the gradient read back at those places."""

    saves_inputs = False

    def forward(self, a, src, index, dim):
        self.index, self.dim = index, dim
        out = a.copy()
        xp.put_along_axis(out, index, src[tuple(slice(0, n) for n in index.shape)], axis=dim)
        self.src_shape = src.shape
        return out

    def backward(self, g):
        ga = gs = None
        if self.needs_grad[0]:
            ga = g.copy()
            xp.put_along_axis(ga, self.index, 0, axis=self.dim)
        if self.needs_grad[1]:
            gs = xp.zeros(self.src_shape, dtype=g.dtype)
            gs[tuple(slice(0, n) for n in self.index.shape)] = xp.take_along_axis(g, self.index, axis=self.dim)
        return ga, gs


class ScatterAdd(Function):
    """``torch.scatter_add``: ``a`` plus ``src``'s values added at ``index`` along ``dim``
    (places named twice get both). d/da is the gradient; d/dsrc the gradient read back at the
    places each value went."""

    saves_inputs = False

    def forward(self, a, src, index, dim):
        self.where, self.src_shape = _along(index, dim), src.shape
        out = a.copy()
        xp.add.at(out, self.where, src[tuple(slice(0, n) for n in index.shape)])
        return out

    def backward(self, g):
        gs = None
        if self.needs_grad[1]:
            gs = xp.zeros(self.src_shape, dtype=g.dtype)
            gs[tuple(slice(0, n) for n in self.where[0].shape)] = g[self.where]
        return (g if self.needs_grad[0] else None), gs


def _along(index, dim: int) -> tuple:
    """The full index that puts ``index`` along ``dim`` and runs every other dim over its range."""
    axes = list(xp.ix_(*[xp.arange(n) for n in index.shape]))
    axes[dim] = index
    return tuple(xp.broadcast_arrays(*axes))
