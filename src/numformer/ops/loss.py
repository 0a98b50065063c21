"""Losses as single primitives, PyTorch's semantics, each with its hand-derived backward.

- ``CrossEntropy`` (from logits) and ``NLLLoss`` (from log-probabilities): class targets;
- elementwise losses on a ``_ElementwiseLoss`` base that owns the reduction and the optional
  elementwise weight: ``MSELoss``, ``L1Loss``, ``SmoothL1Loss``, ``HuberLoss``,
  ``BinaryCrossEntropy``, ``BinaryCrossEntropyWithLogits`` and ``KLDiv``. Each computes its
  loss and its two partial derivatives in one pass over the inputs; backward scales them.
"""

from __future__ import annotations

from numformer.autograd import Function, unbroadcast
from numformer.backend import xp
from numformer.ops._threads import parallel_for


class CrossEntropy(Function):
    """Cross-entropy from logits, PyTorch's ``F.cross_entropy`` semantics.

    ``logits`` is ``(N, C, d1, ...)`` (class axis 1) or ``(C,)``; ``target`` holds class
    indices (shape without C) or probabilities (shape of ``logits``). With p = softmax(z),
    per row: nll = -w[t] log p[t], smooth = -(1/C) sum_c w_c log p_c,
    loss = (1 - eps) nll + eps smooth, and dloss/dz_j = (1 - eps) w[t] (p_j - [j = t])
    + (eps / C) (p_j sum_c w_c - w_j). Mean reduction divides by sum of w[t] over kept rows.
    A batch whose targets are all ``ignore_index`` gives loss 0 (PyTorch gives NaN).
    """

    saves_inputs = False

    def forward(self, logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        dtype = logits.dtype
        self.logits_shape = logits.shape
        num_classes = logits.shape[1] if logits.ndim > 1 else logits.shape[0]
        z = xp.moveaxis(logits, 1, -1) if logits.ndim > 2 else logits
        self.moved_shape = z.shape
        z = z.reshape(-1, num_classes)
        eps = label_smoothing
        self.eps, self.num_classes, self.reduction, self.weight = eps, num_classes, reduction, weight
        self.soft = xp.issubdtype(target.dtype, xp.floating)
        if self.soft:
            t = xp.moveaxis(target, 1, -1) if target.ndim > 2 else target
            t = t.reshape(-1, num_classes).astype(dtype, copy=False)
            if eps > 0:
                t = t * (1 - eps) + eps / num_classes
            self.wt = wt = t * weight if weight is not None else t
            # -sum_c wt_c log p_c = log(sum e) sum_c wt_c - sum_c wt_c (z_c - max z)
            weighted = lambda shifted, lo, hi: xp.sum(wt[lo:hi] * shifted, axis=1)  # noqa: E731
            self.probs, shifted_sum, log_sum = _softmax_rows(z, weighted)
            per_row = log_sum * xp.sum(wt, axis=1) - shifted_sum
            denominator = per_row.shape[0]
        else:
            flat = target.reshape(-1)
            valid = flat != ignore_index
            safe = xp.where(valid, flat, 0)
            self.safe = safe
            w_t = weight[safe] if weight is not None else xp.ones(flat.shape, dtype=dtype)
            self.valid = valid.astype(dtype)
            self.row_coef = w_t * self.valid

            def at_target(shifted, lo, hi):  # z_t - max z per row, and for smoothing sum_c w_c (z_c - max z)
                picked = shifted[xp.arange(hi - lo), safe[lo:hi]]
                if eps == 0:
                    return picked
                # row by row (not a GEMV, whose sums BLAS orders by how many rows a chunk has)
                return picked, xp.sum(shifted * weight if weight is not None else shifted, axis=1)

            self.probs, gathered, log_sum = _softmax_rows(z, at_target)
            picked, spread = gathered if eps > 0 else (gathered, None)
            per_row = (log_sum - picked) * self.row_coef * (1 - eps)  # -log p_t
            if eps > 0:  # -sum_c w_c log p_c
                total_w = weight.sum() if weight is not None else num_classes
                per_row = per_row + (log_sum * total_w - spread) * self.valid * (eps / num_classes)
            per_row = xp.where(valid, per_row, 0)  # an ignored row is 0 even where its logits are not finite
            denominator = self.row_coef.sum()
        self.denominator = denominator
        if reduction == "none":
            self.out_shape = target.shape if not self.soft else self.moved_shape[:-1]
            return per_row.reshape(self.out_shape).astype(dtype, copy=False)
        total = per_row.sum(dtype=dtype)
        if reduction == "sum":
            return xp.asarray(total, dtype=dtype)
        return xp.asarray(total / denominator if denominator != 0 else 0.0, dtype=dtype)

    def backward(self, g):
        p, C, eps = self.probs, self.num_classes, self.eps
        if self.reduction == "none":
            coef = g.reshape(-1)
        elif self.reduction == "sum":
            coef = xp.full(p.shape[0], g, dtype=p.dtype)
        else:
            scale = g / self.denominator if self.denominator != 0 else g * 0
            coef = xp.full(p.shape[0], scale, dtype=p.dtype)
        if self.soft:
            # dL/dz_j = p_j sum_c wt_c - wt_j for each row
            dz = p * xp.sum(self.wt, axis=1, keepdims=True) - self.wt
            dz *= coef[:, None]
        else:
            rows = xp.arange(p.shape[0])
            scale = self.row_coef * coef * (1 - eps)
            dz = p * scale[:, None]
            dz[rows, self.safe] -= scale
            if eps > 0:
                keep = self.valid * coef
                if self.weight is not None:
                    smooth = p * self.weight.sum() - self.weight
                else:
                    smooth = p * C - 1
                dz += smooth * ((eps / C) * keep)[:, None]
        dz = dz.astype(p.dtype, copy=False)
        if dz.shape != self.moved_shape:  # a reshaped view would make the engine copy it for .grad
            dz = dz.reshape(self.moved_shape)
        if len(self.logits_shape) > 2:
            dz = xp.moveaxis(dz, -1, 1)
        return dz, None


def _softmax_rows(z, before_exp):
    """``(probs, read, log_sum)``: the softmax of the rows of ``z`` ``(M, C)``, rows split over the threads, in
    three passes (shift by the row max, exp in place, divide by the row sum) where log-softmax
    and then its exp took five. ``before_exp(shifted, lo, hi)`` reads rows ``lo:hi`` of
    ``z - max z`` before the exp overwrites them (the target's entry, weighted sums): its results
    (an array, or a tuple of arrays) per row come back concatenated (``read``), with ``log_sum``,
    ``log(sum exp(z - max z))`` per row: log p = shifted - log_sum."""
    M = z.shape[0]
    probs = xp.empty(z.shape, dtype=z.dtype)
    log_sum = xp.empty(M, dtype=z.dtype)
    parts = {}

    def rows(lo, hi):
        shifted = probs[lo:hi]
        xp.subtract(z[lo:hi], xp.max(z[lo:hi], axis=1, keepdims=True), out=shifted)
        parts[lo] = before_exp(shifted, lo, hi)
        xp.exp(shifted, out=shifted)
        total = xp.sum(shifted, axis=1, keepdims=True)
        shifted /= total
        xp.log(total[:, 0], out=log_sum[lo:hi])

    parallel_for(M, rows, z.shape[1])
    pieces = [parts[lo] for lo in sorted(parts)]
    if isinstance(pieces[0], tuple):
        return probs, tuple(xp.concatenate(column) for column in zip(*pieces)), log_sum
    return probs, xp.concatenate(pieces), log_sum


def _class_rows(x):
    """``x`` ``(N, C, d1, ...)`` or ``(C,)`` as rows ``(M, C)`` (class axis last), and the shape
    those rows fold back into (``_unrows``)."""
    num_classes = x.shape[1] if x.ndim > 1 else x.shape[0]
    moved = xp.moveaxis(x, 1, -1) if x.ndim > 2 else x
    return moved.reshape(-1, num_classes), moved.shape


def _unrows(rows, moved_shape, ndim: int):
    """The inverse of ``_class_rows``: rows ``(M, C)`` back to ``(N, C, d1, ...)``."""
    out = rows.reshape(moved_shape)
    return xp.moveaxis(out, -1, 1) if ndim > 2 else out


class NLLLoss(Function):
    """Negative log-likelihood of class targets, PyTorch's ``F.nll_loss``.

    ``input`` holds log-probabilities ``(N, C, d1, ...)`` or ``(C,)``; option ``target`` the class
    indices (input's shape without C), ``weight`` ``(C,)`` or None, ``ignore_index``,
    ``reduction``. Per position: loss = -w[t] x[t] (0 where t = ignore_index); "mean" divides
    the sum by sum of w[t] over the kept positions (0 when none is kept: PyTorch gives NaN).
    Backward: dloss/dx[j] = -w[t] [j = t] times the upstream gradient (over the denominator).
    """

    saves_inputs = False

    def forward(self, x, target, weight=None, ignore_index=-100, reduction="mean"):
        rows, self.moved_shape = _class_rows(x)
        self.ndim, self.reduction, self.dtype = x.ndim, reduction, x.dtype
        flat = target.reshape(-1)
        valid = flat != ignore_index
        self.safe = xp.where(valid, flat, 0)
        w_t = weight[self.safe] if weight is not None else xp.ones(flat.shape, dtype=x.dtype)
        self.row_coef = (w_t * valid).astype(x.dtype, copy=False)  # w[t], 0 where ignored
        per_row = -rows[xp.arange(rows.shape[0]), self.safe] * self.row_coef
        self.denominator = float(self.row_coef.sum())
        if reduction == "none":
            return per_row.reshape(target.shape)
        total = per_row.sum(dtype=x.dtype)
        if reduction == "mean":
            total = total / self.denominator if self.denominator != 0 else total * 0
        return xp.asarray(total, dtype=x.dtype)

    def backward(self, g):
        if self.reduction == "none":
            coef = self.row_coef * g.reshape(-1)
        elif self.reduction == "sum":
            coef = self.row_coef * g
        else:
            coef = self.row_coef * g / self.denominator if self.denominator != 0 else self.row_coef * 0
        M, C = self.row_coef.shape[0], self.moved_shape[-1]
        rows = xp.zeros((M, C), dtype=self.dtype)
        rows[xp.arange(M), self.safe] = -coef
        return (_unrows(rows, self.moved_shape, self.ndim),)


class _ElementwiseLoss(Function):
    """The shared frame of the elementwise losses: ``terms(a, b)`` gives the loss of every
    element and its partial derivatives (a and b broadcast together); this class weights,
    reduces and, in backward, scales the saved derivatives by the upstream gradient:
    d(sum)/da = da, d(mean)/da = da / n, d(none)/da = g da, summed back to each input's shape.

    Options: ``reduction`` ("none", "sum", "mean", or "batchmean": the sum over a's first dim),
    ``weight`` (an array broadcast over the loss elements: a fixed factor, no gradient) and
    ``weighted_mean`` ("mean" divides by the weights' sum instead of the element count). A
    subclass with ``of_difference`` computes its loss from a - b alone, so db = -da.
    """

    saves_inputs = False
    of_difference = False

    def terms(self, a, b, **options):
        """(loss, dloss/da or None, dloss/db or None): each derivative only where needed."""
        raise NotImplementedError

    def forward(self, a, b, reduction="mean", weight=None, weighted_mean=False, **options):
        loss, da, db = self.terms(a, b, **options)
        if weight is not None:
            loss = loss * weight
            da = None if da is None else da * weight
            db = None if db is None else db * weight
        self.da, self.db, self.reduction = da, db, reduction
        self.shapes = (a.shape, b.shape)
        if reduction == "batchmean":
            count = a.shape[0] if a.ndim else 1
        elif weighted_mean and weight is not None:
            count = float(xp.broadcast_to(weight, loss.shape).sum())
        else:
            count = loss.size
        self.count = count
        if reduction == "none":
            return loss.astype(a.dtype, copy=False)
        total = loss.sum(dtype=a.dtype)
        if reduction != "sum":
            with xp.errstate(invalid="ignore", divide="ignore"):  # the mean of nothing is NaN, as PyTorch's
                total = total / count
        return xp.asarray(total, dtype=a.dtype)

    def backward(self, g):
        sa, sb = self.shapes
        ga = gb = None
        if self.needs_grad[0]:
            ga = unbroadcast(self._scaled(self.da, g), sa)
        if self.needs_grad[1]:
            gb = unbroadcast(-self._scaled(self.da, g) if self.of_difference else self._scaled(self.db, g), sb)
        return ga, gb

    def _scaled(self, d, g):
        """The derivative ``d`` times the upstream gradient, over the count for a mean."""
        out = (d * g).astype(g.dtype, copy=False)
        if self.reduction in ("mean", "batchmean"):
            with xp.errstate(invalid="ignore", divide="ignore"):
                out = out / self.count
        return out

    def _derivatives(self, da):
        """(da, db) for a loss of a - b, each only where needed (``of_difference``)."""
        return (da if any(self.needs_grad) else None), None


class MSELoss(_ElementwiseLoss):
    """(a - b)^2 per element; d/da = 2 (a - b), d/db = -d/da."""

    of_difference = True

    def terms(self, a, b):
        d = a - b
        return d * d, *self._derivatives(2 * d)


class L1Loss(_ElementwiseLoss):
    """|a - b| per element; d/da = sign(a - b) (0 at a = b, as PyTorch's), d/db = -d/da."""

    of_difference = True

    def terms(self, a, b):
        d = a - b
        return xp.abs(d), *self._derivatives(xp.sign(d))


class SmoothL1Loss(_ElementwiseLoss):
    """d = a - b: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (Girshick, 2015, Fast
    R-CNN); d/da = d / beta inside, sign(d) outside; beta = 0 is the L1 loss."""

    of_difference = True

    def terms(self, a, b, beta=1.0):
        d = a - b
        size = xp.abs(d)
        if beta == 0:
            return size, *self._derivatives(xp.sign(d))
        inside = size < beta
        loss = xp.where(inside, (0.5 / beta) * d * d, size - 0.5 * beta)
        return loss, *self._derivatives(xp.where(inside, d * (1 / beta), xp.sign(d)))


class HuberLoss(_ElementwiseLoss):
    """d = a - b: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (Huber, 1964);
    d/da = d inside, delta sign(d) outside."""

    of_difference = True

    def terms(self, a, b, delta=1.0):
        d = a - b
        size = xp.abs(d)
        inside = size < delta
        loss = xp.where(inside, 0.5 * d * d, delta * (size - 0.5 * delta))
        return loss, *self._derivatives(xp.where(inside, d, delta * xp.sign(d)))


class BinaryCrossEntropy(_ElementwiseLoss):
    """Binary cross-entropy of probabilities ``p`` against targets ``t``, PyTorch's
    ``F.binary_cross_entropy``: -(t log p + (1 - t) log(1 - p)), each log clamped to >= -100 so
    p = 0 or 1 gives a finite loss.

    d/dp = (p - t) / max(p (1 - p), 1e-12) (PyTorch's guard of the division);
    d/dt = log(1 - p) - log(p), the clamped logs (PyTorch's is +-inf at p = 0 or 1).
    """

    def terms(self, p, t):
        with xp.errstate(divide="ignore"):
            log_p = xp.maximum(xp.log(p), -100)
            log_q = xp.maximum(xp.log1p(-p), -100)
        loss = -(t * log_p + (1 - t) * log_q)
        dp = (p - t) / xp.maximum(p * (1 - p), 1e-12) if self.needs_grad[0] else None
        dt = (log_q - log_p) if self.needs_grad[1] else None
        return loss, dp, dt


class BinaryCrossEntropyWithLogits(_ElementwiseLoss):
    """Binary cross-entropy of logits ``z`` against targets ``t``, with an optional
    ``pos_weight`` w+ broadcast over the classes (last) dim, PyTorch's
    ``F.binary_cross_entropy_with_logits``.

    With s = softplus(-z) = -log sigmoid(z) = log(1 + exp(-|z|)) + max(-z, 0) (stable for any
    z) and l = 1 + (w+ - 1) t: loss = (1 - t) z + l s. Then d/dz = (1 - t) - l sigmoid(-z)
    (= sigmoid(z) - t without w+) and d/dt = -z + (w+ - 1) s.
    """

    def terms(self, z, t, pos_weight=None):
        e = xp.exp(-xp.abs(z))  # in (0, 1]: no overflow whatever z
        softplus_neg = xp.log1p(e) + xp.maximum(-z, 0)
        sigmoid_neg = xp.where(z >= 0, e, 1) / (1 + e)  # sigmoid(-z)
        if pos_weight is None:
            loss = (1 - t) * z + softplus_neg
            dz = (1 - t) - sigmoid_neg if self.needs_grad[0] else None
            dt = -z if self.needs_grad[1] else None
        else:
            scale = 1 + (pos_weight - 1) * t
            loss = (1 - t) * z + scale * softplus_neg
            dz = (1 - t) - scale * sigmoid_neg if self.needs_grad[0] else None
            dt = (pos_weight - 1) * softplus_neg - z if self.needs_grad[1] else None
        return loss, dz, dt


class KLDiv(_ElementwiseLoss):
    """Kullback-Leibler divergence, PyTorch's ``F.kl_div``: ``x`` holds log-probabilities, ``t``
    probabilities (or log-probabilities with ``log_target``).

    t (log t - x), 0 where t = 0: d/dx = -t, d/dt = log t + 1 - x (NaN at t = 0, as PyTorch's).
    log_target: exp(t) (t - x): d/dx = -exp(t), d/dt = exp(t) (t - x + 1).
    """

    def terms(self, x, t, log_target=False):
        if log_target:
            p = xp.exp(t)
            loss = p * (t - x)
            dt = p * (t - x + 1) if self.needs_grad[1] else None
        else:
            p = t
            with xp.errstate(divide="ignore", invalid="ignore"):
                log_t = xp.log(t)  # NaN where t < 0, as PyTorch's
                loss = xp.where(t == 0, 0, t * log_t) - t * x  # 0 log 0 = 0
                dt = xp.where(t == 0, xp.nan, log_t + 1 - x) if self.needs_grad[1] else None
        dx = -xp.broadcast_to(p, loss.shape) if self.needs_grad[0] else None
        return loss, dx, dt
