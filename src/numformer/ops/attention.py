"""Scaled dot-product attention: the plain kernel (the (L, S) weights materialised) and the
blocked one (flash attention's online softmax), each with a hand-derived backward."""

from __future__ import annotations

import math

import numpy as np

from numformer.autograd import Function, unbroadcast
from numformer.backend import xp
from numformer.ops._threads import MIN_ELEMENTS, batch_slicer, dropout_mask, parallel_for, split_axis
from numformer.ops.softmax import constant_column, row_sums, softmax_inplace


def _masked_scores(q_scaled, k, bool_mask, float_mask, hidden, out=None):
    """q k^T (q comes scaled: the (L, E) side, not the (L, S) one) with the masks applied:
    ``float_mask`` added, -inf where ``bool_mask`` is False or ``hidden`` (causal) is True."""
    s = xp.matmul(q_scaled, xp.swapaxes(k, -1, -2), out=out)
    if float_mask is not None:
        s += float_mask
    if bool_mask is not None:
        xp.copyto(s, -xp.inf, where=~bool_mask)
    if hidden is not None:
        xp.copyto(s, -xp.inf, where=hidden)
    return s


# parallel_for's work per score in training: two GEMMs' worth of multiply-adds and several passes
# each, so a split pays from half as many scores as a one-pass kernel's MIN_ELEMENTS elements
# (the demo's 12 x 4 x 64 x 64 scores split: its step took 0.94-0.99 of the time in five paired runs
# with spinning workers, Zen 5; with sleeping ones it had not paid).
SCORE_WORK = 2

# A row's scores are shifted so that exp's largest term lies in [e^-SHIFT_SLACK, e^EXP_CEILING]:
# no overflow, no underflow of the terms that count. (The unnormalised E V of inference can
# still overflow for values of V near float32's range: it checks, and normalises if it must.)
EXP_CEILING = 30.0
SHIFT_SLACK = 30.0


def _score_shift(q_scaled, k, is_causal: bool):
    """Per-row shifts for the scores q k^T, to subtract instead of each row's max, so softmax
    skips the pass over the ``(L, S)`` scores that finds the max, and mostly the one that
    subtracts it too.

    The max M of row i lies in [lower, upper]: upper = |q_i| max_j |k_j| (Cauchy-Schwarz, j over
    the keys the row sees; causal: 0..i), lower = -upper, or when it matters a score the row
    sees (the mean score q_i . mean_j k_j; causal: the larger of the first and diagonal scores).
    The shift is max(upper - EXP_CEILING, 0), so exp(s - shift) <= e^EXP_CEILING; it is 0 for
    rows whose scores are all small, the usual case, and they need no subtraction at all. A row
    whose largest term could be below e^-SHIFT_SLACK (lower - shift < -SHIFT_SLACK), or whose
    bounds are not finite, is "loose": its shift is 0 and it subtracts its own max after all.
    Everything is row-local: a row's bits never depend on other rows' queries or unseen keys.
    Returns ``(shift, loose)``, both ``(..., L, 1)``, each None where it would be all 0 / False.
    Costs O((L + S) E), not O(L S).
    """
    k_sq = xp.einsum("...sd,...sd->...s", k, k)[..., None]  # squared norms: sqrt only when needed
    L, S = q_scaled.shape[-2], k.shape[-2]
    seen = slice(0, L) if L <= S else xp.minimum(xp.arange(L), S - 1)  # causal row i: keys 0..i
    if is_causal:
        k_max = xp.maximum.accumulate(k_sq, axis=-2)[..., seen, :]
    else:
        k_max = xp.max(k_sq, axis=-2, keepdims=True)
    upper_sq = xp.einsum("...ld,...ld->...l", q_scaled, q_scaled)[..., None] * k_max
    if (upper_sq <= EXP_CEILING**2).all() and SHIFT_SLACK >= EXP_CEILING:
        return None, None  # every |score| <= EXP_CEILING: nothing to shift, nothing loose
    upper = xp.sqrt(upper_sq, out=upper_sq)
    shift = xp.maximum(upper - upper.dtype.type(EXP_CEILING), 0)  # NaN stays NaN: loose below
    lower = -upper
    if not (shift <= 0).all():  # some rows are shifted: find a tighter lower bound for them
        if is_causal:
            diagonal = xp.einsum("...ld,...ld->...l", q_scaled, k[..., seen, :])[..., None]
            seen_score = xp.maximum(diagonal, q_scaled @ xp.swapaxes(k[..., :1, :], -1, -2))
        else:
            seen_score = q_scaled @ (xp.swapaxes(k, -1, -2) @ constant_column(S, k.dtype, 1.0 / S))
        lower = xp.maximum(lower, seen_score)
    loose = ~(lower - shift >= -SHIFT_SLACK)  # True for NaN and inf too
    if loose.any():
        shift = xp.where(loose, 0, shift).astype(shift.dtype, copy=False)
    else:
        loose = None
    return (shift if shift.any() else None), loose


