"""Elementwise primitives: arithmetic, activations, where and clip.

Each class is one primitive: ``forward`` on arrays and, right below it, ``backward`` returning
one gradient per tensor input. Binary ops broadcast as NumPy does; ``unbroadcast`` sums the
gradient back to each input's shape.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from numformer.autograd import Function, unbroadcast
from numformer.backend import contiguous, get_array_module, xp
from numformer.ops._threads import MIN_ELEMENTS, binary, parallel_for


def quiet(cls):
    """PyTorch's silence at the edges of a maths function's domain: ``log(0) = -inf``,
    ``sqrt(-1) = nan``, ``exp(100) = inf`` (float32) without NumPy's RuntimeWarning, in the
    forward and the backward. For the unary maths primitives, whose edge values are ordinary
    (a causal mask as ``log(tril(ones))``); the hot arithmetic keeps NumPy's default."""
    for name in ("forward", "backward"):
        method = cls.__dict__[name]

        @functools.wraps(method)
        def silent(self, *args, _method=method, **kwargs):
            with xp.errstate(all="ignore"):
                return _method(self, *args, **kwargs)

        setattr(cls, name, silent)
    return cls


# --- arithmetic ----------------------------------------------------------------------------


class Add(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return binary(xp.add, a, b)

    def backward(self, g):
        sa, sb = self.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        sa, sb = self.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    grad_reads = ((1,), (0,))  # da = g b, db = g a

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        self.a = a if self.needs_grad[1] else None  # a is only needed for b's gradient
        self.b = b if self.needs_grad[0] else None
        return a * b

    def backward(self, g):
        sa, sb = self.shapes
        ga = unbroadcast(g * self.b, sa) if self.b is not None else None
        gb = unbroadcast(g * self.a, sb) if self.a is not None else None
        return ga, gb


class Div(Function):
    """``a / b``; division by zero gives inf or NaN without a warning, as in PyTorch."""

    grad_reads = ((1,), (0, 1))  # da = g / b, db = -g a / b^2

    def forward(self, a, b):
        self.a, self.b = a, b
        with xp.errstate(divide="ignore", invalid="ignore"):
            return a / b

    def backward(self, g):
        a, b = self.a, self.b
        with xp.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ga = unbroadcast(g / b, a.shape) if self.needs_grad[0] else None
            gb = unbroadcast(-g * a / (b * b), b.shape) if self.needs_grad[1] else None
        return ga, gb


class Neg(Function):
    saves_inputs = False

    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


@quiet
class PowScalar(Function):
    """``a ** exponent`` for a Python-number exponent."""

    def forward(self, a, exponent):
        self.a, self.exponent = a, exponent
        return a**exponent

    def backward(self, g):
        p = self.exponent
        if p == 2:
            return (g * (2 * self.a),)
        return (g * (p * self.a ** (p - 1)),)


@quiet
class Pow(Function):
    """``a ** b`` for two tensors; the gradient for ``b`` is ``out * log(a)``."""

    saves_output = True

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, g):
        a, b = self.a, self.b
        ga = unbroadcast(g * b * a ** (b - 1), a.shape) if self.needs_grad[0] else None
        gb = None
        if self.needs_grad[1]:
            with xp.errstate(divide="ignore", invalid="ignore"):
                log_a = xp.where(a > 0, xp.log(xp.where(a > 0, a, 1)), 0)
            gb = unbroadcast(g * self.out * log_a.astype(self.out.dtype), b.shape)
        return ga, gb


# --- unary maths ---------------------------------------------------------------------------


@quiet
class Exp(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, a):
        self.out = xp.exp(a)
        return self.out

    def backward(self, g):
        return (g * self.out,)


@quiet
class Log(Function):
    def forward(self, a):
        self.a = a
        return xp.log(a)

    def backward(self, g):
        return (g / self.a,)


@quiet
class Sqrt(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, a):
        self.out = xp.sqrt(a)
        return self.out

    def backward(self, g):
        return (g / (2 * self.out),)


class Abs(Function):
    def forward(self, a):
        self.a = a
        return xp.abs(a)

    def backward(self, g):
        return (g * xp.sign(self.a),)


class Tanh(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, a):
        self.out = xp.tanh(a)
        return self.out

    def backward(self, g):
        return (g * (1 - self.out * self.out),)


