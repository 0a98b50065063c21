"""Padding, PyTorch's ``F.pad``: one primitive for its four modes, with its backward."""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _along(dim: int, ndim: int, index) -> tuple:
    """An index that applies ``index`` (a slice) along ``dim`` only."""
    return (slice(None),) * dim + (index,) + (slice(None),) * (ndim - dim - 1)


class Pad(Function):
    """``x`` padded by ``pads`` ((before, after) for every dim of x): "constant" (``value``),
    "reflect" (mirrored about the edge element, which is not repeated), "replicate" (the edge
    element repeated) or "circular" (wrapped around). A negative amount crops (constant mode).

    Backward: each output element's gradient goes to the element it copies. Constant padding
    copies nothing (the centre is the gradient); the other modes fold their borders back onto
    the centre, per padded dim: reflect adds the border reversed onto the elements next to the
    edge, replicate its sum onto the edge element, circular onto the other end.
    """

    saves_inputs = False

    def forward(self, x, pads, mode="constant", value=0.0):
        crop = tuple(slice(max(-before, 0), n - max(-after, 0)) for n, (before, after) in zip(x.shape, pads))
        grow = tuple((max(before, 0), max(after, 0)) for before, after in pads)
        self.shape, self.crop, self.grow, self.mode = x.shape, crop, grow, mode
        core = x[crop]
        if mode == "constant":
            return xp.pad(core, grow, mode="constant", constant_values=value)
        return xp.pad(core, grow, mode=_NUMPY_MODE[mode])

    def backward(self, g):
        ndim = g.ndim
        for d, (before, after) in enumerate(self.grow):
            if not (before or after):
                continue
            n = g.shape[d] - before - after
            centre = g[_along(d, ndim, slice(before, before + n))]
            if self.mode != "constant":
                centre = centre.copy()
                left = g[_along(d, ndim, slice(0, before))]
                right = g[_along(d, ndim, slice(before + n, None))]
                if self.mode == "reflect":
                    centre[_along(d, ndim, slice(1, before + 1))] += xp.flip(left, axis=d)
                    centre[_along(d, ndim, slice(n - 1 - after, n - 1))] += xp.flip(right, axis=d)
                elif self.mode == "replicate":
                    centre[_along(d, ndim, slice(0, 1))] += left.sum(axis=d, keepdims=True)
                    centre[_along(d, ndim, slice(n - 1, n))] += right.sum(axis=d, keepdims=True)
                else:  # circular
                    centre[_along(d, ndim, slice(n - before, n))] += left
                    centre[_along(d, ndim, slice(0, after))] += right
            g = centre
        if all(s == slice(0, n) for s, n in zip(self.crop, self.shape)):
            return (xp.ascontiguousarray(g),)
        out = xp.zeros(self.shape, dtype=g.dtype)
        out[self.crop] = g
        return (out,)
