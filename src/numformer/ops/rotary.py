"""Rotary position embedding applied to queries or keys: one primitive with its backward.

RoPE (Su et al., 2021, "RoFormer") in the "rotate half" layout of GPT-NeoX and Llama: the
features of a head split into halves x1, x2 and each pair (x1_i, x2_i) turns by its angle:
out = x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1). ``cos`` and ``sin`` come in
Hugging Face's layout, the angles of the half repeated, ``(..., D)``, broadcastable to ``x``.
The rotation is orthogonal, so its backward turns back: with g = dL/dout,
dx = g * cos + rotate_half^T(g * sin), rotate_half^T(y) = (y2, -y1).
"""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp


class Rotary(Function):
    """out = x * cos + rotate_half(x) * sin over the last axis (even, D); cos and sin are
    constants (no gradient). The halves are written in place: no rotated copy of x, the same
    float operations as Hugging Face's ``apply_rotary_pos_emb`` (x1 cos - x2 sin is
    x1 cos + (-x2) sin exactly)."""

    def forward(self, x, cos=None, sin=None):
        half = x.shape[-1] // 2
        out = xp.multiply(x, cos)
        out[..., :half] -= x[..., half:] * sin[..., :half]
        out[..., half:] += x[..., :half] * sin[..., half:]
        self.cos, self.sin = cos, sin
        return out

    def backward(self, g):
        cos, sin = self.cos, self.sin
        half = g.shape[-1] // 2
        dx = xp.multiply(g, cos)
        dx[..., :half] += g[..., half:] * sin[..., half:]
        dx[..., half:] -= g[..., :half] * sin[..., :half]
        return (dx,)
