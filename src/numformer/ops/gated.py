"""SiLU and the gated product of SwiGLU feed-forward layers, each one primitive with a
hand-derived backward.

SiLU (the "swish" of Ramachandran et al., 2017; Elfwing et al., 2018): silu(x) = x * sigmoid(x),
computed as x / (1 + exp(-x)) as PyTorch does (for x below about -88, exp(-x) overflows to inf
in float32 and silu(x) is -0, its limit). SwiGLU (Shazeer, 2020, "GLU Variants Improve
Transformer"; Llama's MLP) multiplies a gate's SiLU with an "up" projection: one pass, no
intermediate ``silu(gate)`` array. Both work in chunks split over threads (``parallel_for``).
"""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import contiguous, xp
from numformer.ops._threads import MIN_ELEMENTS, parallel_for


def _silu_into(x, out):
    """out = x / (1 + exp(-x)) (``out`` must not be ``x``); returns ``out``."""
    xp.negative(x, out=out)
    with xp.errstate(over="ignore"):  # exp(-x) = inf for x < -88 (float32): silu(x) = -0
        xp.exp(out, out=out)
    out += 1
    xp.divide(x, out, out=out)
    return out


def _sigmoid_into(x, out):
    """out = sigmoid(x) = 1 / (1 + exp(-x)) (``out`` must not be ``x``); returns ``out``."""
    xp.negative(x, out=out)
    with xp.errstate(over="ignore"):
        xp.exp(out, out=out)
    out += 1
    xp.divide(1, out, out=out)
    return out


def _elementwise(n: int, fn) -> None:
    """``fn(lo, hi)`` over the flat range ``0..n``: on this thread for a few elements (decoding),
    else in chunks over threads."""
    if n < MIN_ELEMENTS:
        fn(0, n)
    else:
        parallel_for(n, fn, 4)  # exp and a few passes per element


class Silu(Function):
    """silu(x) = x * sigmoid(x). With s = sigmoid(x): d silu/dx = s (1 + x (1 - s))."""

    def forward(self, x):
        x = contiguous(x)
        self.x = x if self.needs_grad[0] else None
        out = xp.empty(x.shape, x.dtype)
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)
        _elementwise(x.size, lambda lo, hi: _silu_into(flat_x[lo:hi], flat_out[lo:hi]))
        return out

    def backward(self, g):
        x = self.x
        dx = xp.empty(x.shape, x.dtype)
        flat_x, flat_dx, flat_g = x.reshape(-1), dx.reshape(-1), contiguous(g).reshape(-1)

        def chunk(lo, hi):
            xi, d = flat_x[lo:hi], flat_dx[lo:hi]
            s = _sigmoid_into(xi, xp.empty_like(xi))
            xp.subtract(1, s, out=d)  # s (1 + x (1 - s)), in place
            d *= xi
            d += 1
            d *= s
            d *= flat_g[lo:hi]

        _elementwise(x.size, chunk)
        return (dx,)


class SwiGLU(Function):
    """silu(gate) * up, elementwise, for gate and up of one shape (the two halves of a SwiGLU
    feed-forward layer's first projection).

    With s = sigmoid(gate): d/d up = g * silu(gate) = g * gate * s;
    d/d gate = g * up * s (1 + gate (1 - s)). Backward recomputes s from the saved gate and
    up (one exp per element) rather than keeping a third array.
    """

    def forward(self, gate, up):
        if gate.shape != up.shape:
            raise ValueError(f"SwiGLU: gate and up must have one shape, got {gate.shape} and {up.shape}")
        gate, up = contiguous(gate), contiguous(up)
        if any(self.needs_grad):
            self.gate, self.up = gate, up
        out = xp.empty(gate.shape, xp.result_type(gate, up))
        flat_gate, flat_up, flat_out = gate.reshape(-1), up.reshape(-1), out.reshape(-1)

        def chunk(lo, hi):
            o = _silu_into(flat_gate[lo:hi], flat_out[lo:hi])
            o *= flat_up[lo:hi]

        _elementwise(gate.size, chunk)
        return out

    def backward(self, g):
        gate, up = self.gate, self.up
        need_gate, need_up = self.needs_grad
        d_gate = xp.empty(gate.shape, gate.dtype) if need_gate else None
        d_up = xp.empty(up.shape, up.dtype) if need_up else None
        flat_gate, flat_up, flat_g = gate.reshape(-1), up.reshape(-1), contiguous(g).reshape(-1)

        def chunk(lo, hi):
            x, gi = flat_gate[lo:hi], flat_g[lo:hi]
            s = _sigmoid_into(x, xp.empty_like(x))
            if need_up:
                du = d_up.reshape(-1)[lo:hi]
                xp.multiply(x, s, out=du)
                du *= gi
            if need_gate:
                dg = d_gate.reshape(-1)[lo:hi]
                xp.subtract(1, s, out=dg)  # up * s (1 + gate (1 - s)) * g, in place
                dg *= x
                dg += 1
                dg *= s
                dg *= flat_up[lo:hi]
                dg *= gi

        _elementwise(gate.size, chunk)
        return d_gate, d_up
