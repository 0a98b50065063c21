"""Position ids and masks built from integer inputs and shapes: no-gradient primitives.

Models compute these from token ids (padding masks), from shapes (positions ``0 .. T-1``) or
from both (the attention's merged mask). Written as primitives, they are part of what a traced
forward records, so ``numformer.onnx`` exports them as computations on the graph's inputs (a
``Range`` over the input's length, an ``Equal`` on its ids) rather than as constants of the size
it traced. Each forward is the NumPy the models ran before; none has a gradient (integer and
boolean outputs), so each backward returns None for every input.
"""

from __future__ import annotations

import numpy as np

from numformer.autograd import Function
from numformer.backend import xp


class _NoGradient(Function):
    def backward(self, grad):
        return (None,) * len(self.needs_grad)


class PositionIds(_NoGradient):
    """Positions ``offset .. offset + T - 1`` of every row of ``ids`` ``(N, T)``: int64
    ``(N, T)`` (a broadcast view of one ``arange``)."""

    def forward(self, ids, offset=0):
        T = ids.shape[-1]
        return xp.broadcast_to(xp.arange(offset, offset + T), ids.shape)


class Equal(_NoGradient):
    """``a == value`` elementwise, boolean (a padding mask from token ids)."""

    def forward(self, a, value):
        return a == value


class NotEqual(_NoGradient):
    """``a != value`` elementwise, boolean (the real tokens of a padded batch)."""

    def forward(self, a, value):
        return a != value


class MergeMasks(_NoGradient):
    """PyTorch's layer masks combined into one mask for scaled dot-product attention.

    Inputs, in this order and each only when its flag says so: ``attn_mask`` ``(L, S)`` or
    ``(N * H, L, S)`` (``has_attn_mask``) and ``key_padding_mask`` ``(N, S)``
    (``has_key_padding_mask``), boolean (True = ignore) or floating (added). ``is_causal`` (with
    no ``attn_mask``) adds the causal mask of ``(L, S)``. The result broadcasts to
    ``(N, H, L, S)``: boolean True where a pair takes part when every part is boolean, else the
    float sum of the parts (boolean parts as -inf where True) in ``dtype``.
    """

    def forward(self, *masks, has_attn_mask, has_key_padding_mask, is_causal, N, H, L, S, dtype):
        masks = list(masks)
        parts = []
        if has_attn_mask:
            m = masks.pop(0)
            parts.append(m[None, None] if m.ndim == 2 else m.reshape(N, H, L, S))
        elif is_causal:
            parts.append(~xp.tri(L, S, dtype=bool)[None, None])
        if has_key_padding_mask:
            parts.append(masks.pop(0)[:, None, None, :])
        if all(p.dtype == np.bool_ for p in parts):
            ignore = parts[0]
            for p in parts[1:]:
                ignore = ignore | p
            return ~ignore
        total = xp.zeros((), dtype=dtype)
        for p in parts:
            total = total + (xp.where(p, -np.inf, 0).astype(dtype) if p.dtype == np.bool_ else p.astype(dtype))
        return total