class Sigmoid(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, a):
        # 1 / (1 + exp(-a)) written through tanh: stable for any magnitude, no overflow warning.
        self.out = 0.5 * (xp.tanh(0.5 * a) + 1)
        return self.out

    def backward(self, g):
        s = self.out
        return (g * s * (1 - s),)


# NumPy's maximum runs its SIMD loop only when both operands are arrays (against a scalar 0 it
# takes longer), so ReLU compares blocks with a small cached block of zeros.
_ZERO_BLOCK = 1 << 16


def _zeros(dtype):
    return _zeros_of(get_array_module(), dtype)  # one block per array module and dtype


@functools.lru_cache(maxsize=8)
def _zeros_of(module, dtype):
    zeros = xp.zeros(_ZERO_BLOCK, dtype=dtype)
    zeros.flags.writeable = False
    return zeros


def relu_into(a, out) -> None:
    """out = max(a, 0) (``out`` may be ``a``: in place). NaN stays NaN."""
    if not (a.flags.c_contiguous and out.flags.c_contiguous):
        xp.maximum(a, 0, out=out)
        return
    flat_a, flat_out, zeros = a.reshape(-1), out.reshape(-1), _zeros(a.dtype)
    for start in range(0, flat_a.size, _ZERO_BLOCK):
        stop = min(start + _ZERO_BLOCK, flat_a.size)
        xp.maximum(flat_a[start:stop], zeros[: stop - start], out=flat_out[start:stop])


def relu_grad(g, y):
    """dL/dx of y = relu(x) given g = dL/dy and y (or x: y > 0 exactly where x > 0), split over
    threads. ``y`` NaN gives 0."""
    g, y = contiguous(g), contiguous(y)
    out = xp.empty(g.shape, g.dtype)
    flat_g, flat_y, flat_out = g.reshape(-1), y.reshape(-1), out.reshape(-1)

    def chunk(lo, hi):
        positive = flat_y[lo:hi] > 0
        xp.multiply(flat_g[lo:hi], positive, out=flat_out[lo:hi])

    parallel_for(g.size, chunk)
    return out


class Relu(Function):
    """max(a, 0); NaN stays NaN (as PyTorch), so a poisoned input is not silently hidden.
    ``nn.layers.linear_then`` runs the same two helpers inside the GEMM's chunks (``F.linear_relu``)."""

    saves_inputs = False
    saves_output = True

    def forward(self, a):
        a = contiguous(a)
        out = xp.empty(a.shape, a.dtype)
        flat_a, flat_out = a.reshape(-1), out.reshape(-1)
        parallel_for(a.size, lambda lo, hi: relu_into(flat_a[lo:hi], flat_out[lo:hi]))
        self.out = out if self.needs_grad[0] else None
        return out

    def backward(self, g):
        return (relu_grad(g, self.out),)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
# Elements per tile of the multi-pass elementwise kernels (1 MiB of float32): near a core's cache,
# and long enough that each NumPy pass outlasts the hand-over of the GIL between two threads
# (GELU at 2048 x 1536, 2 threads: 64K-element tiles 27 ms, 256K 19-23 ms, forward + backward).
TILE = 1 << 18
GELU_WORK = 2  # parallel_for's work per element for GELU: two chunks from MIN_ELEMENTS elements
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _tanh_term(a, t):
    """t = tanh(sqrt(2/pi) a (1 + 0.044715 a^2)), written into ``t``; returns ``t``."""
    xp.multiply(a, a, out=t)
    t *= a.dtype.type(0.044715 * _SQRT_2_OVER_PI)
    t += a.dtype.type(_SQRT_2_OVER_PI)
    t *= a
    return xp.tanh(t, out=t)


def _gelu_tanh(a, t, out):
    """out = a/2 (1 + t), t = ``_tanh_term(a)``, both written in place (``out`` may be ``t`` or
    ``a``); returns ``out``."""
    _tanh_term(a, t)
    t += 1
    t *= a.dtype.type(0.5)  # exact; halving before the product also spares float16 an overflow
    return xp.multiply(a, t, out=out)