def _subtract_max(s, loose):
    """Subtract the row max from the rows of ``s`` marked by ``loose`` ``(..., L, 1)``."""
    if loose.all():
        s -= xp.max(s, axis=-1, keepdims=True)
    elif loose.any():
        rows = xp.broadcast_to(loose[..., 0], s.shape[:-1])
        picked = s[rows]
        picked -= xp.max(picked, axis=-1, keepdims=True)
        s[rows] = picked


def _scale_rows(o, factor, heads_swapped: bool) -> None:
    """o *= factor, ``factor`` ``(..., H, L, 1)``. ``heads_swapped``: o ``(..., H, L, Ev)`` is laid
    out as ``(..., L, H, Ev)`` in memory; then the product runs over that order (NumPy would
    walk o against factor's order: short strided rows)."""
    if heads_swapped:
        o, factor = xp.swapaxes(o, -2, -3), xp.ascontiguousarray(xp.swapaxes(factor, -2, -3))
    xp.multiply(o, factor, out=o)


def _batch_shape(q, k, v, *masks) -> tuple:
    """The broadcast batch dims (all but the last two) of q, k, v and the masks given."""
    shapes = [a.shape[:-2] for a in (q, k, v, *masks) if a is not None]
    if all(shape == shapes[0] for shape in shapes):
        return shapes[0]
    return xp.broadcast_shapes(*shapes)


def _masked_weights(qs, k, bool_mask, float_mask, hidden, p):
    """P = softmax(q k^T + masks) into ``p``, with the max subtracted (rows may be all -inf:
    the guarded softmax gives them zeros)."""
    return softmax_inplace(_masked_scores(qs, k, bool_mask, float_mask, hidden, out=p))


def _exp_scores(qs, k, hidden, is_causal: bool, p):
    """E = exp(q k^T - shift) into ``p``, each row shifted by ``_score_shift``'s bound (mostly
    0: no pass to find the max), and its row sums."""
    shift, loose = _score_shift(qs, k, is_causal)
    s = _masked_scores(qs, k, None, None, hidden, out=p)
    if shift is not None:
        s -= shift
    if loose is not None:
        _subtract_max(s, loose)
    xp.exp(s, out=s)
    return s, row_sums(s)


def _bounded_weights(qs, k, hidden, is_causal: bool, p):
    """P = E / rowsum(E) into ``p``, for attention without a mask to add (``_exp_scores``)."""
    e, total = _exp_scores(qs, k, hidden, is_causal, p)
    e /= total
    return e


def _unnormalised_output(qs, k, v, hidden, is_causal: bool, p, out, heads_swapped: bool) -> None:
    """out = (E V) / rowsum(E): inference without a mask, dividing the (L, Ev) output by the
    row sums instead of normalising the (L, S) weights. E V <= rowsum(E) max|V|: with large
    sums, values near float32's range could overflow, so that is checked, and P V taken then."""
    e, total = _exp_scores(qs, k, hidden, is_causal, p)
    with xp.errstate(over="ignore", invalid="ignore"):  # checked just below
        xp.matmul(e, v, out=out)
        _scale_rows(out, 1 / total, heads_swapped)
    if not (xp.max(total) <= 1e4 or xp.isfinite(out).all()):
        e /= total
        xp.matmul(e, v, out=out)


