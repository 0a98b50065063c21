"""Layer normalisation (and its fused "add & norm") and RMS normalisation, each one primitive
with a hand-derived backward."""

from __future__ import annotations

import math

from numformer.autograd import Function
from numformer.backend import contiguous, xp
from numformer.ops._threads import MIN_ELEMENTS, parallel_for
from numformer.ops.softmax import constant_column


def _normalize_rows(x, xhat, mean_of, eps):
    """xhat = (x - mean) / sqrt(var + eps) per row of 2-D ``x`` (written into ``xhat``);
    ``mean_of`` is the (n, 1) column of 1/n. Returns rstd = 1 / sqrt(var + eps), (rows, 1)."""
    xp.subtract(x, x @ mean_of, out=xhat)
    var = (xhat * xhat) @ mean_of  # two GEMVs: cheaper than NumPy's row reductions
    var += eps
    rstd = xp.divide(1.0, xp.sqrt(var, out=var), out=var)
    xhat *= rstd
    return rstd


def _scale_shift(xhat, y, weight, bias):
    """y = xhat * weight + bias (either may be None); ``y`` may be ``xhat``."""
    if weight is not None:
        xp.multiply(xhat, weight, out=y)
    elif y is not xhat:
        y[...] = xhat
    if bias is not None:
        y += bias


class LayerNorm(Function):
    """Normalise over the trailing ``ndim`` axes, then scale and shift; optionally of a sum.

    xhat = (x - mean) * rstd, rstd = 1/sqrt(var + eps); y = xhat * w + b. With dxhat = g * w:
    dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dw = sum(g * xhat), db = sum(g).
    ``has_residual``: the second input r is added first, y = LN(x + r), in the same pass (post-LN
    blocks' ``norm(x + sublayer(x))``); dr = dx. Works on the (rows, normalised size) view, rows
    split over threads (``parallel_for``).
    """

    @staticmethod
    def _setup(x, params, ndim, eps, has_weight, has_bias, has_residual):
        """(x2, weight, bias, normalize): the (rows, n) view of x, the flat affine parameters,
        and ``normalize(lo, hi, xhat)`` writing rows lo:hi of (x [+ r]) normalised into xhat
        and returning their rstd."""
        n = math.prod(x.shape[x.ndim - ndim :])
        r2 = contiguous(params[0]).reshape(-1, n) if has_residual else None
        weight = params[has_residual].reshape(n) if has_weight else None
        bias = params[-1].reshape(n) if has_bias else None
        mean_of = constant_column(n, x.dtype, 1.0 / n)  # row means as one GEMV
        eps = x.dtype.type(eps)
        x2 = contiguous(x).reshape(-1, n)

        def normalize(lo, hi, xhat):
            if r2 is None:
                return _normalize_rows(x2[lo:hi], xhat, mean_of, eps)
            xp.add(x2[lo:hi], r2[lo:hi], out=xhat)
            return _normalize_rows(xhat, xhat, mean_of, eps)

        return x2, weight, bias, normalize

    def infer(self, x, *params, ndim=1, eps=1e-5, has_weight=True, has_bias=True, has_residual=False):
        """Normalise straight into the output, keep nothing; a few rows (decoding) skip the
        chunk set-up."""
        x2, weight, bias, normalize = self._setup(x, params, ndim, eps, has_weight, has_bias, has_residual)
        y = xp.empty_like(x2)

        def rows(lo, hi):
            normalize(lo, hi, y[lo:hi])
            _scale_shift(y[lo:hi], y[lo:hi], weight, bias)

        if x2.size < MIN_ELEMENTS:
            rows(0, len(y))
        else:
            parallel_for(len(y), rows, x2.shape[1])
        return y.reshape(x.shape)

    def forward(self, x, *params, ndim=1, eps=1e-5, has_weight=True, has_bias=True, has_residual=False):
        self.shape, self.param_shape = x.shape, x.shape[x.ndim - ndim :]
        self.has_residual = has_residual
        x2, weight, bias, normalize = self._setup(x, params, ndim, eps, has_weight, has_bias, has_residual)
        y = xp.empty_like(x2)
        self.has_weight, self.has_bias, self.weight = has_weight, has_bias, weight
        self.xhat = xp.empty_like(x2)
        self.rstd = xp.empty((x2.shape[0], 1), dtype=x.dtype)

        def chunk(lo, hi):
            self.rstd[lo:hi] = normalize(lo, hi, self.xhat[lo:hi])
            _scale_shift(self.xhat[lo:hi], y[lo:hi], weight, bias)

        parallel_for(x2.shape[0], chunk, x2.shape[1])
        return y.reshape(x.shape)

    def backward(self, g):
        xhat, n = self.xhat, self.xhat.shape[1]
        g2 = contiguous(g).reshape(-1, n)
        first = 1 + self.has_residual  # index of the weight among the inputs
        need_x = self.needs_grad[0] or (self.has_residual and self.needs_grad[1])
        need_w = self.has_weight and self.needs_grad[first]
        need_b = self.has_bias and self.needs_grad[-1]
        dx = xp.empty_like(g2) if need_x else None
        partial_w, partial_b = [], []  # per-chunk sums over rows, added up below
        mean_of = constant_column(n, g2.dtype, 1.0 / n)

        def chunk(lo, hi):
            gi, xi = g2[lo:hi], xhat[lo:hi]
            if need_w:
                partial_w.append(xp.einsum("ij,ij->j", gi, xi))
            if need_b:
                partial_b.append(xp.add.reduce(gi, axis=0))
            if need_x:
                dxhat = gi * self.weight if self.weight is not None else gi
                mean_d = dxhat @ mean_of  # row means as GEMVs
                di = dx[lo:hi]
                xp.multiply(dxhat, xi, out=di)
                mean_dx = di @ mean_of
                xp.multiply(xi, mean_dx, out=di)
                xp.subtract(dxhat, di, out=di)
                di -= mean_d
                di *= self.rstd[lo:hi]

        parallel_for(g2.shape[0], chunk, n)
        grads = [dx.reshape(self.shape) if need_x else None]
        if self.has_residual:  # d(x + r)/dr = d(x + r)/dx: the same gradient
            grads.append(grads[0])
        if self.has_weight:
            grads.append(sum(partial_w[1:], partial_w[0]).reshape(self.param_shape) if need_w else None)
        if self.has_bias:
            grads.append(sum(partial_b[1:], partial_b[0]).reshape(self.param_shape) if need_b else None)
        return tuple(grads)


