"""Matrix multiplication, batched and broadcasting as ``numpy.matmul``."""

from __future__ import annotations

import numpy as np

from numformer.autograd import Function, unbroadcast
from numformer.backend import contiguous, xp
from numformer.ops._threads import MIN_MACS, binary, concurrently, fills_threads, matmul, parallel_for, product_dtype
from numformer.ops.elementwise import gelu_epilogue, relu_grad, relu_into


class MatMul(Function):
    """``a @ b``. With ``G = dL/dout``: dL/da = G b^T, dL/db = a^T G, summed over broadcast batches.

    1-D operands are promoted to matrices as ``numpy.matmul`` does and squeezed back. A 2-D
    ``b`` against a batched ``a`` folds the batch into one GEMM for dL/db. (``nn.Linear`` has
    its own primitive, ``Linear``, below.)
    """

    grad_reads = ((1,), (0,))  # dL/da reads b, dL/db reads a

    def forward(self, a, b):
        self.a, self.b = a, b
        return matmul(a, b)

    def backward(self, g):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1 and b.ndim == 1:  # a dot product: g is 0-d
            g = g.reshape(1, 1)
        elif a.ndim == 1:
            g = xp.expand_dims(g, -2)
        elif b.ndim == 1:
            g = xp.expand_dims(g, -1)
        ga = gb = None
        if self.needs_grad[0]:
            ga = unbroadcast(matmul(g, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if self.needs_grad[1]:
            if b2.ndim == 2 and a2.ndim > 2:
                k, n = a2.shape[-1], g.shape[-1]
                gb = matmul(a2.reshape(-1, k).T, g.reshape(-1, n))
            else:
                gb = unbroadcast(matmul(xp.swapaxes(a2, -1, -2), g), b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


# OpenBLAS multiplies small matrices (about m n k < 7e5 in float32 on x86-64's AVX-512 kernels)
# with kernels that read the operands in place; larger products first copy ("pack") both into
# its blocked layout. For the 2-8 rows of a decoding batch against a large weight, packing the
# weight costs more than the multiply-adds, so x W_b^T over row blocks W_b of the weight that
# stay under SMALL_PRODUCT runs faster than one (W x^T)^T. How large "large" is grows with the
# rows: on the Intel Xeon (AVX-512, 2 vCPUs) of bench/results, the blocks won from about
# 2^18 weight elements per row (2 rows: 576 x 1536, 167 against 199 us; 8 rows: 4096 x 1024,
# 885 against 1,112 us) and lost below it (8 rows: 576 x 1536, 282 against 207 us; the small
# GPT's 768 x 256, 187 against 69 us; mean of 300 calls each, 2 threads).
# The blocks go to threads only above MIN_MACS of work, as every product here.
SMALL_PRODUCT = 1 << 19
BLOCKED_ROWS = 8
SKINNY_WEIGHT_PER_ROW = 1 << 18


def skinny_product(x, weight, bias=None, epilogue=None):
    """``x @ weight.T (+ bias)`` for a few rows x ``(m, in)`` against a large weight ``(out, in)``:
    the weight viewed as a stack of row blocks under ``SMALL_PRODUCT`` (no copy, whatever its
    strides), one batched ``matmul`` per thread over its share of the blocks (NumPy runs the
    batch in C, one BLAS call per block, without the GIL); the rows left over after the last
    whole block in one more call. ``epilogue(out, ...)`` then updates the result in place.

    Shape: x ``(m, in)``, weight ``(out, in)``, bias ``(out,)`` -> ``(m, out)``."""
    m, k = x.shape
    n = weight.shape[0]
    rows = max(16, SMALL_PRODUCT // (m * k) // 16 * 16)
    whole = n // rows
    stride_out, stride_in = weight.strides
    blocks = np.lib.stride_tricks.as_strided(  # host arrays only (Linear checks)
        weight, (whole, rows, k), (rows * stride_out, stride_out, stride_in)
    )
    stacked = xp.empty((whole, m, rows), dtype=product_dtype(x, weight))

    def share(lo, hi):
        xp.matmul(x, blocks[lo:hi].transpose(0, 2, 1), out=stacked[lo:hi])

    parallel_for(whole, share, m * rows * k, MIN_MACS)
    out = xp.empty((m, n), dtype=stacked.dtype)
    out[:, : whole * rows] = stacked.transpose(1, 0, 2).reshape(m, whole * rows)
    if whole * rows < n:
        xp.matmul(x, weight[whole * rows :].T, out=out[:, whole * rows :])
    if bias is not None:
        out += bias
    if epilogue is not None:
        epilogue(out, ...)
    return out


class Linear(Function):
    """``x @ W^T + b`` in one node (every ``nn.Linear``); ``relu=True``: relu of it, ``gelu``
    (``"none"`` or ``"tanh"``, as ``Gelu``'s ``approximate``): GELU of it, each applied to a
    thread's block of the result right after its GEMM, while the block is in cache (one
    parallel region, not two; no pass over the product from memory). x ``(*, in)``, W
    ``(out, in)``.

    dL/dx = G W, dL/dW = G^T x and dL/db = sum(G) with the leading dims folded into one GEMM;
    with ``relu``, G is first masked where the output is 0 (``relu_grad``), with ``gelu``
    multiplied by the GELU's derivative, which forward keeps (``Gelu``'s, the same bits). 2-8
    rows (decoding a batch) against a large weight take ``skinny_product``'s blocks.
    """

    grad_reads = ((1,), (0,), ())  # dx reads W, dW reads x, db nothing

    def forward(self, x, weight, *bias, relu=False, gelu=None):
        # Fold the leading dims into rows: one 2-D GEMM instead of NumPy's per-batch loop.
        self.x2, self.weight, self.x_shape = x.reshape(-1, x.shape[-1]), weight, x.shape
        self.saves_output = relu  # backward reads the output of the fused ReLU
        rows = self.x2.shape[0]
        if relu and gelu is not None:
            raise ValueError("Linear: relu and gelu are two activations; pass one")
        self.derivative = None
        if relu:
            epilogue = lambda block, index: relu_into(block, block)  # noqa: E731
        elif gelu is not None:
            if any(self.needs_grad):
                self.derivative = xp.empty((rows, weight.shape[0]), dtype=product_dtype(self.x2, weight))
            epilogue = gelu_epilogue(gelu, self.derivative)
        else:
            epilogue = None
        # A skinny x (1-32 rows: decoding) runs faster through BLAS as (W x^T)^T (one row: a GEMV
        # down W's contiguous rows, split by rows when W is large); from 64 rows on x W^T is
        # faster (bench/bench_ops.py measures both). The bias add writes the transposed product
        # back row-major for the cost of adding in place (no bias: a copy), so the next ops run on
        # contiguous rows. 2-8 rows against a large W take skinny_product's blocks instead.
        if (
            1 < rows <= BLOCKED_ROWS
            and weight.size > rows * SKINNY_WEIGHT_PER_ROW
            and type(self.x2) is np.ndarray  # on a GPU the library's own GEMM runs it whole
        ):
            out = skinny_product(self.x2, weight, bias[0] if bias else None, epilogue)
        elif rows <= 32:
            out_t = matmul(weight, self.x2.T).T
            out = xp.add(out_t, bias[0], order="C") if bias else xp.ascontiguousarray(out_t)
            if epilogue is not None:
                epilogue(out, ...)
        else:
            inference = not any(self.needs_grad)  # few rows then run on BLAS's threads (matmul)
            out = matmul(self.x2, weight.T, bias[0] if bias else None, epilogue, inference=inference)
        self.out = out if relu and any(self.needs_grad) else None
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        g2 = g.reshape(-1, g.shape[-1])
        if self.out is not None:
            g2 = relu_grad(g2, self.out)
        elif self.derivative is not None:
            g2 = binary(xp.multiply, contiguous(g2), self.derivative)
        wants_bias = len(self.needs_grad) == 3 and self.needs_grad[2]
        if self.needs_grad[0] and self.needs_grad[1] and type(g2) is np.ndarray and fills_threads(2):
            # independent products: dx (+ db) on the calling thread and dw on the other, each
            # whole (with more threads than two, each product split over all of them uses them
            # better). db goes with dx: the other thread starts tens of microseconds later, and
            # its G^T x, with the long inner dimension, is the slower product (Linear forward +
            # backward at the demo's four shapes: 0.96-0.98x the time with db beside dw, Zen 5)
            grads = [None, None, None]

            def input_grad():
                grads[0] = xp.matmul(g2, self.weight)
                if wants_bias:
                    grads[2] = xp.sum(g2, axis=0)

            def weight_grad():
                grads[1] = xp.matmul(g2.T, self.x2)

            concurrently([input_grad, weight_grad], g2.size * self.weight.shape[1])
            dx, dw, db = grads
            dx = dx.reshape(self.x_shape)
        else:
            dx = matmul(g2, self.weight).reshape(self.x_shape) if self.needs_grad[0] else None
            dw = matmul(g2.T, self.x2) if self.needs_grad[1] else None
            db = None
            if wants_bias:
                db = xp.empty(g2.shape[1], dtype=g2.dtype)
                parallel_for(g2.shape[1], lambda lo, hi: xp.sum(g2[:, lo:hi], axis=0, out=db[lo:hi]), g2.shape[0])
        return (dx, dw, db) if len(self.needs_grad) == 3 else (dx, dw)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def einsum_subscripts(equation: str, shapes: list) -> tuple[list, str]:
    """``equation`` (NumPy's / PyTorch's einsum notation, with ``...`` and implicit output) as
    explicit subscripts: one letter string per operand and the output's.

    Raises:
        ValueError: a malformed equation, a subscript count that differs from an operand's
        dims, or sizes of one letter that do not broadcast (each message names the operand)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum(): the equation {equation!r} has {len(terms)} operands, {len(shapes)} were given")
    used = set(eq) - set(".,->")
    if not used <= set(_LETTERS):
        raise ValueError(f"einsum(): subscripts must be letters a-z or A-Z, got {equation!r}")
    spare = [c for c in _LETTERS if c not in used]
    n_ellipsis = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t), default=0)
    if n_ellipsis > len(spare):
        raise ValueError(f"einsum(): too many dims under '...' in {equation!r}")
    ellipsis = "".join(spare[:n_ellipsis])
    subs = []
    for i, (term, shape) in enumerate(zip(terms, shapes)):
        if "..." in term:
            k = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", ellipsis[n_ellipsis - k :] if k else "")
        if "." in term or len(term) != len(shape):
            raise ValueError(
                f"einsum(): operand {i} has {len(shape)} dims but its subscripts {terms[i]!r} name {len(term)}"
            )
        subs.append(term)
    if arrow:
        out = rhs.replace("...", ellipsis)
        if "." in out or set(out) - set("".join(subs)) or len(set(out)) != len(out):
            raise ValueError(f"einsum(): the output subscripts of {equation!r} must name input letters, once each")
    else:
        joined = "".join(subs)
        out = ellipsis + "".join(sorted(c for c in set(joined) if joined.count(c) == 1 and c not in ellipsis))
    return subs, out


class Einsum(Function):
    """``einsum(equation, *operands)``: NumPy's einsum (BLAS contractions, ``optimize=True``).

    The gradient of operand i is the einsum of the output's gradient with the other operands
    into operand i's subscripts; letters only operand i has are broadcast back, and dims an
    operand broadcast (size 1) are summed back. A letter repeated within one operand (a
    diagonal) has no gradient here: asking for one raises."""

    def forward(self, *operands, equation):
        subs, out = einsum_subscripts(equation, [a.shape for a in operands])
        sizes: dict = {}
        for i, (term, a) in enumerate(zip(subs, operands)):
            for c, n in zip(term, a.shape):
                if sizes.get(c, 1) != n and n != 1 and sizes.get(c, 1) != 1:
                    raise ValueError(f"einsum(): operand {i} has size {n} for subscript {c!r}, expected {sizes[c]}")
                sizes[c] = max(sizes.get(c, 1), n)
        for i, term in enumerate(subs):
            if self.needs_grad and self.needs_grad[i] and len(set(term)) != len(term):
                raise NotImplementedError(
                    f"einsum(): no gradient for operand {i}, whose subscripts {term!r} repeat a letter (a diagonal)"
                )
        full = [xp.broadcast_to(a, tuple(sizes[c] for c in term)) if len(set(term)) == len(term) else a
                for term, a in zip(subs, operands)]  # fmt: skip
        self.subs, self.out_subs, self.sizes = subs, out, sizes
        self.operands = operands
        self.shapes = [a.shape for a in operands]
        spec = ",".join(subs) + "->" + out
        return xp.asarray(xp.einsum(spec, *full, optimize=len(full) > 1))

    def backward(self, g):
        grads = []
        for i, term in enumerate(self.subs):
            if not self.needs_grad[i]:
                grads.append(None)
                continue
            others = [(s, self.operands[j]) for j, s in enumerate(self.subs) if j != i]
            reachable = set(self.out_subs).union(*[set(s) for s, _ in others])
            kept = "".join(c for c in term if c in reachable)
            full = [xp.broadcast_to(a, tuple(self.sizes[c] for c in s)) for s, a in others]
            spec = ",".join([self.out_subs] + [s for s, _ in others]) + "->" + kept
            grad = xp.einsum(spec, g, *full, optimize=bool(others))
            # letters only this operand had: the output is constant along them
            grad = xp.broadcast_to(
                grad.reshape(tuple(self.sizes[c] if c in kept else 1 for c in term)),
                tuple(self.sizes[c] for c in term),
            )
            shape = self.shapes[i]
            summed = tuple(d for d, n in enumerate(shape) if n == 1 and grad.shape[d] != 1)
            if summed:
                grad = grad.sum(axis=summed, keepdims=True)
            grads.append(xp.ascontiguousarray(grad, dtype=g.dtype))
        return tuple(grads)