def _small_attention(q, k, v, bool_mask, float_mask, is_causal: bool, scale):
    """Attention on little work (a decoding step) in one pass, no chunks, nothing kept."""
    batch = _batch_shape(q, k, v, bool_mask, float_mask)
    L, S = q.shape[-2], k.shape[-2]
    hidden = ~xp.tri(L, S, dtype=bool) if is_causal else None
    s = xp.empty(batch + (L, S), dtype=q.dtype)  # the masks' batch may be the larger
    s = _masked_scores(q * q.dtype.type(scale), k, bool_mask, float_mask, hidden, out=s)
    if bool_mask is not None or float_mask is not None or is_causal or S == 0:
        return softmax_inplace(s) @ v  # rows may be all -inf: the guarded softmax
    # no mask: every row max is finite for finite inputs, so exp(s - max) has a 1 in each row
    s -= xp.maximum.reduce(s, axis=-1, keepdims=True)
    xp.exp(s, out=s)
    out = s @ v
    out /= xp.add.reduce(s, axis=-1, keepdims=True)
    return out


class ScaledDotProductAttention(Function):
    """softmax(q k^T * scale + mask) v over ``(..., L, E)`` inputs, in one kernel; with
    ``need_weights`` a second output, the weights W = P * D (after dropout), in the graph.

    With P the softmax, D the dropout's scaled mask, G = dL/dout and G_W = dL/dW:
    dV = (P*D)^T G, dP = (G V^T + G_W) * D, dS = P * (dP - rowsum(dP * P)), dQ = scale dS K,
    dK = scale dS^T Q. Without G_W, rowsum(dP * P) = rowsum(G * out), an (L, Ev) product
    instead of another pass over (L, S) (flash attention's identity). Rows with every key
    masked give P = 0: zero output, zero gradients. ``bool_mask`` marks with True the (query,
    key) pairs that take part; ``float_mask`` is added.

    Forward and backward run chunk by chunk over one batch axis (``parallel_for``), each chunk
    in one of three regimes: with a mask, the masked softmax (``_masked_weights``); without
    one, exp of bound-shifted scores with no max pass (``_bounded_weights``); and in inference
    without a mask, the output divided by the row sums, never the weights normalised
    (``_unnormalised_output``). Little work runs unchunked (``_small_attention``). The
    dropout mask is drawn whole before, so the draws do not depend on the thread count.
    """

    saves_output = True

    def infer(self, q, k, v, bool_mask=None, float_mask=None, is_causal=False, scale=1.0, **options):
        batch = _batch_shape(q, k, v, bool_mask, float_mask)
        small = q.shape[-2] * k.shape[-2] * math.prod(batch) < MIN_ELEMENTS
        if small and not options.get("need_weights") and not options.get("dropout_p"):
            return _small_attention(q, k, v, bool_mask, float_mask, is_causal, scale)
        return self._attend(q, k, v, bool_mask, float_mask, is_causal, scale, inference=True, **options)

    def forward(self, q, k, v, **options):
        return self._attend(q, k, v, inference=False, **options)

    def _attend(
        self,
        q,
        k,
        v,
        bool_mask=None,
        float_mask=None,
        is_causal=False,
        scale=1.0,
        dropout_p=0.0,
        rng=None,
        need_weights=False,
        inference=False,
    ):
        """Attention chunk by chunk over one batch axis. Keeps P (and the dropout mask) for
        backward, or, where P would outweigh q, k and v (``keeps_weights``), nothing: backward
        recomputes each chunk's P, the same bits. The options are ``infer``'s (and ``forward``'s)."""
        dtype = q.dtype
        self.scale = dtype.type(scale)
        self.batch = batch = _batch_shape(q, k, v, bool_mask, float_mask)
        self.axis = split_axis(batch)
        L, S = q.shape[-2], k.shape[-2]
        self.weights_shape, self.hidden = (L, S), ~xp.tri(L, S, dtype=bool) if is_causal else None
        self.masks, self.is_causal = (bool_mask, float_mask), is_causal
        # inference keeps the plain threshold: one sentence's attention between products on BLAS's
        # own threads (``matmul``'s FEW_ROWS) would pin and release them at every layer
        self.score_work = 1 if inference else SCORE_WORK
        mask_bytes = sum(m.nbytes for m in (bool_mask, float_mask) if m is not None)
        keep = (
            need_weights
            or dropout_p > 0
            or (
                not inference
                and (
                    keeps_weights(L, S, q.shape[-1], v.shape[-1])
                    or mask_bytes >= math.prod(batch) * L * S * dtype.itemsize  # copying the masks costs as much
                )
            )
        )
        self.p = p = xp.empty(batch + (L, S), dtype=dtype) if keep else None
        heads_swapped = len(batch) >= 2
        if heads_swapped:  # (..., H, L, Ev) kept in memory as (..., L, H, Ev): merging the heads
            buffer = xp.empty(batch[:-1] + (L, batch[-1], v.shape[-1]), dtype=dtype)  # after is free
            self.out = out = buffer.swapaxes(-2, -3)
        else:
            self.out = out = xp.empty(batch + (L, v.shape[-1]), dtype=dtype)
        self.dropped = dropout_mask(rng, p.shape, dropout_p, dtype) if dropout_p > 0 else None
        self.pd = xp.empty_like(p) if self.dropped is not None else p  # P * D, what multiplies V
        masked = bool_mask is not None or float_mask is not None or q.size == 0 or k.size == 0
        unnormalised = not masked and inference and not need_weights and not dropout_p

        def step(part, pc):
            if unnormalised:
                qs, kc = q[part(q)] * self.scale, k[part(k)]
                _unnormalised_output(qs, kc, v[part(v)], self.hidden, is_causal, pc, out[part(out)], heads_swapped)
                return
            self._weights(q, k, part, pc)
            if self.dropped is not None:
                xp.multiply(pc, self.dropped[part(p)], out=self.pd[part(p)])
            xp.matmul(pc if self.dropped is None else self.pd[part(p)], v[part(v)], out=out[part(out)])

        self._chunks(step, p, fills=True)
        self.q, self.k, self.v = q, k, v
        if p is not None:  # nothing to recompute: the masks are not needed again
            self.masks = self.hidden = None
        elif mask_bytes and not inference:  # backward recomputes P from the masks as they are now
            self.masks = tuple(None if m is None else m.copy() for m in self.masks)
        return (out, self.pd) if need_weights else out

    def _weights(self, q, k, part, pc):
        """P of one chunk into ``pc``: the masked softmax with a mask, else exp of bound-shifted
        scores (``_bounded_weights``)."""
        qs, kc = q[part(q)] * self.scale, k[part(k)]
        bool_mask, float_mask = self.masks
        if bool_mask is not None or float_mask is not None or q.size == 0 or k.size == 0:
            bm = bool_mask[part(bool_mask)] if bool_mask is not None else None
            fm = float_mask[part(float_mask)] if float_mask is not None else None
            return _masked_weights(qs, kc, bm, fm, self.hidden, pc)
        return _bounded_weights(qs, kc, self.hidden, self.is_causal, pc)

    def _chunks(self, step, p, fills: bool = False) -> None:
        """Call ``step(part, pc)`` on each thread's chunk of the batch (``parallel_for``); ``pc``
        is the chunk's part of the kept ``p``, or a scratch of its shape when P is not kept.
        ``fills`` (forward): a part of ``p`` that is not contiguous (a split over heads) is
        computed in a scratch and copied in, so that P's bits never depend on its layout (row
        sums of contiguous rows run as one GEMV)."""
        batch, axis, (L, S) = self.batch, self.axis, self.weights_shape
        n = batch[axis] if batch else 1

        def chunk(lo, hi):
            part = batch_slicer(batch, axis, lo, hi)
            kept = p[part(p)] if p is not None else None
            if kept is not None and (kept.flags.c_contiguous or not fills):
                step(part, kept)
                return
            shape = (batch[:axis] + (hi - lo,) + batch[axis + 1 :] if batch else ()) + (L, S)
            scratch = xp.empty(shape, dtype=self.scale.dtype)
            step(part, scratch)
            if kept is not None:
                kept[...] = scratch

        parallel_for(n, chunk, math.prod(batch) // max(n, 1) * L * S * self.score_work)

    def backward(self, g, g_weights=None):
        q, k, v, p, pd, out = self.q, self.k, self.v, self.p, self.pd, self.out
        batch, dtype = self.batch, out.dtype
        need_q, need_k, need_v = self.needs_grad[:3]
        dq = xp.empty(batch + q.shape[-2:], dtype=dtype) if need_q else None
        dk = xp.empty(batch + k.shape[-2:], dtype=dtype) if need_k else None
        dv = xp.empty(batch + v.shape[-2:], dtype=dtype) if need_v else None
        if g is None:  # only the weights had a gradient
            g = xp.zeros(out.shape, dtype=dtype)

        def step(part, pc):
            gi = g[part(g)]
            if p is None:  # not kept: recomputed, the forward's bits
                self._weights(q, k, part, pc)
            if need_v:
                xp.matmul(xp.swapaxes(pd[part(pd)] if p is not None else pc, -1, -2), gi, out=dv[part(dv)])
            if not (need_q or need_k):
                return
            ds = gi @ xp.swapaxes(v[part(v)], -1, -2)  # dL/d(P*D), then dL/dP
            if g_weights is not None:
                ds += g_weights[part(g_weights)]
            if self.dropped is not None:
                ds *= self.dropped[part(self.dropped)]
            if g_weights is None:  # rowsum(dP * P) = rowsum(dO * O): an (L, Ev) product
                ds -= xp.sum(gi * out[part(out)], axis=-1, keepdims=True)
            else:
                ds -= xp.sum(ds * pc, axis=-1, keepdims=True)
            ds *= pc
            # dQ = scale dS K, dK = scale dS^T Q: the scale goes on the small (L, E) operands
            if need_q:
                ks = xp.broadcast_to(k[part(k)] * self.scale, ds.shape[:-2] + k.shape[-2:])
                xp.matmul(ds, ks, out=dq[part(dq)])
            if need_k:
                qs = xp.broadcast_to(q[part(q)] * self.scale, ds.shape[:-2] + q.shape[-2:])
                xp.matmul(xp.swapaxes(ds, -1, -2), qs, out=dk[part(dk)])

        self._chunks(step, p)
        return (
            unbroadcast(dq, q.shape) if need_q else None,
            unbroadcast(dk, k.shape) if need_k else None,
            unbroadcast(dv, v.shape) if need_v else None,
        )


def keeps_weights(L: int, S: int, E: int, Ev: int) -> bool:
    """Whether training attention keeps its ``(L, S)`` weights P for backward: where they cost
    no more memory than the q, k and v it keeps anyway (L S <= L E + S (E + Ev) per head).
    Longer contexts recompute P in backward instead, as flash attention does (one more q k^T
    and exp), so that what the step keeps grows with L, not L S; backward then holds one
    thread's chunk of P and of dS at a time. (The kernel also keeps P with dropout, with the
    weights asked for, and where a copy of the masks, which recomputing needs, would cost as
    much as P.)"""
    return L * S <= L * E + S * (E + Ev)


def _block(mask, i0, i1, j0, j1):
    """The (i0:i1, j0:j1) tile of a mask broadcastable to (..., L, S) (size-1 dims stay)."""
    rows = slice(None) if mask.shape[-2] == 1 else slice(i0, i1)
    cols = slice(None) if mask.shape[-1] == 1 else slice(j0, j1)
    return mask[..., rows, cols]


class BlockedAttention(Function):
    """Flash attention's algorithm in NumPy: the same result as ``ScaledDotProductAttention``
    without ever holding the (L, S) score matrix for all heads at once.

    Forward, per query block i and key block j (all batch and head dims together):
    s = q_i k_j^T scale (+ mask); m' = max(m, rowmax s); p = exp(s - m');
    l = l e^(m - m') + rowsum p; acc = acc e^(m - m') + p v_j; finally out = acc / l and the
    log-sum-exp lse = m + log l is kept. Backward recomputes p = exp(s - lse) block by block:
    dV_j += p^T dO_i, dP = dO_i v_j^T, dS = p (dP - rowsum(dO_i * out_i)), dQ_i += scale dS k_j,
    dK_j += scale dS^T q_i. Dropout masks are regenerated in backward from per-block seeds.
    Memory: O((L + S) E + block_q * block_k) per batch-head instead of O(L S).
    """

    saves_output = True

    def forward(
        self,
        q,
        k,
        v,
        bool_mask=None,
        float_mask=None,
        is_causal=False,
        scale=1.0,
        dropout_p=0.0,
        rng=None,
        block_q=256,
        block_k=512,
    ):
        self.batch = batch = _batch_shape(q, k, v, bool_mask, float_mask)
        self.axis = split_axis(batch)
        L, S = q.shape[-2], k.shape[-2]
        self.dtype = dtype = q.dtype
        self.scale = dtype.type(scale)
        self.masks = (bool_mask, float_mask)
        self.is_causal, self.dropout_p = is_causal, dropout_p
        self.block_q, self.block_k = block_q, block_k
        self.seed = int(rng.integers(2**62)) if dropout_p > 0 else None
        out = xp.empty(batch + (L, v.shape[-1]), dtype=dtype)
        lse = xp.empty(batch + (L, 1), dtype=dtype)

        def chunk(lo, hi):  # the query and key block loops for a slice of the batch
            part = batch_slicer(batch, self.axis, lo, hi)
            qc, kc, vc, oc, lc = q[part(q)], k[part(k)], v[part(v)], out[part(out)], lse[part(lse)]
            qc = qc * self.scale  # scale the (L, E) side once, not every (L, S) tile
            cb = oc.shape[:-2]
            for i0 in range(0, L, block_q):
                i1 = min(i0 + block_q, L)
                m = xp.full(cb + (i1 - i0, 1), -xp.inf, dtype=dtype)
                l = xp.zeros(cb + (i1 - i0, 1), dtype=dtype)
                acc = xp.zeros(cb + (i1 - i0, v.shape[-1]), dtype=dtype)
                for j0, j1, s in self._scores(qc[..., i0:i1, :], kc, i0, i1, S, part):
                    m_new = xp.maximum(m, s.max(axis=-1, keepdims=True))
                    safe = xp.where(xp.isfinite(m_new), m_new, 0).astype(dtype, copy=False)
                    s -= safe
                    xp.exp(s, out=s)
                    correction = xp.exp(xp.where(xp.isfinite(m), m - safe, -xp.inf)).astype(dtype, copy=False)
                    l = l * correction + row_sums(s)
                    if dropout_p > 0:
                        s *= self._dropout(i0, i1, j0, j1, part)
                    acc = acc * correction + s @ vc[..., j0:j1, :]
                    m = m_new
                empty = l == 0  # every key masked: zero output, zero gradients (as the plain kernel)
                oc[..., i0:i1, :] = acc / xp.where(empty, 1, l)
                lc[..., i0:i1, :] = xp.where(empty, xp.inf, m + xp.log(xp.where(empty, 1, l)))

        parallel_for(batch[self.axis] if batch else 1, chunk, L * S)
        self.q, self.k, self.v, self.out, self.lse = q, k, v, out, lse
        return out

    def _scores(self, qi, k, i0, i1, S, part):
        """Yield (j0, j1, scaled and masked scores) for each key block that can take part."""
        bool_mask, float_mask = self.masks
        for j0 in range(0, S, self.block_k):
            j1 = min(j0 + self.block_k, S)
            if self.is_causal and j0 > i1 - 1:
                break  # every key in this block is after every query in the query block
            s = qi @ xp.swapaxes(k[..., j0:j1, :], -1, -2)  # qi comes scaled
            if float_mask is not None:
                s = s + _block(float_mask[part(float_mask)], i0, i1, j0, j1)
            if bool_mask is not None:
                tile = _block(bool_mask[part(bool_mask)], i0, i1, j0, j1)
                s = xp.where(tile, s, -xp.inf).astype(s.dtype, copy=False)
            if self.is_causal and j1 - 1 > i0:
                keep = xp.arange(i0, i1)[:, None] >= xp.arange(j0, j1)[None, :]
                s = xp.where(keep, s, -xp.inf).astype(s.dtype, copy=False)
            yield j0, j1, s

    def _dropout(self, i0, i1, j0, j1, part):
        """The scaled keep-mask of tile (i, j), drawn whole from the tile's seed (the same in
        backward and for any split of the batch), then cut to this chunk's part."""
        tile = self.batch + (i1 - i0, j1 - j0)
        # a host generator only seeds the tile's mask (dropout_mask draws one integer from it)
        mask = dropout_mask(np.random.default_rng([self.seed, i0, j0]), tile, self.dropout_p, self.dtype)
        return mask[part(mask)]

    def backward(self, g):
        q, k, v, out, lse, batch = self.q, self.k, self.v, self.out, self.lse, self.batch
        L, S = q.shape[-2], k.shape[-2]
        dq = xp.zeros(batch + q.shape[-2:], dtype=q.dtype)
        dk = xp.zeros(batch + k.shape[-2:], dtype=k.dtype)
        dv = xp.zeros(batch + v.shape[-2:], dtype=v.dtype)

        def chunk(lo, hi):
            part = batch_slicer(batch, self.axis, lo, hi)
            qc, kc, vc, gc = q[part(q)] * self.scale, k[part(k)], v[part(v)], g[part(g)]
            kc_scaled = kc * self.scale  # dQ = scale dS K and dK = scale dS^T Q: scale the (S, E) sides
            dqc, dkc, dvc, lc = dq[part(dq)], dk[part(dk)], dv[part(dv)], lse[part(lse)]
            delta = xp.sum(gc * out[part(out)], axis=-1, keepdims=True)  # rowsum(dO * O) = rowsum(dP * P)
            for i0 in range(0, L, self.block_q):
                i1 = min(i0 + self.block_q, L)
                qi, gi = qc[..., i0:i1, :], gc[..., i0:i1, :]
                for j0, j1, s in self._scores(qi, kc, i0, i1, S, part):
                    s -= lc[..., i0:i1, :]
                    p = xp.exp(s, out=s)  # softmax probabilities of this tile
                    dp = gi @ xp.swapaxes(vc[..., j0:j1, :], -1, -2)
                    if self.dropout_p > 0:
                        drop = self._dropout(i0, i1, j0, j1, part)
                        dvc[..., j0:j1, :] += xp.swapaxes(p * drop, -1, -2) @ gi
                        dp *= drop
                    else:
                        dvc[..., j0:j1, :] += xp.swapaxes(p, -1, -2) @ gi
                    dp -= delta[..., i0:i1, :]
                    dp *= p
                    dqc[..., i0:i1, :] += dp @ kc_scaled[..., j0:j1, :]
                    dkc[..., j0:j1, :] += xp.swapaxes(dp, -1, -2) @ qi  # qi comes scaled

        parallel_for(batch[self.axis] if batch else 1, chunk, L * S)
        return (
            unbroadcast(dq, q.shape) if self.needs_grad[0] else None,
            unbroadcast(dk, k.shape) if self.needs_grad[1] else None,
            unbroadcast(dv, v.shape) if self.needs_grad[2] else None,
        )