def _rms_normalize_rows(x, xhat, mean_of, eps):
    """xhat = x / sqrt(mean(x^2) + eps) per row of 2-D ``x`` (written into ``xhat``, which may
    be ``x``'s own buffer only if ``x`` is not needed after); ``mean_of`` is the (n, 1) column of
    1/n. Returns rstd = 1 / sqrt(mean(x^2) + eps), (rows, 1)."""
    xp.multiply(x, x, out=xhat)
    ms = xhat @ mean_of  # the row means as one GEMV
    ms += eps
    rstd = xp.divide(1.0, xp.sqrt(ms, out=ms), out=ms)
    xp.multiply(x, rstd, out=xhat)
    return rstd


class RMSNorm(Function):
    """Root-mean-square normalisation over the trailing ``ndim`` axes, then a scale
    (Zhang and Sennrich, 2019; Llama's ``RMSNorm``): no mean subtracted, no bias.

    xhat = x * rstd, rstd = 1/sqrt(mean(x^2) + eps); y = xhat * w. With dxhat = g * w:
    dx = rstd * (dxhat - xhat * mean(dxhat * xhat)) (d rstd/dx = -rstd^3 x / n), dw = sum(g * xhat).
    Works on the (rows, normalised size) view, rows split over threads (``parallel_for``);
    the product order (x * rstd) * w is Hugging Face's and PyTorch's.
    """

    @staticmethod
    def _setup(x, params, ndim, eps, has_weight):
        n = math.prod(x.shape[x.ndim - ndim :])
        weight = params[0].reshape(n) if has_weight else None
        return contiguous(x).reshape(-1, n), weight, constant_column(n, x.dtype, 1.0 / n), x.dtype.type(eps)

    def infer(self, x, *params, ndim=1, eps=1e-6, has_weight=True):
        """Normalise straight into the output, keep nothing; a few rows (decoding) skip the
        chunk set-up."""
        x2, weight, mean_of, eps = self._setup(x, params, ndim, eps, has_weight)
        y = xp.empty_like(x2)

        def rows(lo, hi):
            _rms_normalize_rows(x2[lo:hi], y[lo:hi], mean_of, eps)
            if weight is not None:
                y[lo:hi] *= weight

        if x2.size < MIN_ELEMENTS:
            rows(0, len(y))
        else:
            parallel_for(len(y), rows, x2.shape[1])
        return y.reshape(x.shape)

    def forward(self, x, *params, ndim=1, eps=1e-6, has_weight=True):
        self.shape, self.param_shape = x.shape, x.shape[x.ndim - ndim :]
        x2, weight, mean_of, eps = self._setup(x, params, ndim, eps, has_weight)
        self.weight = weight
        self.xhat = xp.empty_like(x2)
        self.rstd = xp.empty((x2.shape[0], 1), dtype=x.dtype)
        y = xp.empty_like(x2)

        def chunk(lo, hi):
            self.rstd[lo:hi] = _rms_normalize_rows(x2[lo:hi], self.xhat[lo:hi], mean_of, eps)
            if weight is not None:
                xp.multiply(self.xhat[lo:hi], weight, out=y[lo:hi])
            else:
                y[lo:hi] = self.xhat[lo:hi]

        parallel_for(x2.shape[0], chunk, x2.shape[1])
        return y.reshape(x.shape)

    def backward(self, g):
        xhat, n = self.xhat, self.xhat.shape[1]
        g2 = contiguous(g).reshape(-1, n)
        need_x = self.needs_grad[0]
        need_w = self.weight is not None and self.needs_grad[1]
        dx = xp.empty_like(g2) if need_x else None
        partial_w = []  # per-chunk sums over rows, added up below
        mean_of = constant_column(n, g2.dtype, 1.0 / n)

        def chunk(lo, hi):
            gi, xi = g2[lo:hi], xhat[lo:hi]
            if need_w:
                partial_w.append(xp.einsum("ij,ij->j", gi, xi))
            if need_x:
                dxhat = gi * self.weight if self.weight is not None else gi
                di = dx[lo:hi]
                xp.multiply(dxhat, xi, out=di)
                mean_dx = di @ mean_of  # row means as a GEMV
                xp.multiply(xi, mean_dx, out=di)
                xp.subtract(dxhat, di, out=di)
                di *= self.rstd[lo:hi]

        parallel_for(g2.shape[0], chunk, n)
        grads = [dx.reshape(self.shape) if need_x else None]
        if self.weight is not None:
            grads.append(sum(partial_w[1:], partial_w[0]).reshape(self.param_shape) if need_w else None)
        return tuple(grads)
