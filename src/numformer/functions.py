"""The tensor API's one table: every function PyTorch exposes both as ``torch.NAME(input, ...)``
and as the method ``Tensor.NAME(...)`` is written here once, with PyTorch's name, argument names
and defaults, and installed as both ``numformer.NAME`` and ``Tensor.NAME`` (``install``): the two
can never drift. Each calls primitives of ``numformer.ops`` (or other functions here), so
gradients flow wherever PyTorch's do; integer results (indices, comparisons) carry none.

Arguments PyTorch has that numformer does not take (``out=``, ``layout=``, ``memory_format=``)
are not accepted: passing one is a ``TypeError``, never silently ignored.
"""

from __future__ import annotations

import builtins
import math
import sys
from collections import namedtuple

import numpy as np

from numformer import backend
from numformer.backend import is_floating, xp
from numformer.ops import elementwise as E
from numformer.ops import reduce as R
from numformer.ops import shape as S
from numformer.ops import softmax as SM
from numformer.tensor import Tensor, _axes, _floating, array_of, as_tensor, flip, masked_fill, matmul, split

TABLE: dict = {}
MinMax = namedtuple("MinMax", ["values", "indices"])  # torch.return_types.max, .min, .sort, .topk


def _api(fn):
    """Register ``fn`` in the table under its name (a trailing ``_`` dropped: ``max_`` is ``max``)."""
    TABLE[fn.__name__.rstrip("_")] = fn
    return fn


def _t(input) -> Tensor:
    return input if isinstance(input, Tensor) else as_tensor(input)


def _dim(dim: int, ndim: int, op: str) -> int:
    return _axes(dim, ndim, op)[0]


# --- arithmetic --------------------------------------------------------------------------------


@_api
def add(input, other, *, alpha=1):
    """``input + alpha * other``.

    Args:
        input: the input tensor.
        other: the second operand (a tensor, an array or a number), broadcast with ``input``.
        alpha: the factor of ``other``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    input = _t(input)
    return input + (other if alpha == 1 else other * alpha)


@_api
def sub(input, other, *, alpha=1):
    """``input - alpha * other``.

    Args:
        input: the input tensor.
        other: the second operand (a tensor, an array or a number), broadcast with ``input``.
        alpha: the factor of ``other``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    input = _t(input)
    return input - (other if alpha == 1 else other * alpha)


TABLE["subtract"] = sub


@_api
def mul(input, other):
    """``input * other`` elementwise, broadcasting.

    Args:
        input: the input tensor.
        other: the second operand (a tensor, an array or a number), broadcast with ``input``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    return _t(input) * other


TABLE["multiply"] = mul


@_api
def div(input, other, *, rounding_mode=None):
    """``input / other``; ``rounding_mode`` "trunc" or "floor" rounds the quotient (no gradient).

    Args:
        input: the dividend.
        other: the divisor, broadcast with ``input``.
        rounding_mode: None (true division), ``"trunc"`` or ``"floor"``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    q = _t(input) / other
    if rounding_mode is None:
        return q
    if rounding_mode not in ("trunc", "floor"):
        raise ValueError(
            f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found {rounding_mode!r}"
        )
    q = E.Stepwise.apply(q, name=rounding_mode)
    return q if is_floating(_t(input).dtype) else q.to(_t(input).dtype)


TABLE["divide"] = div


@_api
def true_divide(dividend, divisor):
    """``dividend / divisor`` (PyTorch's alias of ``div``).

    Args:
        dividend: the dividend.
        divisor: the divisor, broadcast with it.

    Shape:
        the broadcast shape of the operands."""
    return _t(dividend) / divisor


@_api
def floor_divide(input, other):
    """``input / other`` rounded down (``div(..., rounding_mode="floor")``; no gradient).

    Args:
        input: the dividend.
        other: the divisor, broadcast with ``input``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    return div(input, other, rounding_mode="floor")


@_api
def remainder(input, other):
    """Python's ``%``: the remainder with the divisor's sign.

    Args:
        input: the dividend.
        other: the divisor, broadcast with ``input``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    input = _t(input)
    return input - floor_divide(input, other) * other


