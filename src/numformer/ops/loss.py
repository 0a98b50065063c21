"""Losses as single primitives: cross-entropy from logits (PyTorch's semantics) and MSE."""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp


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
        shifted = z - xp.max(z, axis=1, keepdims=True)
        logp = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        self.probs = xp.exp(logp)
        eps = label_smoothing
        self.eps, self.num_classes, self.reduction, self.weight = eps, num_classes, reduction, weight
        self.soft = xp.issubdtype(target.dtype, xp.floating)
        if self.soft:
            t = xp.moveaxis(target, 1, -1) if target.ndim > 2 else target
            t = t.reshape(-1, num_classes).astype(dtype, copy=False)
            if eps > 0:
                t = t * (1 - eps) + eps / num_classes
            wt = t * weight if weight is not None else t
            self.wt = wt
            per_row = -xp.sum(wt * logp, axis=1)
            denominator = per_row.shape[0]
        else:
            flat = target.reshape(-1)
            valid = flat != ignore_index
            safe = xp.where(valid, flat, 0)
            self.safe = safe
            rows = xp.arange(flat.shape[0])
            w_t = weight[safe] if weight is not None else xp.ones(flat.shape, dtype=dtype)
            self.valid = valid.astype(dtype)
            self.row_coef = w_t * self.valid
            per_row = -logp[rows, safe] * self.row_coef * (1 - eps)
            if eps > 0:
                smooth = -(logp @ weight if weight is not None else xp.sum(logp, axis=1))
                per_row = per_row + smooth * self.valid * (eps / num_classes)
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
            dz = p * (1 - eps)
            dz[rows, self.safe] -= 1 - eps
            dz *= (self.row_coef * coef)[:, None]
            if eps > 0:
                keep = self.valid * coef
                if self.weight is not None:
                    smooth = p * self.weight.sum() - self.weight
                else:
                    smooth = p * C - 1
                dz += smooth * ((eps / C) * keep)[:, None]
        dz = dz.astype(p.dtype, copy=False).reshape(self.moved_shape)
        if len(self.logits_shape) > 2:
            dz = xp.moveaxis(dz, -1, 1)
        return dz, None


class MSELoss(Function):
    """mean/sum/none of (a - b)^2; d/da = 2 (a - b) g / n, d/db = -d/da."""

    saves_inputs = False

    def forward(self, a, b, reduction="mean"):
        self.diff, self.reduction = a - b, reduction
        sq = self.diff * self.diff
        if reduction == "none":
            return sq
        return xp.asarray(sq.sum() if reduction == "sum" else sq.mean(), dtype=a.dtype)

    def backward(self, g):
        scale = 2.0 / self.diff.size if self.reduction == "mean" else 2.0
        ga = (g * scale) * self.diff if self.reduction != "none" else 2 * g * self.diff
        ga = ga.astype(self.diff.dtype, copy=False)
        return (ga if self.needs_grad[0] else None), (-ga if self.needs_grad[1] else None)