def _gelu_tanh_tile(a, out, d=None):
    """out = GELU(a), tanh form, and into ``d`` (unless None) its derivative
    0.5 (1 + t) + 0.5 a (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 a^2). ``out`` may be ``a``."""
    if d is None:  # out holds t unless it is a's own memory (the epilogue's in-place call)
        _gelu_tanh(a, xp.empty_like(a) if xp.may_share_memory(a, out) else out, out)
        return
    dt = a.dtype.type
    t = _tanh_term(a, xp.empty_like(a))
    xp.multiply(a, a, out=d)
    d *= dt(3 * 0.044715 * _SQRT_2_OVER_PI)
    d += dt(_SQRT_2_OVER_PI)
    d *= a
    one_minus = xp.multiply(t, t)
    xp.subtract(1, one_minus, out=one_minus)
    d *= one_minus
    d += t
    d += 1
    d *= dt(0.5)
    t += 1
    t *= dt(0.5)
    xp.multiply(a, t, out=out)


# float32 GELU: Phi(-|x|) = exp(-x^2 / 2) S(|x|), S(x) = erfcx(x / sqrt 2) / 2 written as
# sum_k c_k t^k, k = 1..6, t = 1 / (1 + P x) (Hastings' form, as in Abramowitz & Stegun 7.1.26).
# The fit: weighted least squares on 400,001 points of [0, 14] against SciPy's erfcx, iterated
# towards the minimax of the absolute error of Phi, with P chosen to minimise it; at most 3.9e-9
# in float64 (float32 rounding is 6e-8). Stored doubled: H = 2 Phi(-|x|) = erfc(|x| / sqrt 2).
# The exp(-x^2 / 2) is also the derivative's, and Phi(x) = step(x) + (1/2 - step(x)) H(x) never
# subtracts for negative inputs: their small Phi keeps about 2e-4 relative precision down to x = -5
# and 1e-2 in the far tail (1 + erf(x / sqrt 2) in float32 loses it all by x = -5.5). 24 NumPy passes
# against 31 through erf, and no copysign or minimum (slow loops): 1.5x faster with the
# derivative (float32, 2^20 elements, Zen 5).
_GELU32_P = 0.27598327559174984
_GELU32_H = (
    0.235254634793605,
    0.09329140844901102,
    0.6446912628206156,
    -0.6282854390438078,
    0.8819991615800786,
    -0.22695103614338252,
)


def _gelu_exact_float32_tile(a, out, d=None):
    """``_gelu_exact_tile`` for float32 from the fit above."""
    f = xp.float32
    e = xp.multiply(a, a)
    e *= f(-0.5)
    xp.exp(e, out=e)  # exp(-a^2 / 2)
    t = xp.abs(a)
    t *= f(_GELU32_P)
    t += f(1)
    xp.divide(f(1), t, out=t)
    h = xp.multiply(t, f(_GELU32_H[-1]))
    for coefficient in _GELU32_H[-2::-1]:
        h += f(coefficient)
        h *= t
    h *= e  # 2 Phi(-|a|)
    cdf = xp.greater_equal(a, f(0), out=t, casting="unsafe")  # step: 1 where a >= 0, else 0 (NaN too)
    w = xp.subtract(f(0.5), cdf)
    w *= h
    cdf += w  # Phi(a)
    if d is not None:
        xp.multiply(e, f(_INV_SQRT_2PI), out=d)
        d *= a
        d += cdf
    xp.multiply(a, cdf, out=out)


def _gelu_exact_tile(a, out, d=None):
    """out = a Phi(a), Phi(x) = (1 + erf(x / sqrt 2)) / 2, and into ``d`` (unless None) its
    derivative Phi(a) + a phi(a), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). ``out`` may be ``a``.
    float32 NumPy arrays through ``_gelu_exact_float32_tile``; other dtypes and devices through
    ``_erf_into``."""
    if a.dtype == np.float32 and type(a) is np.ndarray:
        return _gelu_exact_float32_tile(a, out, d)
    dt = a.dtype.type
    cdf = xp.multiply(a, dt(_INV_SQRT_2))
    _erf_into(cdf, cdf)
    cdf += 1
    cdf *= dt(0.5)
    if d is not None:
        xp.multiply(a, a, out=d)
        d *= dt(-0.5)
        xp.exp(d, out=d)
        d *= dt(_INV_SQRT_2PI)
        d *= a
        d += cdf
    xp.multiply(a, cdf, out=out)