@_api
def neg(input):
    """-input, elementwise.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return -_t(input)


TABLE["negative"] = neg


@_api
def pow(input, exponent):  # noqa: A001 - PyTorch's name
    return _t(input) ** exponent


@_api
def matmul_(input, other):
    return matmul(input, other)


@_api
def mm(input, mat2):
    """Matrix product of two 2-D tensors.

    Args:
        input: ``(n, m)``.
        mat2: ``(m, p)``.

    Shape:
        ``(n, m)``, ``(m, p)`` -> ``(n, p)``."""
    input, mat2 = _t(input), _t(mat2)
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: self must be a matrix and mat2 must be a matrix, got {input.shape} and {mat2.shape}")
    return matmul(input, mat2)


@_api
def bmm(input, mat2):
    """Batched matrix product (no broadcasting, as PyTorch's).

    Args:
        input: ``(b, n, m)``.
        mat2: ``(b, m, p)``.

    Shape:
        ``(b, n, m)``, ``(b, m, p)`` -> ``(b, n, p)``."""
    input, mat2 = _t(input), _t(mat2)
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: batch1 and batch2 must be 3D tensors, got {input.shape} and {mat2.shape}")
    return matmul(input, mat2)


@_api
def maximum(input, other):
    """The elementwise maximum of ``input`` and ``other`` (the gradient split at ties, as PyTorch's).

    Args:
        input: the input tensor.
        other: the second operand (a tensor, an array or a number), broadcast with ``input``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    input, other = _t(input), _t(other)
    return E.Maximum.apply(input, other.to(input.dtype))


@_api
def minimum(input, other):
    """The elementwise minimum of ``input`` and ``other`` (the gradient split at ties, as PyTorch's).

    Args:
        input: the input tensor.
        other: the second operand (a tensor, an array or a number), broadcast with ``input``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    input, other = _t(input), _t(other)
    return E.Minimum.apply(input, other.to(input.dtype))


# --- unary maths -------------------------------------------------------------------------------


# The sections every generated elementwise function's docstring ends with.
_UNARY_SECTIONS = """

Args:
    input: the tensor.

Shape:
    ``(*)`` -> ``(*)``."""
_BINARY_SECTIONS = """

Args:
    input: the first operand.
    other: the second operand (a tensor, an array or a number), broadcast with ``input``.

Shape:
    ``input`` and ``other`` broadcast together -> the broadcast shape."""


def _unary(name: str, op, floating: bool = True, doc: str = ""):
    def fn(input):
        t = _t(input)
        return op.apply(_floating(t) if floating else t)

    fn.__name__, fn.__qualname__ = name, name
    fn.__doc__ = (doc or f"{name} elementwise.") + _UNARY_SECTIONS
    TABLE[name] = fn
    return fn


exp = _unary("exp", E.Exp)
log = _unary("log", E.Log)
log1p = _unary("log1p", E.Log1p, doc="log(1 + input), exact for small input.")
expm1 = _unary("expm1", E.Expm1, doc="exp(input) - 1, exact for small input.")
sqrt = _unary("sqrt", E.Sqrt)
sin = _unary("sin", E.Sin)
cos = _unary("cos", E.Cos)
tanh = _unary("tanh", E.Tanh)
sigmoid = _unary("sigmoid", E.Sigmoid)
abs = _unary("abs", E.Abs, floating=False)  # noqa: A001 - PyTorch's name
relu = _unary("relu", E.Relu, floating=False)
TABLE["absolute"] = abs


@_api
def log2(input):
    """log(input) / log(2), elementwise.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return log(input) * (1 / math.log(2))


@_api
def log10(input):
    """log(input) / log(10), elementwise.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return log(input) * (1 / math.log(10))


@_api
def rsqrt(input):
    """1 / sqrt(input), elementwise.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return 1 / sqrt(_floating(_t(input)))  # not ** -0.5: (-inf) ** -0.5 is 0 where rsqrt's is nan


@_api
def square(input):
    """input * input, elementwise.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    t = _t(input)
    return t * t


@_api
def reciprocal(input):
    """1 / input, elementwise.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return 1.0 / _floating(_t(input))


@_api
def tan(input):
    """tan(input), elementwise.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return sin(input) / cos(input)


def _stepwise(name: str):
    def fn(input):
        t = _t(input)
        if not is_floating(t.dtype):
            return t.clone() if name != "sign" else Tensor._wrap(xp.sign(t.array), False)
        return E.Stepwise.apply(t, name=name)

    fn.__name__, fn.__qualname__ = name, name
    fn.__doc__ = f"{name} elementwise; its gradient is zero almost everywhere (PyTorch's)." + _UNARY_SECTIONS
    TABLE[name] = fn
    return fn


floor, ceil, trunc, sign = (_stepwise(n) for n in ("floor", "ceil", "trunc", "sign"))


@_api
def round(input, *, decimals: int = 0):  # noqa: A001 - PyTorch's name
    t = _t(input)
    if decimals:
        scale = 10.0**decimals
        return E.Stepwise.apply(t * scale, name="rint") / scale
    return E.Stepwise.apply(t, name="rint") if is_floating(t.dtype) else t.clone()


@_api
def clamp(input, min=None, max=None):  # noqa: A002 - PyTorch's argument names
    """``input`` clamped to [min, max] (each may be None, a number or a tensor); the gradient
    passes where ``min <= input <= max``.

    Args:
        input: the input tensor.
        min: the lower bound (a number, a tensor, or None).
        max: the upper bound (a number, a tensor, or None).

    Shape:
        ``(*)`` -> ``(*)``."""
    t = _t(input)
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):  # the gradient goes to the side taken
        from numformer.tensor import where as _where

        out = t if min is None else _where(t < min, t._operand(min).to(t.dtype), t)
        return out if max is None else _where(out > max, t._operand(max).to(t.dtype), out)
    return E.Clip.apply(t, min=min, max=max)


TABLE["clip"] = clamp


@_api
def clamp_min(input, min):  # noqa: A002
    """``input`` with every element below ``min`` set to ``min``.

    Args:
        input: the input tensor.
        min: the lower bound.

    Shape:
        ``(*)`` -> ``(*)``."""
    return clamp(input, min=min)


@_api
def clamp_max(input, max):  # noqa: A002
    """``input`` with every element above ``max`` set to ``max``.

    Args:
        input: the input tensor.
        max: the upper bound.

    Shape:
        ``(*)`` -> ``(*)``."""
    return clamp(input, max=max)


def _values(name: str, fn):
    def check(input):
        return Tensor._wrap(getattr(xp, fn)(_t(input).array), False)

    check.__name__, check.__qualname__ = name, name
    check.__doc__ = f"{name} elementwise: a bool tensor (no gradient)." + _UNARY_SECTIONS
    TABLE[name] = check
    return check


isfinite, isnan, isinf = (_values(n, n) for n in ("isfinite", "isnan", "isinf"))
logical_not = _values("logical_not", "logical_not")
bitwise_not = _values("bitwise_not", "invert")


def _binary_values(name: str, fn):
    def compare(input, other):
        return Tensor._wrap(xp.asarray(getattr(xp, fn)(_t(input).array, array_of(other))), False)

    compare.__name__, compare.__qualname__ = name, name
    compare.__doc__ = f"{name} elementwise: a tensor of no gradient." + _BINARY_SECTIONS
    TABLE[name] = compare
    return compare


eq, ne, lt, le, gt, ge = (
    _binary_values(n, f)
    for n, f in zip(
        ("eq", "ne", "lt", "le", "gt", "ge"), ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
    )
)
TABLE.update(greater=gt, greater_equal=ge, less=lt, less_equal=le, not_equal=ne)
logical_and, logical_or, logical_xor = (_binary_values(n, n) for n in ("logical_and", "logical_or", "logical_xor"))
bitwise_and, bitwise_or, bitwise_xor = (_binary_values(n, n) for n in ("bitwise_and", "bitwise_or", "bitwise_xor"))


@_api
def equal(input, other) -> bool:
    """Whether two tensors have the same shape and elements (a Python bool).

    Args:
        input: the input tensor.
        other: the tensor to compare with.

    Shape:
        any two shapes -> a Python bool (False when they differ)."""
    a, b = _t(input).array, array_of(other)
    return a.shape == b.shape and bool((a == b).all())


@_api
def isclose(input, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False):
    """Elementwise ``|input - other| <= atol + rtol * |other|``: a bool tensor.

    Args:
        input: the input tensor.
        other: the second operand (a tensor, an array or a number), broadcast with ``input``.
        rtol: the relative tolerance.
        atol: the absolute tolerance.
        equal_nan: count NaNs in the same place as equal.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    return Tensor._wrap(xp.isclose(_t(input).array, array_of(other), rtol=rtol, atol=atol, equal_nan=equal_nan), False)


@_api
def allclose(input, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    """Whether every element of ``input`` is within ``atol + rtol * |other|`` of ``other`` (a Python bool).

    Args:
        input: the input tensor.
        other: the second operand (a tensor, an array or a number), broadcast with ``input``.
        rtol: the relative tolerance.
        atol: the absolute tolerance.
        equal_nan: count NaNs in the same place as equal.

    Shape:
        ``input`` and ``other`` broadcast together -> a Python bool."""
    return bool(isclose(input, other, rtol, atol, equal_nan).array.all())


# --- reductions --------------------------------------------------------------------------------


def _cast_for(t: Tensor, dtype) -> Tensor:
    return t if dtype is None else t.to(dtype)


@_api
def sum(input, dim=None, keepdim: bool = False, *, dtype=None):  # noqa: A001 - PyTorch's name
    t = _cast_for(_t(input), dtype)
    if t.dtype == np.bool_:
        t = t.to(np.int64)
    return R.Sum.apply(t, axis=_axes(dim, t.ndim, "sum"), keepdims=keepdim)


@_api
def mean(input, dim=None, keepdim: bool = False, *, dtype=None):
    """The mean over ``dim`` (floating input; or with ``dtype``).

    Args:
        input: the input tensor.
        dim: the dimension(s) to reduce (None: all of them).
        keepdim: keep the reduced dimensions with size 1.
        dtype: compute in (and return) this dtype (None: ``input``'s).

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    t = _cast_for(_t(input), dtype)
    if not is_floating(t.dtype):
        raise RuntimeError(
            f"mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. "
            f"Got: {t.dtype}"
        )
    return R.Mean.apply(t, axis=_axes(dim, t.ndim, "mean"), keepdims=keepdim)


@_api
def var(input, dim=None, *, correction=None, keepdim: bool = False, unbiased: bool | None = None):
    """Variance over ``dim``; ``correction=1`` (default) is unbiased, as in PyTorch
    (``unbiased=False`` is PyTorch's older spelling of ``correction=0``).

    Args:
        input: the input tensor.
        dim: the dimension(s) to reduce (None: all of them).
        correction: the difference between the sample size and the divisor (1: Bessel's correction, PyTorch's
            default).
        keepdim: keep the reduced dimensions with size 1.
        unbiased: PyTorch's older flag: True is ``correction=1``, False ``correction=0``.

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    t = _t(input)
    if correction is None:
        correction = 0 if unbiased is False else 1
    return R.Var.apply(t, axis=_axes(dim, t.ndim, "var"), keepdims=keepdim, correction=correction)


@_api
def std(input, dim=None, *, correction=None, keepdim: bool = False, unbiased: bool | None = None):
    """Standard deviation over ``dim`` (``var``'s square root).

    Args:
        input: the input tensor.
        dim: the dimension(s) to reduce (None: all of them).
        correction: the difference between the sample size and the divisor (1: Bessel's correction, PyTorch's
            default).
        keepdim: keep the reduced dimensions with size 1.
        unbiased: PyTorch's older flag: True is ``correction=1``, False ``correction=0``.

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    return var(input, dim, correction=correction, keepdim=keepdim, unbiased=unbiased).sqrt()


@_api
def max_(input, dim=None, keepdim: bool = False):
    """The largest element, or along ``dim`` the named tuple ``(values, indices)``; with a tensor
    as ``dim`` (``torch.max(a, b)``), the elementwise maximum."""
    t = _t(input)
    if isinstance(dim, Tensor):
        return maximum(t, dim)
    if dim is None:
        return R.Max.apply(t, axis=None)
    axis = _axes(dim, t.ndim, "max")
    values = R.Max.apply(t, axis=axis, keepdims=keepdim)
    return MinMax(values, Tensor._wrap(xp.argmax(t.array, axis=axis[0], keepdims=keepdim), False))


@_api
def min_(input, dim=None, keepdim: bool = False):
    """The smallest element, or along ``dim`` the named tuple ``(values, indices)``; with a
    tensor as ``dim``, the elementwise minimum."""
    t = _t(input)
    if isinstance(dim, Tensor):
        return minimum(t, dim)
    if dim is None:
        return -R.Max.apply(-t, axis=None)
    values, indices = max_(-t, dim, keepdim)
    return MinMax(-values, indices)


@_api
def amax(input, dim=(), keepdim: bool = False):
    """The largest values over ``dim`` (the gradient split evenly among ties, as PyTorch's).

    Args:
        input: the input tensor.
        dim: the dimension(s) to reduce (``()``: all of them).
        keepdim: keep the reduced dimensions with size 1.

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is ``()``."""
    t = _t(input)
    dims = _axes(dim, t.ndim, "amax") if dim != () else tuple(range(t.ndim))
    out = t
    for axis in sorted(dims, reverse=True):
        out = R.Max.apply(out, axis=(axis,), keepdims=keepdim)
    return out


@_api
def amin(input, dim=(), keepdim: bool = False):
    """The smallest values over ``dim`` (the gradient split evenly among ties, as PyTorch's).

    Args:
        input: the input tensor.
        dim: the dimension(s) to reduce (``()``: all of them).
        keepdim: keep the reduced dimensions with size 1.

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is ``()``."""
    return -amax(-_t(input), dim, keepdim)


@_api
def argmax(input, dim=None, keepdim: bool = False):
    """The indices of the largest values over ``dim`` (the first one at ties), int64, no gradient.

    Args:
        input: the input tensor.
        dim: the dimension to reduce (None: the index into the flattened tensor).
        keepdim: keep the reduced dimensions with size 1.

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    t = _t(input)
    if dim is None:
        return Tensor._wrap(xp.asarray(xp.argmax(t.array)), False)
    return Tensor._wrap(xp.argmax(t.array, axis=_dim(dim, t.ndim, "argmax"), keepdims=keepdim), False)


@_api
def argmin(input, dim=None, keepdim: bool = False):
    """The indices of the smallest values over ``dim`` (the first one at ties), int64, no gradient.

    Args:
        input: the input tensor.
        dim: the dimension to reduce (None: the index into the flattened tensor).
        keepdim: keep the reduced dimensions with size 1.

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    t = _t(input)
    if dim is None:
        return Tensor._wrap(xp.asarray(xp.argmin(t.array)), False)
    return Tensor._wrap(xp.argmin(t.array, axis=_dim(dim, t.ndim, "argmin"), keepdims=keepdim), False)


@_api
def all_(input, dim=None, keepdim: bool = False):
    t = _t(input)
    return Tensor._wrap(xp.asarray(xp.all(t.array, axis=_axes(dim, t.ndim, "all"), keepdims=keepdim)), False)


@_api
def any_(input, dim=None, keepdim: bool = False):
    t = _t(input)
    return Tensor._wrap(xp.asarray(xp.any(t.array, axis=_axes(dim, t.ndim, "any"), keepdims=keepdim)), False)


@_api
def count_nonzero(input, dim=None):
    """The number of non-zero elements over ``dim``, int64.

    Args:
        input: the input tensor.
        dim: the dimension(s) to reduce (None: all of them).

    Shape:
        ``(*)`` -> ``(*)`` without ``dim``; ``()`` when ``dim`` is None."""
    t = _t(input)
    return Tensor._wrap(xp.asarray(xp.count_nonzero(t.array, axis=_axes(dim, t.ndim, "count_nonzero"))), False)


@_api
def logsumexp(input, dim, keepdim: bool = False):
    """log(sum(exp(input))) along ``dim``, computed as max + log(sum(exp(input - max))).

    Args:
        input: the input tensor.
        dim: the dimension(s) to reduce.
        keepdim: keep the reduced dimensions with size 1.

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    t = _t(input)
    axis = _axes(dim, t.ndim, "logsumexp")
    top = Tensor._wrap(xp.max(t.array, axis=axis, keepdims=True), False)
    top = top.masked_fill(~top.isfinite(), 0)
    out = (t - top).exp().sum(dim=axis, keepdim=True).log() + top
    return out if keepdim else out.reshape(tuple(n for i, n in enumerate(out.shape) if i not in axis))


@_api
def cumsum(input, dim, *, dtype=None):
    """The cumulative sum along ``dim``.

    Args:
        input: the input tensor.
        dim: the dimension to accumulate along.
        dtype: compute in (and return) this dtype (None: ``input``'s).

    Shape:
        ``(*)`` -> ``(*)``."""
    t = _cast_for(_t(input), dtype)
    return R.Cumsum.apply(t, axis=_dim(dim, t.ndim, "cumsum"))


@_api
def norm(input, p="fro", dim=None, keepdim: bool = False, dtype=None):
    """The vector p-norm over ``dim`` (all elements by default; "fro" is the 2-norm).

    Args:
        input: the input tensor.
        p: the order: a positive number, ``float("inf")`` (the largest magnitude), or ``"fro"`` (the
            2-norm of the elements); no matrix norms such as ``"nuc"``.
        dim: the dimension(s) to reduce (None: all of them).
        keepdim: keep the reduced dimensions with size 1.
        dtype: compute in (and return) this dtype (None: ``input``'s).

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    t = _cast_for(_t(input), dtype)
    p = 2 if p in ("fro", None) else p
    if p == float("inf"):
        return amax(t.abs(), () if dim is None else dim, keepdim)
    if p == 2:
        return (t * t).sum(dim, keepdim).sqrt()
    return (t.abs() ** p).sum(dim, keepdim) ** (1.0 / p)


@_api
def softmax(input, dim, *, dtype=None):
    """exp(input) / sum(exp(input)) along ``dim`` (one fused kernel).

    Args:
        input: the input tensor.
        dim: the dimension whose entries sum to 1.
        dtype: compute in (and return) this dtype (None: ``input``'s).

    Shape:
        ``(*)`` -> ``(*)``."""
    t = _cast_for(_t(input), dtype)
    return SM.Softmax.apply(t, axis=_dim(dim, t.ndim, "softmax"))


@_api
def log_softmax(input, dim, *, dtype=None):
    """log(softmax(input)) along ``dim``, computed stably (one fused kernel).

    Args:
        input: the input tensor.
        dim: the dimension normalised.
        dtype: compute in (and return) this dtype (None: ``input``'s).

    Shape:
        ``(*)`` -> ``(*)``."""
    t = _cast_for(_t(input), dtype)
    return SM.LogSoftmax.apply(t, axis=_dim(dim, t.ndim, "log_softmax"))


# --- shape -------------------------------------------------------------------------------------


@_api
def reshape(input, shape):
    """``input`` with another shape of as many elements (a view where the layout allows).

    Args:
        input: the input tensor.
        shape: the new shape (one entry may be -1).

    Shape:
        ``(*)`` -> ``shape``."""
    return _t(input).reshape(shape)


@_api
def flatten(input, start_dim: int = 0, end_dim: int = -1):
    """``input`` with dimensions ``start_dim`` to ``end_dim`` merged into one.

    Args:
        input: the input tensor.
        start_dim: the first dimension to merge.
        end_dim: the last dimension to merge (inclusive).

    Shape:
        ``(a, b, c, d)`` with ``start_dim=1, end_dim=2`` -> ``(a, b * c, d)``."""
    t = _t(input)
    if t.ndim == 0:
        return t.reshape(1)
    start, end = start_dim % t.ndim, end_dim % t.ndim
    return t.reshape(t.shape[:start] + (-1,) + t.shape[end + 1 :])


@_api
def permute(input, dims):
    """A view of ``input`` with its dimensions in the order ``dims``.

    Args:
        input: the input tensor.
        dims: a permutation of the dimensions.

    Shape:
        ``(d_0, ..., d_k)`` -> ``(d_dims[0], ..., d_dims[k])``."""
    return _t(input).permute(*dims)


@_api
def transpose(input, dim0: int, dim1: int):
    """A view of ``input`` with dimensions ``dim0`` and ``dim1`` exchanged.

    Args:
        input: the input tensor.
        dim0: the first dimension.
        dim1: the second dimension.

    Shape:
        ``(*, a, *, b, *)`` -> ``(*, b, *, a, *)``."""
    t = _t(input)
    axes = list(range(t.ndim))
    d0, d1 = _dim(dim0, t.ndim, "transpose"), _dim(dim1, t.ndim, "transpose")
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return t.permute(*axes)


@_api
def swapaxes(input, axis0: int, axis1: int):
    """``transpose`` by NumPy's name.

    Args:
        input: the input tensor.
        axis0: the first dimension.
        axis1: the second dimension.

    Shape:
        the two dimensions exchanged."""
    return transpose(input, axis0, axis1)


@_api
def swapdims(input, dim0: int, dim1: int):
    """``transpose`` by another name.

    Args:
        input: the input tensor.
        dim0: the first dimension.
        dim1: the second dimension.

    Shape:
        the two dimensions exchanged."""
    return transpose(input, dim0, dim1)


@_api
def t(input):
    """A matrix transposed (a 0-D or 1-D tensor as it is).

    Args:
        input: a tensor of at most 2 dimensions.

    Shape:
        ``(n, m)`` -> ``(m, n)``; 0-D and 1-D unchanged."""
    x = _t(input)
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    return x if x.ndim < 2 else transpose(x, 0, 1)


@_api
def squeeze(input, dim=None):
    """``input`` without its size-1 dimensions (or only ``dim``, if it has size 1).

    Args:
        input: the input tensor.
        dim: the dimension(s) to remove (None: every size-1 one).

    Shape:
        ``(a, 1, b)`` -> ``(a, b)``."""
    x = _t(input)
    if dim is None:
        return x.reshape(tuple(s for s in x.shape if s != 1))
    dims = {d % builtins.max(x.ndim, 1) for d in ((dim,) if isinstance(dim, int) else dim)}
    return x.reshape(tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


@_api
def unsqueeze(input, dim: int):
    """A view of ``input`` with a size-1 dimension inserted at ``dim``.

    Args:
        input: the input tensor.
        dim: where the new dimension goes.

    Shape:
        ``(a, b)`` with ``dim=1`` -> ``(a, 1, b)``."""
    x = _t(input)
    dim = dim % (x.ndim + 1)
    return x.reshape(x.shape[:dim] + (1,) + x.shape[dim:])


@_api
def split_(tensor, split_size_or_sections, dim: int = 0):
    return split(_t(tensor), split_size_or_sections, dim)


@_api
def chunk(input, chunks: int, dim: int = 0):
    """``input`` split into ``chunks`` nearly equal views along ``dim`` (the last may be smaller).

    Args:
        input: the input tensor.
        chunks: how many pieces.
        dim: the dimension to split.

    Shape:
        ``(*, n, *)`` -> pieces ``(*, ceil(n / chunks), *)``."""
    x = _t(input)
    size = -(-x.shape[dim] // chunks)
    return split(x, size, dim)


@_api
def unbind(input, dim: int = 0):
    """The slices of ``input`` along ``dim``, as a tuple of views.

    Args:
        input: the input tensor.
        dim: the dimension to remove.

    Shape:
        ``(*, n, *)`` -> n tensors ``(*, *)``."""
    x = _t(input)
    d = _dim(dim, x.ndim, "unbind")
    return tuple(x[(slice(None),) * d + (i,)] for i in range(x.shape[d]))


@_api
def narrow(input, dim: int, start: int, length: int):
    """A view of ``length`` entries of ``input`` along ``dim`` from ``start``.

    Args:
        input: the input tensor.
        dim: the dimension to narrow.
        start: the first index.
        length: how many entries.

    Shape:
        ``(*, n, *)`` -> ``(*, length, *)``."""
    x = _t(input)
    d = _dim(dim, x.ndim, "narrow")
    start = int(start) % x.shape[d] if start < 0 else int(start)
    if start + length > x.shape[d]:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({x.shape[d]}).")
    return x[(slice(None),) * d + (slice(start, start + length),)]


@_api
def roll(input, shifts, dims=None):
    """``input`` shifted circularly by ``shifts`` along ``dims``.

    Args:
        input: the input tensor.
        shifts: an int or one per dimension.
        dims: the dimension(s) to roll (None: the flattened tensor).

    Shape:
        ``(*)`` -> ``(*)``."""
    x = _t(input)
    if dims is None:
        return roll(x.flatten(), shifts, 0).reshape(x.shape)
    shifts, dims = ((shifts,), (dims,)) if isinstance(dims, int) else (tuple(shifts), tuple(dims))
    for shift, dim in zip(shifts, dims):
        d = _dim(dim, x.ndim, "roll")
        order = xp.roll(xp.arange(x.shape[d]), shift)
        x = x[(slice(None),) * d + (order,)]
    return x


def _triangle(input, diagonal: int, lower: bool):
    x = _t(input)
    if x.ndim < 2:
        raise RuntimeError(f"{'tril' if lower else 'triu'}: input tensor must have at least 2 dimensions")
    rows, cols = x.shape[-2:]
    keep = xp.tri(rows, cols, k=diagonal, dtype=bool) if lower else ~xp.tri(rows, cols, k=diagonal - 1, dtype=bool)
    return masked_fill(x, Tensor._wrap(~keep, False), 0)


@_api
def tril(input, diagonal: int = 0):
    """The lower triangle of the last two dims (``diagonal`` above the main one kept); zeros above.

    Args:
        input: a matrix or a batch of them.
        diagonal: keep this diagonal and those below it (0: the main one).

    Shape:
        ``(*)`` -> ``(*)``."""
    return _triangle(input, diagonal, True)


@_api
def triu(input, diagonal: int = 0):
    """The upper triangle of the last two dims (``diagonal`` above the main one and up); zeros below.

    Args:
        input: a matrix or a batch of them.
        diagonal: keep this diagonal and those above it (0: the main one).

    Shape:
        ``(*)`` -> ``(*)``."""
    return _triangle(input, diagonal, False)


@_api
def gather(input, dim: int, index):
    """Values of ``input`` along ``dim`` at ``index`` (``out[i][j] = input[index[i][j]][j]`` for dim 0).

    Args:
        input: the input tensor.
        dim: the dimension indexed.
        index: int64 indices, of ``input``'s rank.

    Shape:
        ``index``'s shape."""
    x, idx = _t(input), array_of(index)
    if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != x.ndim:
        raise RuntimeError(f"gather(): index must be an integer tensor of {x.ndim} dims, got {idx.dtype} {idx.shape}")
    return S.Gather.apply(x, index=idx, dim=_dim(dim, x.ndim, "gather"))


@_api
def scatter(input, dim: int, index, src=None, *, value=None):
    """``input`` with values from ``src`` (or ``value``) written at ``index`` along ``dim``.

    Args:
        input: the input tensor.
        dim: the dimension indexed.
        index: int64 indices, of ``input``'s rank.
        src: the values (``index``'s shape), or None with ``value``.
        value: one number to write instead of ``src``.

    Shape:
        ``(*)`` -> ``(*)``."""
    x = _t(input)
    source = src if src is not None else value
    if source is None:
        raise TypeError("scatter() missing 1 required argument: 'src' or 'value'")
    idx = array_of(index)
    if not isinstance(source, Tensor) or source.ndim == 0:  # a value: every indexed place gets it
        source = x._operand(source).reshape(()).expand(idx.shape)
    return S.Scatter.apply(x, source.to(x.dtype), index=idx, dim=_dim(dim, x.ndim, "scatter"))


@_api
def scatter_add(input, dim: int, index, src):
    """``input`` plus ``src``'s values added at ``index`` along ``dim`` (repeated places sum).

    Args:
        input: the input tensor.
        dim: the dimension indexed.
        index: int64 indices, of ``input``'s rank.
        src: the values added (``index``'s shape).

    Shape:
        ``(*)`` -> ``(*)``."""
    x, idx, src = _t(input), array_of(index), _t(src)
    return S.ScatterAdd.apply(x, src.to(x.dtype), index=idx, dim=_dim(dim, x.ndim, "scatter_add"))


@_api
def index_select(input, dim: int, index):
    """The slices of ``input`` at ``index`` along ``dim``.

    Args:
        input: the input tensor.
        dim: the dimension indexed.
        index: 1-D int64 positions.

    Shape:
        ``(*, n, *)`` -> ``(*, len(index), *)``."""
    x, idx = _t(input), array_of(index)
    if idx.ndim > 1 or not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"index_select(): index must be a 1-D integer tensor, got {idx.dtype} {idx.shape}")
    return x[(slice(None),) * _dim(dim, x.ndim, "index_select") + (idx.reshape(-1),)]


@_api
def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` is True, as a 1-D tensor.

    Args:
        input: the input tensor.
        mask: a boolean tensor broadcastable with ``input``.

    Shape:
        -> ``(number of True,)``."""
    x, m = _t(input), array_of(mask)
    return x.expand(np.broadcast_shapes(x.shape, m.shape))[xp.broadcast_to(m, np.broadcast_shapes(x.shape, m.shape))]


TABLE["masked_fill"] = masked_fill
TABLE["flip"] = flip


@_api
def repeat_interleave(input, repeats, dim=None, *, output_size=None):
    """Each element (or slice along ``dim``) repeated ``repeats`` times in place.

    Args:
        input: the input tensor.
        repeats: an int, or a count per element along ``dim``.
        dim: the dimension to repeat along (None: the flattened tensor).
        output_size: the result's length along ``dim``, if known (a check).

    Shape:
        ``(*, n, *)`` -> ``(*, sum(repeats), *)``."""
    x = _t(input)
    if dim is None:
        x, dim = x.flatten(), 0
    d = _dim(dim, x.ndim, "repeat_interleave")
    order = xp.repeat(xp.arange(x.shape[d]), array_of(repeats) if isinstance(repeats, Tensor) else repeats)
    return x[(slice(None),) * d + (order,)]


@_api
def clone(input, *, memory_format=None):
    """A copy of ``input`` in the graph (gradients flow back to ``input``).

    Args:
        input: the input tensor.
        memory_format: accepted for PyTorch's signature (arrays are contiguous).

    Shape:
        ``(*)`` -> ``(*)``."""
    return E.Copy.apply(_t(input))


@_api
def detach(input):
    """``input``'s values outside the graph, sharing memory.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return _t(input).detach()


@_api
def movedim(input, source, destination):
    """``input`` with the dims ``source`` moved to the places ``destination`` (the others keep
    their order).

    Args:
        input: the input tensor.
        source: the dimension(s) to move.
        destination: where they go.

    Shape:
        the same dimensions, reordered."""
    x = _t(input)
    sources = [s % x.ndim for s in ((source,) if isinstance(source, int) else source)]
    places = [d % x.ndim for d in ((destination,) if isinstance(destination, int) else destination)]
    order = [i for i in range(x.ndim) if i not in sources]
    for place, src in sorted(zip(places, sources)):
        order.insert(place, src)
    return x.permute(*order)


@_api
def sort(input, dim: int = -1, descending: bool = False, *, stable: bool = False):
    """The named tuple ``(values, indices)`` of ``input`` sorted along ``dim``.

    Args:
        input: the input tensor.
        dim: the dimension to sort along.
        descending: largest first.
        stable: keep the order of equal elements.

    Shape:
        ``(*)`` -> values and indices ``(*)``."""
    x = _t(input)
    d = _dim(dim, x.ndim, "sort")
    indices = argsort(x, d, descending, stable=stable)
    return MinMax(gather(x, d, indices), indices)


@_api
def argsort(input, dim: int = -1, descending: bool = False, *, stable: bool = False):
    """The indices that sort ``input`` along ``dim``, int64.

    Args:
        input: the input tensor.
        dim: the dimension to sort along.
        descending: largest first.
        stable: keep the order of equal elements.

    Shape:
        ``(*)`` -> ``(*)``."""
    x = _t(input)
    d = _dim(dim, x.ndim, "argsort")
    kind = "stable" if stable else "quicksort"
    if descending:
        key = -x.array if x.dtype.kind in "fi" else ~x.array if x.dtype == np.bool_ else -x.array.astype(np.int64)
        order = xp.argsort(key, axis=d, kind="stable" if stable else kind)
    else:
        order = xp.argsort(x.array, axis=d, kind=kind)
    return Tensor._wrap(order.astype(np.int64), False)


@_api
def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
    """The named tuple ``(values, indices)`` of the ``k`` largest (or smallest) along ``dim``.

    Args:
        input: the input tensor.
        k: how many elements.
        dim: the dimension to select along.
        largest: the largest (False: the smallest).
        sorted: return them in order.

    Shape:
        ``(*, n, *)`` -> values and indices ``(*, k, *)`` (at ``dim``)."""
    x = _t(input)
    d = _dim(dim, x.ndim, "topk")
    if not 0 <= k <= x.shape[d]:
        raise RuntimeError(f"selected index k out of range: k {k}, dimension size {x.shape[d]}")
    order = argsort(x, d, descending=largest, stable=True)
    indices = order[(slice(None),) * d + (slice(0, k),)]
    return MinMax(gather(x, d, indices), indices)


@_api
def nonzero(input, *, as_tuple: bool = False):
    """The indices of the non-zero elements (int64, no gradient).

    Args:
        input: the input tensor.
        as_tuple: return one 1-D tensor per dimension instead of one ``(k, ndim)`` tensor.

    Shape:
        ``(*)`` with k non-zeros -> ``(k, ndim)``, or ``ndim`` tensors ``(k,)``."""
    found = xp.nonzero(_t(input).array)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(np.int64), False) for i in found)
    return Tensor._wrap(xp.stack(found, axis=1).astype(np.int64) if found else xp.zeros((0, 0), np.int64), False)


@_api
def numel(input) -> int:
    """The number of elements of ``input`` (a Python int).

    Args:
        input: the input tensor.

    Shape:
        any -> a Python int."""
    return int(_t(input).array.size)


@_api
def multinomial(input, num_samples: int, replacement: bool = False, *, generator=None):
    """``num_samples`` category indices per row drawn with the row's (unnormalised) weights
    (numformer's generator, or ``generator``'s).

    Shape: input ``(C,)`` or ``(N, C)`` -> int64 ``(num_samples,)`` or ``(N, num_samples)``.

    Args:
        input: non-negative weights ``(k,)`` or ``(n, k)`` (rows need not sum to 1).
        num_samples: how many draws per row.
        replacement: draw with replacement.
        generator: a ``numformer.Generator`` to draw from (default: the global one)."""
    probs = backend.to_numpy(_t(input).array).astype(np.float64)
    if probs.ndim not in (1, 2) or (probs < 0).any() or not np.isfinite(probs).all():
        raise RuntimeError("multinomial: probability tensor must be 1-D or 2-D with finite, non-negative entries")
    rng = backend.rng_of(generator)
    rows = probs.reshape(-1, probs.shape[-1])
    sums = rows.sum(axis=1)
    if (sums <= 0).any():
        raise RuntimeError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > (rows > 0).sum(axis=1).min():
        raise RuntimeError("multinomial: cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    picks = np.stack([rng.choice(rows.shape[1], num_samples, replace=replacement, p=r / r.sum()) for r in rows])
    out = picks.reshape(probs.shape[:-1] + (num_samples,)).astype(np.int64)
    return Tensor._wrap(xp.asarray(out), False)


@_api
def where_(condition, input=None, other=None):
    """``input`` where ``condition`` is True, else ``other`` (``torch.where``); with one
    argument, ``nonzero(condition, as_tuple=True)``.

    Args:
        condition: a boolean tensor: True picks ``input``, False ``other``.
        input: the values where ``condition`` holds (None: return ``nonzero(condition, as_tuple=True)``).
        other: the values elsewhere.

    Shape:
        the broadcast shape of the three."""
    from numformer.tensor import where as _where

    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    return _where(condition, input, other)


# --- more maths ----------------------------------------------------------------------------

erf = _unary("erf", E.Erf, doc="The error function, elementwise (d/dx = 2/sqrt(pi) exp(-x^2)).")


@_api
def erfc(input):
    """1 - erf(input), exact in the tail.

    Args:
        input: the input tensor.

    Shape:
        ``(*)`` -> ``(*)``."""
    return 1.0 - erf(input)


@_api
def prod(input, dim=None, keepdim: bool = False, *, dtype=None):
    """The product of all elements, or along ``dim``; gradients exact also where an element is 0.

    Args:
        input: the input tensor.
        dim: the dimension to reduce (None: all of them).
        keepdim: keep the reduced dimensions with size 1.
        dtype: compute in (and return) this dtype (None: ``input``'s).

    Shape:
        ``(*)`` -> ``(*)`` without the ``dim`` dimension(s) (size 1 there with ``keepdim``); ``()`` when ``dim``
        is None."""
    x = _cast_for(_t(input), dtype)
    if dim is None:
        return R.Prod.apply(x.reshape(-1), axis=0)
    return R.Prod.apply(x, axis=_dim(dim, x.ndim, "prod"), keepdims=keepdim)


@_api
def lerp(input, end, weight):
    """``input + weight * (end - input)``.

    Args:
        input: the start.
        end: the end, broadcast with ``input``.
        weight: the interpolation weight (a number or a tensor).

    Shape:
        the broadcast shape of the operands."""
    x = _t(input)
    return x + weight * (end - x)


@_api
def outer(input, vec2):
    """The outer product of two 1-D tensors: ``(n,), (m,) -> (n, m)``.

    Args:
        input: ``(n,)``.
        vec2: ``(m,)``.

    Shape:
        ``(n,)``, ``(m,)`` -> ``(n, m)``."""
    a, b = _t(input), _t(vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"outer: expected 1-D tensors, got shapes {a.shape} and {b.shape}")
    return a.reshape(-1, 1) * b.reshape(1, -1)


TABLE["ger"] = outer


@_api
def dot(input, tensor):
    """The dot product of two 1-D tensors of one size.

    Args:
        input: ``(n,)``.
        tensor: ``(n,)``.

    Shape:
        ``(n,)``, ``(n,)`` -> ``()``."""
    a, b = _t(input), _t(tensor)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise RuntimeError(f"dot: expected 1-D tensors of one size, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


@_api
def inner(input, other):
    """Sum over the last dims of both (a scalar operand multiplies).

    Args:
        input: ``(*, n)``.
        other: ``(*, n)``.

    Shape:
        ``(*a, n)``, ``(*b, n)`` -> ``(*a, *b)``; scalars multiply."""
    a, b = _t(input), _t(other)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return matmul(a.unsqueeze(-2) if a.ndim == 1 else a, b.reshape(-1, b.shape[-1]).t()).reshape(
        a.shape[:-1] + b.shape[:-1]
    )


@_api
def mv(input, vec):
    """Matrix ``(n, m)`` times vector ``(m,)``.

    Args:
        input: ``(n, m)``.
        vec: ``(m,)``.

    Shape:
        ``(n, m)``, ``(m,)`` -> ``(n,)``."""
    a, v = _t(input), _t(vec)
    if a.ndim != 2 or v.ndim != 1:
        raise RuntimeError(f"mv: expected a matrix and a vector, got shapes {a.shape} and {v.shape}")
    return matmul(a, v)


@_api
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat1 @ mat2)``.

    Args:
        input: added to the product, broadcast to ``(n, p)``.
        mat1: ``(n, m)``.
        mat2: ``(m, p)``.
        beta: the factor of ``input``.
        alpha: the factor of the product.

    Shape:
        ``mat1`` ``(n, m)`` @ ``mat2`` ``(m, p)`` -> ``(n, p)``."""
    product = mm(mat1, mat2)
    return _t(input) * beta + (product if alpha == 1 else product * alpha)


@_api
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * (batch1 @ batch2)`` over a batch of matrices.

    Args:
        input: added to the products, broadcast to ``(b, n, p)``.
        batch1: ``(b, n, m)``.
        batch2: ``(b, m, p)``.
        beta: the factor of ``input``.
        alpha: the factor of the products.

    Shape:
        ``(b, n, m)`` @ ``(b, m, p)`` -> ``(b, n, p)``."""
    product = bmm(batch1, batch2)
    return _t(input) * beta + (product if alpha == 1 else product * alpha)


@_api
def addcmul(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 * tensor2``.

    Args:
        input: the input tensor.
        tensor1: the first factor.
        tensor2: the second factor.
        value: the factor of ``tensor1 * tensor2``.

    Shape:
        the broadcast shape of the three tensors."""
    return _t(input) + _t(tensor1) * tensor2 * value


@_api
def addcdiv(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 / tensor2``.

    Args:
        input: the input tensor.
        tensor1: the numerator.
        tensor2: the denominator.
        value: the factor of ``tensor1 / tensor2``.

    Shape:
        the broadcast shape of the three tensors."""
    return _t(input) + _t(tensor1) / tensor2 * value


@_api
def diag(input, diagonal: int = 0):
    """A 1-D tensor's matrix with it on the ``diagonal``-th diagonal, or a 2-D tensor's
    ``diagonal``-th diagonal as a 1-D tensor.

    Args:
        input: a 1-D tensor (makes a matrix) or a 2-D one (takes a diagonal).
        diagonal: which diagonal: 0 the main one, > 0 above, < 0 below.

    Shape:
        ``(n,)`` -> ``(n + |d|, n + |d|)``; ``(n, m)`` -> the diagonal's length."""
    x = _t(input)
    if x.ndim == 1:
        n = x.shape[0] + builtins.abs(diagonal)
        out = x.new_zeros((n, n))
        rows = np.arange(x.shape[0]) + builtins.max(-diagonal, 0)
        out[rows, rows + diagonal] = x
        return out
    if x.ndim != 2:
        raise RuntimeError(f"diag: expected a 1-D or 2-D tensor, got {x.ndim} dims")
    rows = np.arange(builtins.max(-diagonal, 0), builtins.max(builtins.min(x.shape[0], x.shape[1] - diagonal), 0))
    return x[rows, rows + diagonal]


@_api
def trace(input):
    """The sum of a matrix's main diagonal.

    Args:
        input: a 2-D tensor.

    Shape:
        ``(n, m)`` -> ``()``."""
    x = _t(input)
    if x.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, got {x.ndim} dims")
    return diag(x).sum()


@_api
def fmod(input, other):
    """The remainder of ``input / other`` with ``input``'s sign (C's ``fmod``).

    Args:
        input: the dividend.
        other: the divisor, broadcast with ``input``.

    Shape:
        ``input`` and ``other`` broadcast together -> the broadcast shape."""
    x = _t(input)
    if not is_floating(x.dtype) and not (isinstance(other, Tensor) and is_floating(other.dtype)):
        o = array_of(other) if isinstance(other, Tensor) else other
        return Tensor._wrap(xp.fmod(x.array, o), False)
    return x - trunc(x / other).detach() * other


@_api
def nan_to_num(input, nan: float = 0.0, posinf=None, neginf=None):
    """NaN, +inf and -inf replaced (by default: 0, the dtype's largest, its smallest).

    Args:
        input: the input tensor.
        nan: what NaN becomes.
        posinf: what +inf becomes (None: the dtype's largest value).
        neginf: what -inf becomes (None: the dtype's smallest value).

    Shape:
        ``(*)`` -> ``(*)``."""
    x = _t(input)
    if not is_floating(x.dtype):
        return x.clone()
    info = np.finfo(x.dtype)
    a = x.array
    out = x.masked_fill(Tensor._wrap(xp.isnan(a), False), nan)
    out = out.masked_fill(Tensor._wrap(xp.isposinf(a), False), info.max if posinf is None else posinf)
    return out.masked_fill(Tensor._wrap(xp.isneginf(a), False), info.min if neginf is None else neginf)


@_api
def diff(input, n: int = 1, dim: int = -1, prepend=None, append=None):
    """The ``n``-th forward difference along ``dim``.

    Args:
        input: the input tensor.
        n: how many times to difference.
        dim: the dimension to difference along.
        prepend: values put before ``input`` along ``dim``, or None.
        append: values put after it, or None.

    Shape:
        ``(*, k, *)`` -> ``(*, k - n, *)`` (plus what is prepended or appended)."""
    from numformer.tensor import cat

    x = _t(input)
    d = _dim(dim, x.ndim, "diff")
    if prepend is not None or append is not None:
        x = cat([p for p in (prepend, x, append) if p is not None], dim=d)
    for _ in range(n):
        length = x.shape[d]
        x = narrow(x, d, 1, length - 1) - narrow(x, d, 0, length - 1)
    return x


@_api
def take_along_dim(input, indices, dim=None):
    """``input``'s values at ``indices`` along ``dim`` (``indices`` broadcast against ``input``
    but along ``dim``); without ``dim``, on the flattened tensor.

    Args:
        input: the input tensor.
        indices: int64 indices broadcastable with ``input``.
        dim: the dimension indexed (None: the flattened tensor).

    Shape:
        the broadcast shape of ``input`` and ``indices`` (flattened: ``indices``')."""
    x, idx = _t(input), array_of(indices)
    if dim is None:
        return x.reshape(-1)[idx.reshape(-1)]
    d = _dim(dim, x.ndim, "take_along_dim")
    shape_x, shape_i = list(x.shape), list(idx.shape)
    shape_x[d] = shape_i[d] = 1
    common = np.broadcast_shapes(tuple(shape_x), tuple(shape_i))
    x = x.expand(common[:d] + (x.shape[d],) + common[d + 1 :])
    idx = xp.broadcast_to(idx, common[:d] + (idx.shape[d],) + common[d + 1 :])
    return gather(x, d, idx)


@_api
def index_add(input, dim: int, index, source, *, alpha=1):
    """``input`` with ``alpha * source``'s slices added at ``index`` along ``dim`` (repeated
    indices add up).

    Args:
        input: the input tensor.
        dim: the dimension indexed.
        index: 1-D int64 positions along ``dim``.
        source: the values added, ``input``'s shape but ``len(index)`` along ``dim``.
        alpha: the factor of ``source``.

    Shape:
        ``(*)`` -> ``(*)``."""
    x, idx, src = _t(input), array_of(index), _t(source)
    d = _dim(dim, x.ndim, "index_add")
    if idx.ndim != 1 or src.shape[d] != idx.shape[0]:
        raise IndexError(f"index_add(): index must be 1-D with source.shape[{d}] = {src.shape[d]} entries")
    shape = [1] * src.ndim
    shape[d] = idx.shape[0]
    full = xp.broadcast_to(idx.reshape(shape), src.shape)
    return scatter_add(x, d, full, src if alpha == 1 else src * alpha)


@_api
def broadcast_to(input, shape):
    """``input`` expanded to ``shape`` (a view).

    Args:
        input: the input tensor.
        shape: the target shape (``input``'s must broadcast to it).

    Shape:
        ``(*)`` -> ``shape``."""
    return _t(input).expand(tuple(shape))


@_api
def tile(input, dims):
    """``input`` repeated ``dims`` times along each dim (missing leading dims count as 1).

    Args:
        input: the input tensor.
        dims: the repetitions per dimension (prepended with 1s for missing ones).

    Shape:
        ``(*d)`` -> ``(*d * dims)``."""
    x = _t(input)
    dims = tuple(dims)
    return x.repeat(*((1,) * (x.ndim - len(dims)) + dims))


@_api
def bincount(input, weights=None, minlength: int = 0):
    """How often each non-negative integer occurs in ``input`` (weighted by ``weights``).

    Args:
        input: a 1-D tensor of non-negative integers.
        weights: a weight per element, or None.
        minlength: the smallest length of the result.

    Shape:
        ``(n,)`` -> ``(max(max(input) + 1, minlength),)``."""
    return Tensor._wrap(xp.bincount(_t(input).array, None if weights is None else array_of(weights), minlength), False)


@_api
def unique(input, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False, dim=None):  # noqa: A002
    """The distinct values (sorted), and optionally the inverse indices and the counts.

    Args:
        input: the input tensor.
        sorted: return the values in ascending order.
        return_inverse: also return where each input element went.
        return_counts: also return how often each value occurs.
        dim: find unique slices along this dimension (None: unique elements).

    Shape:
        ``(*)`` -> ``(k,)`` values (and inverse ``(*)``, counts ``(k,)``)."""
    x = _t(input)
    found = np.unique(backend.to_numpy(x.array), return_inverse=True, return_counts=True, axis=dim)
    values, inverse, counts = found
    out = [Tensor._wrap(xp.asarray(values), False)]
    if return_inverse:
        out.append(Tensor._wrap(xp.asarray(inverse.reshape(x.shape if dim is None else -1).astype(np.int64)), False))
    if return_counts:
        out.append(Tensor._wrap(xp.asarray(counts.astype(np.int64)), False))
    return out[0] if len(out) == 1 else tuple(out)


@_api
def is_complex(input) -> bool:
    """False: numformer has no complex dtypes.

    Args:
        input: the input tensor.

    Shape:
        any -> a Python bool."""
    return False


@_api
def is_nonzero(input) -> bool:
    """Whether a one-element tensor is non-zero (a Python bool).

    Args:
        input: a tensor of one element.

    Shape:
        one element -> a Python bool."""
    x = _t(input)
    if x.array.size != 1:
        raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    return bool(x.array.reshape(()) != 0)


@_api
def bernoulli(input, *, generator=None):
    """0/1 draws with the probabilities in ``input`` (the generator's, or numformer's).

    Args:
        input: probabilities in [0, 1].
        generator: a ``numformer.Generator`` to draw from (default: the global one).

    Shape:
        ``(*)`` -> ``(*)``."""
    p = _t(input)
    rng = backend.rng_of(generator)
    u = rng.random(p.shape)
    return Tensor._wrap(xp.asarray((u < backend.to_numpy(p.array)).astype(p.dtype)), False)


# --- functions PyTorch has at module level only (numformer.NAME, not Tensor.NAME) ------------

MODULE: dict = {}


def _module(fn):
    MODULE[fn.__name__.rstrip("_")] = fn
    return fn


@_module
def einsum(equation, *operands):
    """Einstein summation (NumPy's notation: ``"bhqd,bhkd->bhqk"``, ``...``, implicit output),
    differentiable in every operand whose subscripts name each letter once.

    Args:
        equation: the subscripts.
        *operands: the tensors (or one list of them, as PyTorch also takes).

    Raises:
        ValueError: a malformed equation or operands that do not fit it (naming the operand)."""
    from numformer.ops.linalg import Einsum

    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    tensors = [_t(o) for o in operands]
    if builtins.len({t.dtype for t in tensors}) > 1:
        tensors = [t.to(np.result_type(*[u.dtype for u in tensors])) for t in tensors]
    return Einsum.apply(*tensors, equation=equation)


@_module
def broadcast_tensors(*tensors):
    """The tensors expanded to their common broadcast shape (views).

    Shape:
        each ``(*)`` -> the broadcast shape."""
    shape = np.broadcast_shapes(*[_t(t).shape for t in tensors])
    return tuple(_t(t).expand(shape) for t in tensors)


@_module
def broadcast_shapes(*shapes):
    """The shape tensors of these shapes broadcast to.

    Shape:
        shapes -> their broadcast shape."""
    return Size(np.broadcast_shapes(*[(s,) if isinstance(s, int) else tuple(s) for s in shapes]))


@_module
def hstack(tensors):
    """Tensors joined column-wise (along dim 1; dim 0 for 1-D ones).

    Args:
        tensors: a sequence of tensors.

    Shape:
        ``(n, a_i)`` each -> ``(n, sum a_i)``; ``(a_i,)`` -> ``(sum a_i,)``."""
    from numformer.tensor import cat

    tensors = [_t(t) for t in tensors]
    return cat(tensors, dim=0 if tensors[0].ndim == 1 else 1)


@_module
def vstack(tensors):
    """Tensors joined row-wise (1-D ones become rows).

    Args:
        tensors: a sequence of tensors.

    Shape:
        ``(a_i, m)`` each -> ``(sum a_i, m)``."""
    from numformer.tensor import cat

    return cat([t.reshape(1, -1) if t.ndim == 1 else t for t in map(_t, tensors)], dim=0)


MODULE["row_stack"] = vstack


@_module
def searchsorted(sorted_sequence, values, *, out_int32: bool = False, right: bool = False, side=None, sorter=None):
    """Indices where ``values`` would go in ``sorted_sequence`` (its last dim sorted) to keep it
    sorted; ``right`` (or ``side="right"``) places equal values after.

    Args:
        sorted_sequence: sorted along its last dimension.
        values: the values to place.
        out_int32: return int32 (else int64).
        right: place equal values after them.
        side: ``"left"`` or ``"right"`` (overrides ``right``).
        sorter: indices that sort ``sorted_sequence``, or None.

    Shape:
        ``values``' shape."""
    seq = _t(sorted_sequence).array
    found = array_of(values) if isinstance(values, Tensor) else xp.asarray(values)
    side = side or ("right" if right else "left")
    if seq.ndim == 1:
        found = xp.searchsorted(seq, found, side=side)
    else:
        rows = zip(seq.reshape(-1, seq.shape[-1]), found.reshape(-1, found.shape[-1]))
        found = xp.stack([xp.searchsorted(r, v, side=side) for r, v in rows]).reshape(found.shape)
    return Tensor._wrap(found.astype(np.int32 if out_int32 else np.int64), False)


@_api
def bucketize(input, boundaries, *, out_int32: bool = False, right: bool = False):
    """The bucket of each value among the 1-D ``boundaries`` (``right``: boundaries belong to
    the bucket on their left).

    Args:
        input: the input tensor.
        boundaries: a sorted 1-D tensor.
        out_int32: return int32 (else int64).
        right: which side of a boundary an equal value goes to (PyTorch's meaning).

    Shape:
        ``(*)`` -> ``(*)``."""
    return searchsorted(boundaries, input, out_int32=out_int32, side="left" if not right else "right")


class Size(tuple):
    """PyTorch's ``torch.Size``: a tuple of dims (``Tensor.shape`` is a plain tuple, equal to it)."""

    def numel(self) -> int:
        return math.prod(self)

    def __repr__(self) -> str:
        return f"numformer.Size({list(self)})"


MODULE["Size"] = Size
MODULE["finfo"] = np.finfo  # .min, .max, .eps, .tiny, .bits, .resolution as PyTorch's
MODULE["iinfo"] = np.iinfo


def _triangle_indices(rows, row: int, col: int, offset: int, dtype):
    return Tensor._wrap(xp.asarray(np.stack(rows(row, offset, col)).astype(backend.as_dtype(dtype or np.int64))), False)


@_module
def tril_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None):
    """The ``(2, N)`` row and column indices of the lower triangle (PyTorch's order).

    Args:
        row: the matrix's rows.
        col: the matrix's columns.
        offset: the diagonal (0: the main one).
        dtype: the integer dtype (default int64).
        device: the device (default: where numformer computes).

    Shape:
        -> ``(2, k)`` row and column indices."""
    return _triangle_indices(np.tril_indices, row, col, offset, dtype)


@_module
def triu_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None):
    """The ``(2, N)`` row and column indices of the upper triangle (PyTorch's order).

    Args:
        row: the matrix's rows.
        col: the matrix's columns.
        offset: the diagonal (0: the main one).
        dtype: the integer dtype (default int64).
        device: the device (default: where numformer computes).

    Shape:
        -> ``(2, k)`` row and column indices."""
    return _triangle_indices(np.triu_indices, row, col, offset, dtype)


@_module
def logspace(start, end, steps: int, base: float = 10.0, *, dtype=None, device=None, requires_grad: bool = False):
    """``steps`` values ``base ** x`` for x evenly spaced from ``start`` to ``end``.

    Args:
        start: the first exponent.
        end: the last exponent.
        steps: how many values.
        base: the base.
        dtype: the dtype (default: the default floating dtype).
        device: the device (default: where numformer computes).
        requires_grad: record operations on the result for ``backward``.

    Shape:
        -> ``(steps,)``."""
    values = np.logspace(start, end, steps, base=base).astype(backend.as_dtype(dtype or backend.get_default_dtype()))
    return Tensor._wrap(xp.asarray(values), requires_grad)


@_module
def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad: bool = False):
    """Normal draws: ``normal(mean, std)`` with tensors (broadcast) or ``normal(mean, std, size)``
    with numbers.

    Args:
        mean: the mean (a number or a tensor).
        std: the standard deviation (a number or a tensor).
        size: the shape when both are numbers.
        generator: a ``numformer.Generator`` to draw from (default: the global one).
        dtype: the dtype (default: the default floating dtype).
        device: the device (default: where numformer computes).
        requires_grad: record operations on the result for ``backward``.

    Shape:
        the broadcast shape of ``mean`` and ``std``, or ``size``."""
    rng = backend.rng_of(generator)
    m = array_of(mean) if isinstance(mean, Tensor) else mean
    s = array_of(std) if isinstance(std, Tensor) else std
    shape = tuple(size) if size is not None else np.broadcast_shapes(np.shape(m), np.shape(s))
    kind = next((t.dtype for t in (mean, std) if isinstance(t, Tensor)), None)
    values = rng.standard_normal(shape) * backend.to_numpy(xp.asarray(s)) + backend.to_numpy(xp.asarray(m))
    dtype = backend.as_dtype(dtype or kind or backend.get_default_dtype())
    return Tensor._wrap(xp.asarray(values.astype(dtype)), requires_grad)


_deterministic = [False]


@_module
def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Recorded: numformer's kernels are deterministic already (fixed reduction orders).

    Args:
        mode: True or False: recorded; numformer's kernels are deterministic either way.
        warn_only: accepted, as PyTorch's."""
    _deterministic[0] = bool(mode)


@_module
def are_deterministic_algorithms_enabled() -> bool:
    """What ``use_deterministic_algorithms`` last set (numformer's kernels are deterministic either way)."""
    return _deterministic[0]


@_module
def seed() -> int:
    """Seed numformer's generator from the operating system's entropy; returns the seed."""
    value = int(np.random.SeedSequence().entropy % (2**63))
    backend.manual_seed(value)
    return value


@_module
def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None, sci_mode=None):
    """How tensors print, as PyTorch's (``profile``: "default", "short" or "full").

    Args:
        precision: digits after the decimal point.
        threshold: the element count above which a tensor is summarised.
        edgeitems: the items shown at each end when summarised.
        linewidth: the characters per line.
        profile: ``"default"``, ``"short"`` or ``"full"``.
        sci_mode: force (True) or forbid (False) scientific notation; None decides."""
    from numformer.tensor import PRINT_OPTIONS

    profiles = {"default": (4, 1000, 3, 80), "short": (2, 1000, 2, 80), "full": (4, sys.maxsize, 3, 80)}
    if profile is not None:
        PRINT_OPTIONS.update(zip(("precision", "threshold", "edgeitems", "linewidth"), profiles[profile]))
    given = dict(precision=precision, threshold=threshold, edgeitems=edgeitems, linewidth=linewidth)
    PRINT_OPTIONS.update({k: v for k, v in given.items() if v is not None})
    if sci_mode is not None:
        PRINT_OPTIONS["suppress"] = not sci_mode


def install() -> None:
    """Make every function of the table a method of ``Tensor`` as well (its first argument the
    tensor), unless ``Tensor`` defines that method itself: ``where`` (PyTorch's
    ``Tensor.where(condition, other)`` differs from ``torch.where``), ``reshape``, ``permute`` and
    ``flip`` (their methods take ``*dims``), ``detach``, ``masked_fill``."""
    own = set(vars(Tensor))
    for name, fn in TABLE.items():
        if name not in own:
            setattr(Tensor, name, fn)
    for name in INPLACE:
        if name + "_" not in own:
            setattr(Tensor, name + "_", _inplace_method(name, TABLE[name]))


# Functions whose in-place method ``Tensor.NAME_`` PyTorch has (the others are written by hand
# in tensor.py: add_, mul_, clamp_, masked_fill_, ...).
INPLACE = (
    "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "abs",
    "neg", "reciprocal", "square", "floor", "ceil", "trunc", "round", "sign", "erf", "clamp_min", "clamp_max",
    "lerp", "addcmul", "addcdiv", "fmod", "remainder", "nan_to_num", "index_add", "tril", "triu",
    "logical_not", "eq", "ne", "lt", "le", "gt", "ge", "t", "squeeze", "unsqueeze", "transpose",
)  # fmt: skip


def _inplace_method(name: str, fn):
    def method(self, *args, **kwargs):
        result = fn(self, *args, **kwargs)
        if result.shape != self.shape:  # squeeze_, unsqueeze_, t_, transpose_: a new shape
            if self._records_write(*args):
                raise RuntimeError(f"{name}_: changing the shape of a tensor in a graph in place is not supported")
            self.array = result.array.astype(self.dtype, copy=False)
            self._bump()
            return self
        return self._inplace(lambda a, *others: fn(a, *others, **kwargs), *args)

    method.__name__ = method.__qualname__ = name + "_"
    method.__doc__ = f"``{name}`` written into this tensor (PyTorch's ``Tensor.{name}_``)."
    return method
