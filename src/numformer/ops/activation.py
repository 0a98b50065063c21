"""Pointwise activations beyond ReLU and GELU, PyTorch's definitions, each one primitive: f(x)
in forward, g f'(x) in backward from the saved input (the derivative written out in each
docstring, with PyTorch's choice at the kinks).

ReLU, GELU, tanh and sigmoid live in ``elementwise`` (the hot paths of the models).
"""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp


def _sigmoid(x):
    """1 / (1 + exp(-x)) without overflow for any x: exp(-|x|) is in (0, 1]."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)), finite for any x."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


class _Pointwise(Function):
    """y = f(x) elementwise; dx = g f'(x). Subclasses define ``value`` and ``slope`` (f and f')
    on arrays, with the primitive's options as keywords."""

    def value(self, x, **options):
        raise NotImplementedError

    def slope(self, x, **options):
        raise NotImplementedError

    def forward(self, x, **options):
        self.x, self.options = x, options
        return self.value(x, **options).astype(x.dtype, copy=False)

    def infer(self, x, **options):
        return self.value(x, **options).astype(x.dtype, copy=False)

    def backward(self, g):
        return ((g * self.slope(self.x, **self.options)).astype(g.dtype, copy=False),)


class LeakyRelu(_Pointwise):
    """x for x > 0, else slope x (Maas et al., 2013); f' = 1 for x > 0, else slope (at 0 too,
    as PyTorch's)."""

    def value(self, x, negative_slope=0.01):
        return xp.where(x > 0, x, x * negative_slope)

    def slope(self, x, negative_slope=0.01):
        slope = xp.full(x.shape, negative_slope, dtype=x.dtype)
        slope[x > 0] = 1
        return slope


class Elu(_Pointwise):
    """scale * (x for x > 0, else alpha (exp(x input_scale) - 1)): ELU (Clevert et al., 2015;
    scale = input_scale = 1), SELU (Klambauer et al., 2017; its fixed alpha and scale) and CELU
    (Barron, 2017; input_scale = 1 / alpha). f' = scale for x > 0, else
    scale alpha input_scale exp(x input_scale) (the negative side at 0, as PyTorch's)."""

    def value(self, x, alpha=1.0, scale=1.0, input_scale=1.0):
        negative = xp.expm1(xp.minimum(x, 0) * input_scale) * (alpha * scale)
        return xp.where(x > 0, x * scale, negative)

    def slope(self, x, alpha=1.0, scale=1.0, input_scale=1.0):
        return xp.where(x > 0, scale, xp.exp(xp.minimum(x, 0) * input_scale) * (alpha * scale * input_scale))


class Softplus(_Pointwise):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's reversion to
    the identity, for precision); f' = sigmoid(beta x), 1 past the threshold."""

    def value(self, x, beta=1.0, threshold=20.0):
        bx = x * beta
        return xp.where(bx > threshold, x, _softplus(bx) * (1 / beta))

    def slope(self, x, beta=1.0, threshold=20.0):
        bx = x * beta
        return xp.where(bx > threshold, 1, _sigmoid(bx))


class Hardtanh(_Pointwise):
    """x clipped to [min_val, max_val] (ReLU6 is [0, 6]); f' = 1 strictly inside, 0 at and past
    the bounds (PyTorch's hardtanh, unlike clamp, which passes the gradient at the bounds)."""

    def value(self, x, min_val=-1.0, max_val=1.0):
        return xp.clip(x, min_val, max_val)

    def slope(self, x, min_val=-1.0, max_val=1.0):
        return (x > min_val) & (x < max_val)


class LogSigmoid(_Pointwise):
    """log sigmoid(x) = -softplus(-x), finite for any x; f' = sigmoid(-x)."""

    def value(self, x):
        return -_softplus(-x)

    def slope(self, x):
        return _sigmoid(-x)


class Hardsigmoid(_Pointwise):
    """clip(x / 6 + 1/2, 0, 1) (Howard et al., 2019, MobileNetV3); f' = 1/6 for -3 < x < 3,
    else 0."""

    def value(self, x):
        return xp.clip(x * (1 / 6) + 0.5, 0, 1)

    def slope(self, x):
        return ((x > -3) & (x < 3)) * x.dtype.type(1 / 6)


class Hardswish(_Pointwise):
    """x clip(x + 3, 0, 6) / 6 (Howard et al., 2019); f' = 0 for x <= -3, x / 3 + 1/2 for
    -3 < x < 3, 1 from 3 on (PyTorch's sides at the kinks)."""

    def value(self, x):
        return x * xp.clip(x + 3, 0, 6) * (1 / 6)

    def slope(self, x):
        return xp.where(x <= -3, 0, xp.where(x < 3, x * (1 / 3) + 0.5, 1))


class Mish(_Pointwise):
    """x tanh(softplus(x)) (Misra, 2019); with u = tanh(softplus(x)),
    f' = u + x sigmoid(x) (1 - u^2)."""

    def value(self, x):
        return x * xp.tanh(_softplus(x))

    def slope(self, x):
        u = xp.tanh(_softplus(x))
        return u + x * _sigmoid(x) * (1 - u * u)


class Softsign(_Pointwise):
    """x / (1 + |x|); f' = 1 / (1 + |x|)^2."""

    def value(self, x):
        return x / (1 + xp.abs(x))

    def slope(self, x):
        d = 1 + xp.abs(x)
        return 1 / (d * d)
