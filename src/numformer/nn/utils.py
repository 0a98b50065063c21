"""Gradient utilities: clipping by global norm and by value, PyTorch's semantics."""

from __future__ import annotations

import math

import numpy as np

from numformer.backend import xp
from numformer.tensor import Tensor


def _grads(parameters) -> list[np.ndarray]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    Returns the norm before clipping. The scale is max_norm / (norm + 1e-6), applied only when
    below 1 (PyTorch's rule), so the clipped norm equals ``max_norm`` to about 1e-6 relative.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be > 0, got {max_norm}")
    grads = _grads(parameters)
    if not grads:
        return Tensor(xp.array(0.0, dtype=np.float32))
    dtype = grads[0].dtype
    # As PyTorch: each gradient's norm in its own dtype, then the norm of those norms (for the
    # 2-norm that is one BLAS dot per gradient, with no float64 copy of every gradient).
    norms = xp.array([xp.linalg.norm(g.reshape(-1), ord=norm_type) if g.size else 0.0 for g in grads])
    total = float(xp.linalg.norm(norms, ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} is {total}; "
            f"set error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor(xp.array(total, dtype=dtype))


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place."""
    if not clip_value > 0:
        raise ValueError(f"clip_grad_value_: clip_value must be > 0, got {clip_value}")
    for g in _grads(parameters):
        xp.clip(g, -clip_value, clip_value, out=g)