def gelu_epilogue(approximate: str, derivative=None):
    """``epilogue(block, index)`` for ``matmul``: GELU (``approximate`` as ``Gelu``'s) of the
    product's ``block`` in place, while it is in the core's cache, and its derivative into
    ``derivative[index]`` (unless None; ``index`` is the block's place in the product), row
    groups of about ``TILE`` elements at a time. ``Linear``'s fused activation."""
    tile = _gelu_tanh_tile if approximate == "tanh" else _gelu_exact_tile

    def epilogue(block, index):
        d = derivative[index] if derivative is not None else None
        step = max(1, TILE // max(block.shape[-1], 1))
        for lo in range(0, block.shape[0], step):
            rows = slice(lo, lo + step)
            tile(block[rows], block[rows], d[rows] if d is not None else None)

    return epilogue


class Gelu(Function):
    """GELU: ``x * Phi(x)`` (``approximate="none"``) or its tanh form (``"tanh"``), as PyTorch.

    Exact: d/dx = Phi(x) + x * phi(x). Tanh form: y = x/2 (1 + t), t = tanh(u),
    u = sqrt(2/pi) (x + 0.044715 x^3); dy/dx = (1 + t)/2 + x/2 (1 - t^2) du/dx.
    Forward computes the derivative tile by tile beside the output, while t (or Phi) is in
    the core's cache, and keeps only that one array: neither x nor t (PyTorch keeps x). Backward
    is then one product of the same factors (the exact 1/2 taken first: the same bits, unless
    the gradient's product overflows or underflows float32).
    """

    def infer(self, a, approximate="none"):
        if approximate == "tanh" and a.size < MIN_ELEMENTS:  # a few rows (decoding): no chunks
            t = xp.empty_like(a)  # a's memory layout: ufuncs on mixed layouts run slower
            return _gelu_tanh(a, t, t)
        return self._gelu(contiguous(a), approximate, derivative=False)

    def forward(self, a, approximate="none"):
        return self._gelu(contiguous(a), approximate, derivative=self.needs_grad[0])

    def _gelu(self, a, approximate, derivative: bool):
        out = xp.empty(a.shape, a.dtype)
        self.derivative = d = xp.empty(a.shape, a.dtype) if derivative else None
        flat_a, flat_out = a.reshape(-1), out.reshape(-1)
        flat_d = d.reshape(-1) if derivative else None
        tile = _gelu_tanh_tile if approximate == "tanh" else _gelu_exact_tile

        def chunk(lo, hi):
            # Tiles of TILE elements: the passes then run in the core's cache, not memory.
            for start in range(lo, hi, TILE):
                end = min(start + TILE, hi)
                tile(flat_a[start:end], flat_out[start:end], flat_d[start:end] if derivative else None)

        # split from MIN_ELEMENTS (two chunks of half that): at one sentence's 68 x 1536 (104448) a
        # split cost more than it saved, at 128 x 1536 it pays
        parallel_for(a.size, chunk, GELU_WORK)
        return out

    def backward(self, g):
        return (binary(xp.multiply, contiguous(g), self.derivative),)


# --- selection -----------------------------------------------------------------------------


class Where(Function):
    """``where(condition, a, b)``; ``condition`` is a boolean array (not differentiated)."""

    saves_inputs = False

    def forward(self, a, b, condition):
        self.condition, self.shapes = condition, (a.shape, b.shape)
        return xp.where(condition, a, b)

    def backward(self, g):
        sa, sb = self.shapes
        zero = xp.zeros((), dtype=g.dtype)
        ga = unbroadcast(xp.where(self.condition, g, zero), sa) if self.needs_grad[0] else None
        gb = unbroadcast(xp.where(self.condition, zero, g), sb) if self.needs_grad[1] else None
        return ga, gb


class Clip(Function):
    """Clamp to ``[min, max]``; the gradient passes where ``min <= a <= max`` (PyTorch's rule)."""

    saves_inputs = False

    def forward(self, a, min=None, max=None):  # noqa: A002 - PyTorch's argument names
        inside = xp.ones(a.shape, dtype=bool)
        if min is not None:
            inside &= a >= min
        if max is not None:
            inside &= a <= max
        self.inside = inside
        return xp.clip(a, min, max).astype(a.dtype, copy=False)

    def backward(self, g):
        return (g * self.inside,)


class Cast(Function):
    """Change dtype; the gradient is cast back to the input's dtype."""

    saves_inputs = False

    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return (g.astype(self.dtype),)


class Copy(Function):
    """A copy of ``a`` in new memory (``clone``); the gradient passes unchanged."""

    saves_inputs = False

    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return (g,)


class Fill(Function):
    """``a``'s shape filled with ``value`` (an in-place ``fill_`` of a tensor in the graph): no
    gradient reaches ``a``, whose values are gone."""

    saves_inputs = False

    def forward(self, a, value):
        self.shape, self.dtype = a.shape, a.dtype
        return xp.full(a.shape, value, dtype=a.dtype)

    def backward(self, g):
        return (xp.zeros(self.shape, dtype=self.dtype),)


# --- more unary maths ----------------------------------------------------------------------


@quiet
class Sin(Function):
    def forward(self, a):
        self.a = a
        return xp.sin(a)

    def backward(self, g):
        return (g * xp.cos(self.a),)


@quiet
class Cos(Function):
    def forward(self, a):
        self.a = a
        return xp.cos(a)

    def backward(self, g):
        return (-g * xp.sin(self.a),)


@quiet
class Log1p(Function):
    """log(1 + a), exact for small ``a``; d/da = 1 / (1 + a)."""

    def forward(self, a):
        self.a = a
        return xp.log1p(a)

    def backward(self, g):
        return (g / (1 + self.a),)


@quiet
class Expm1(Function):
    """exp(a) - 1, exact for small ``a``; d/da = exp(a) = out + 1."""

    saves_inputs = False
    saves_output = True

    def forward(self, a):
        self.out = xp.expm1(a)
        return self.out

    def backward(self, g):
        return (g * (self.out + 1),)


@quiet
class Erf(Function):
    """The error function (Cephes' rational forms, as GELU's); d/da = 2/sqrt(pi) exp(-a^2)."""

    def forward(self, a):
        self.a = a
        out = xp.array(a, dtype=a.dtype, copy=True)
        return _erf_into(out, out)

    def backward(self, g):
        a = self.a
        return (g * (xp.exp(-(a * a)) * a.dtype.type(2 / math.sqrt(math.pi))),)


class Stepwise(Function):
    """A function that is constant between jumps (floor, ceil, round, trunc, sign): its
    gradient is zero almost everywhere, as PyTorch's."""

    saves_inputs = False

    def forward(self, a, name):
        self.shape, self.dtype = a.shape, a.dtype
        out = getattr(xp, name)(a)
        if name == "sign" and a.dtype.kind == "f":
            out[xp.isnan(a)] = 0  # PyTorch's sign(nan) is 0
        return out

    def backward(self, g):
        return (xp.zeros(self.shape, dtype=self.dtype),)


class Maximum(Function):
    """Elementwise max of two tensors; at ties each side gets half the gradient (PyTorch's rule)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return xp.maximum(a, b)

    def backward(self, g):
        return _split_at_ties(g, self.a, self.b, self.a > self.b, self.needs_grad)


class Minimum(Function):
    """Elementwise min of two tensors; at ties each side gets half the gradient (PyTorch's rule)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return xp.minimum(a, b)

    def backward(self, g):
        return _split_at_ties(g, self.a, self.b, self.a < self.b, self.needs_grad)


def _split_at_ties(g, a, b, a_wins, needs):
    tie = a == b
    share = xp.where(tie, g.dtype.type(0.5), xp.where(a_wins, g.dtype.type(1), g.dtype.type(0))).astype(g.dtype)
    ga = unbroadcast(g * share, a.shape) if needs[0] else None
    gb = unbroadcast(g * (1 - share), b.shape) if needs[1] else None
    return ga, gb


# --- the error function (NumPy has none; the core may not import SciPy) -----------------------
# Cephes' rational approximations (S. L. Moshier, public domain): relative error ~1e-16.
_ERF_T = (
    9.60497373987051638749e0,
    9.00260197203842689217e1,
    2.23200534594684319226e3,
    7.00332514112805075473e3,
    5.55923013010394962768e4,
)
_ERF_U = (
    1.0,
    3.35617141647503099647e1,
    5.21357949780152679795e2,
    4.59432382970980127987e3,
    2.26290000613890934246e4,
    4.92673942608635921086e4,
)
_ERFC_P = (
    2.46196981473530512524e-10,
    5.64189564831068821977e-1,
    7.46321056442269912687e0,
    4.86371970985681366614e1,
    1.96520832956077098242e2,
    5.26445194995477358631e2,
    9.34528527171957607540e2,
    1.02755188689515710272e3,
    5.57535335369399327526e2,
)
_ERFC_Q = (
    1.0,
    1.32281951154744992508e1,
    8.67072140885989742329e1,
    3.54937778887819891062e2,
    9.75708501743205489753e2,
    1.82390916687909736289e3,
    2.24633760818710981792e3,
    1.65666309194161350182e3,
    5.57535340817727675546e2,
)


def _polyval(coefficients, x):
    out = xp.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        out *= x
        out += c
    return out


def _erf_numpy_into(x, out):
    """erf(x) written into ``out`` (may be ``x``): Cephes' rational forms; the costly erfc form
    runs only on the elements that need it (|x| >= 1), and not past where erf is +-1 in the
    dtype (|x| >= 4 for float32, 6 for float64)."""
    ax = xp.abs(x)
    big = xp.flatnonzero(ax >= 1.0)
    xb = x[big]
    z = xp.minimum(ax, 1.0)  # the small form on every element, its input kept in [0, 1]
    z *= z
    num = _polyval(_ERF_T, z)
    num /= _polyval(_ERF_U, z)
    xp.multiply(x, num, out=out)
    if big.size:
        t = xp.minimum(xp.abs(xb), 4.0 if x.dtype.itemsize <= 4 else 6.0)
        erfc = xp.exp(-t * t)
        erfc *= _polyval(_ERFC_P, t)
        erfc /= _polyval(_ERFC_Q, t)
        out[big] = xp.sign(xb) * (1 - erfc)
    return out


# float32: log(erfc(x)) = sum_k C_k (x / 4)^k, k = 1..11, on [0, 4] (past 4, erf is 1 in float32),
# then erf(x) = sign(x) * -expm1(log erfc |x|): one polynomial, one expm1, no branch, so each
# pass is one SIMD ufunc call. The coefficients are a least-squares fit (float64, 40,001
# Chebyshev nodes, weights 1 / max(|log erfc|, 1e-3)) against SciPy's erfc; C_1 is -8/sqrt(pi)'s
# fit, so erf(x) ~ 2x/sqrt(pi) near 0 with full relative precision, and erf(0) = 0. Measured
# error against float64 erf: at most 9.6e-8 (0.8 float32 ulp of 1) over the whole line;
# tests/ops/test_primitives.py holds it to 2 ulp. About 3 ns per element on one core, 5x SciPy's
# float32 erf (which computes in double).
_ERF32_LOG_ERFC = (
    -4.513516679244045,
    -10.185915216458243,
    -6.577396940434166,
    4.893548047785418,
    0.2756740724729312,
    -7.513726903106818,
    12.760554855829913,
    -12.497058086990897,
    7.686837712681116,
    -2.7574707691554896,
    0.44069173191084765,
)


def _erf_float32_into(x, out):
    """erf of a float32 array into ``out`` (may be ``x``) from the fit above."""
    t = xp.abs(x)
    xp.minimum(t, 4.0, out=t)
    t *= xp.float32(0.25)
    c = [xp.float32(v) for v in _ERF32_LOG_ERFC]
    acc = xp.multiply(t, c[-1])
    for coefficient in c[-2::-1]:
        acc += coefficient
        acc *= t
    xp.expm1(acc, out=acc)
    xp.negative(acc, out=acc)
    return xp.copysign(acc, x, out=out)


def _erf_scipy_into(x, out):
    return _scipy_erf(x, out=out)


try:  # SciPy's erf, where SciPy is installed (the ``fast`` extra): one C loop per element
    from scipy.special import erf as _scipy_erf
except ImportError:  # pragma: no cover - depends on the environment
    _scipy_erf = None


def _erf_into(x, out):
    """erf(x) into ``out``, in ``x``'s dtype: float32 from the one-polynomial fit
    (``_erf_float32_into``); float64 from SciPy's on NumPy arrays when it is installed, else the
    NumPy form of Cephes' (``_erf_numpy_into``); each accurate to the dtype's precision."""
    if x.dtype == np.float32:
        return _erf_float32_into(x, out)
    if _scipy_erf is not None and type(x) is np.ndarray:
        return _erf_scipy_into(x, out)
    return _erf_numpy_into(x, out)


def erf(x):
    """The error function, elementwise, in the dtype of ``x`` (no gradient; used by GELU)."""
    return _erf_into(x, xp.empty_like(x))
