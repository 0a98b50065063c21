"""Vectors scaled to unit p-norm, PyTorch's ``F.normalize``: one primitive with its backward
(``cosine_similarity`` is built on it)."""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp


def _norm(x, p: float, axis: int):
    """||x||_p along ``axis``, kept as a size-1 dim."""
    if p == 2:
        return xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True))
    if p == 1:
        return xp.sum(xp.abs(x), axis=axis, keepdims=True)
    return xp.sum(xp.abs(x) ** p, axis=axis, keepdims=True) ** (1 / p)


class Normalize(Function):
    """y = x / max(||x||_p, eps) along ``axis``.

    Backward: with n = ||x||_p and d = max(n, eps), dx = g / d - [n >= eps] (sum(g x) / d^2)
    dn/dx, where dn/dx = sign(x) |x|^(p-1) / n^(p-1) (x / n for p = 2); where the norm is
    clamped (n < eps) d is a constant and dx = g / eps, as PyTorch's clamp_min gives.
    """

    def forward(self, x, p=2.0, axis=1, eps=1e-12):
        n = _norm(x, p, axis)
        d = xp.maximum(n, eps).astype(x.dtype, copy=False)
        self.x, self.n, self.d, self.p, self.axis, self.eps = x, n, d, p, axis, eps
        return x / d

    def infer(self, x, p=2.0, axis=1, eps=1e-12):
        return x / xp.maximum(_norm(x, p, axis), eps).astype(x.dtype, copy=False)

    def backward(self, g):
        x, n, d, p = self.x, self.n, self.d, self.p
        through_norm = (n >= self.eps) & (n > 0)
        safe_n = xp.where(through_norm, n, 1)
        if p == 2:
            dn = x / safe_n
        elif p == 1:
            dn = xp.sign(x)
        else:
            with xp.errstate(divide="ignore", invalid="ignore"):
                dn = xp.sign(x) * (xp.abs(x) / safe_n) ** (p - 1)
        coef = xp.where(through_norm, xp.sum(g * x, axis=self.axis, keepdims=True) / (d * d), 0)
        return ((g / d - coef * dn).astype(g.dtype, copy=False),)
