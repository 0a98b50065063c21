"""Gradient utilities (clipping by global norm and by value) and ``skip_init``, PyTorch's semantics."""

from __future__ import annotations

import math

import numpy as np

from numformer.backend import xp
from numformer.tensor import Tensor


def _grads(parameters) -> list[np.ndarray]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad.array for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    Returns the norm before clipping. The scale is max_norm / (norm + 1e-6), applied only when
    below 1 (PyTorch's rule), so the clipped norm equals ``max_norm`` to about 1e-6 relative.
    Unlike PyTorch, a gradient whose norm overflows its dtype (finite float32 elements of 1e20)
    has its norm taken again in float64, so the total is right and the gradients are scaled,
    not zeroed (Pascanu et al., 2013, "On the difficulty of training recurrent neural networks").

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is clipped in place.
        max_norm: the largest joint norm allowed (> 0).
        norm_type: the norm's order: a number, or ``"inf"`` for the largest magnitude.
        error_if_nonfinite: raise if the joint norm is NaN or infinite (else the gradients are
            scaled by a non-finite factor, as PyTorch's).

    Returns:
        The joint norm before clipping, a 0-d tensor.

    Raises:
        ValueError: ``max_norm`` not positive, or an unknown ``norm_type``.
        RuntimeError: a non-finite norm with ``error_if_nonfinite``.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be > 0, got {max_norm}")
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(f"clip_grad_norm_: norm_type must be a number or 'inf', got {norm_type!r}") from None
    grads = _grads(parameters)
    if not grads:
        return Tensor(xp.array(0.0, dtype=np.float32))
    dtype = grads[0].dtype
    # As PyTorch: each gradient's norm in its own dtype, then the norm of those norms (for the
    # 2-norm that is one BLAS dot per gradient, with no float64 copy of every gradient).
    norms = xp.array([_norm(g.reshape(-1), norm_type) for g in grads], dtype=np.float64)
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


def _norm(g, norm_type: float) -> float:
    """``g``'s norm in its dtype, or in float64 where that overflows but ``g`` is finite."""
    if not g.size:
        return 0.0
    with xp.errstate(over="ignore"):  # an overflow is caught just below
        n = float(xp.linalg.norm(g, ord=norm_type))
    if not math.isfinite(n) and bool(xp.isfinite(g).all()):
        n = float(xp.linalg.norm(g.astype(np.float64), ord=norm_type))
    return n


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place.

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is clamped.
        clip_value: the largest magnitude allowed (> 0).

    Raises:
        ValueError: ``clip_value`` not positive."""
    if not clip_value > 0:
        raise ValueError(f"clip_grad_value_: clip_value must be > 0, got {clip_value}")
    for g in _grads(parameters):
        xp.clip(g, -clip_value, clip_value, out=g)


def skip_init(module_cls, *args, **kwargs):
    """``module_cls(*args, **kwargs)`` without initialising its parameters (PyTorch's
    ``torch.nn.utils.skip_init``): every ``numformer.nn.init`` call inside the constructor leaves
    its tensor as allocated (zeros). For models whose weights are loaded next: no random draws,
    and no memory touched before the weights arrive (fresh zero pages cost nothing until written).

    Args:
        module_cls: the module class to build.
        *args: its constructor's positional arguments.
        **kwargs: its constructor's keyword arguments.

    Returns:
        The module, its parameters zero (or whatever a constructor set without ``nn.init``)."""
    from numformer.nn import init

    before = init.SKIPPING[0]
    init.SKIPPING[0] = True
    try:
        return module_cls(*args, **kwargs)
    finally:
        init.SKIPPING[0] = before
