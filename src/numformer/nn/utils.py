"""Gradient utilities (the joint norm, clipping by it and by value) and ``skip_init``, PyTorch's
semantics."""

from __future__ import annotations

import math

import numpy as np

from numformer.backend import xp
from numformer.tensor import Tensor


def _grads(parameters) -> list[np.ndarray]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad.array for p in parameters if p.grad is not None]


def clip_grad_norm_(
    parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None
) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``:
    ``get_total_norm`` of the gradients, then ``clip_grads_with_norm_``.

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
        foreach: accepted for PyTorch's programs (its choice of kernel); the result is the same.

    Returns:
        The joint norm before clipping, a 0-d tensor.

    Raises:
        ValueError: ``max_norm`` not positive, or an unknown ``norm_type``.
        RuntimeError: a non-finite norm with ``error_if_nonfinite``.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be > 0, got {max_norm}")
    grads = _grads(parameters)
    total = _total_norm("clip_grad_norm_", grads, norm_type, error_if_nonfinite)
    _scale(grads, max_norm, total.item())
    return total


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """The joint ``norm_type``-norm of ``tensors`` (each one's norm, then the norm of those), as
    PyTorch's ``torch.nn.utils.get_total_norm``; a norm that overflows a tensor's dtype while its
    elements are finite is taken again in float64.

    Args:
        tensors: a tensor or an iterable of tensors (typically the gradients).
        norm_type: the norm's order: a number, or ``"inf"`` for the largest magnitude.
        error_if_nonfinite: raise if the joint norm is NaN or infinite.
        foreach: accepted for PyTorch's programs; the result is the same.

    Shape: tensors of any shapes -> a 0-d tensor.

    Returns:
        A 0-d tensor in the first tensor's dtype (float32 zero for no tensors).

    Raises:
        ValueError: an unknown ``norm_type``. RuntimeError: a non-finite norm with
        ``error_if_nonfinite``."""
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    arrays = [t.array if isinstance(t, Tensor) else xp.asarray(t) for t in tensors]
    return _total_norm("get_total_norm", arrays, norm_type, error_if_nonfinite)


def clip_grads_with_norm_(parameters, max_norm: float, total_norm, foreach=None) -> None:
    """Scale the gradients of ``parameters`` by max_norm / (total_norm + 1e-6) where that is
    below 1 (PyTorch's ``torch.nn.utils.clip_grads_with_norm_``; ``total_norm`` usually from
    ``get_total_norm``).

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is scaled in place.
        max_norm: the largest joint norm allowed (> 0).
        total_norm: the gradients' joint norm (a number or a 0-d tensor).
        foreach: accepted for PyTorch's programs; the result is the same.

    Raises:
        ValueError: ``max_norm`` not positive."""
    if not max_norm > 0:
        raise ValueError(f"clip_grads_with_norm_: max_norm must be > 0, got {max_norm}")
    total = total_norm.item() if isinstance(total_norm, Tensor) else float(total_norm)
    _scale(_grads(parameters), max_norm, total)


def _total_norm(name: str, arrays: list, norm_type, error_if_nonfinite: bool) -> Tensor:
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: norm_type must be a number or 'inf', got {norm_type!r}") from None
    if not arrays:
        return Tensor(xp.array(0.0, dtype=np.float32))
    # As PyTorch: each array's norm in its own dtype, then the norm of those norms (for the
    # 2-norm that is one BLAS dot per array, with no float64 copy of every gradient).
    norms = xp.array([_norm(g.reshape(-1), norm_type) for g in arrays], dtype=np.float64)
    total = float(xp.linalg.norm(norms, ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"{name}: the total norm of order {norm_type} is {total}; set error_if_nonfinite=False to clip anyway"
        )
    return Tensor(xp.array(total, dtype=xp.result_type(*arrays)))  # promoted, as PyTorch's


def _scale(grads: list, max_norm: float, total: float) -> None:
    """grads *= min(max_norm / (total + 1e-6), 1): PyTorch's clamp, so a NaN norm makes every
    gradient NaN (nothing is left unscaled)."""
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or math.isnan(coef):
        for g in grads:
            g *= g.dtype.type(coef)


def _norm(g, norm_type: float) -> float:
    """``g``'s norm in its dtype, or in float64 where that overflows but ``g`` is finite."""
    if not g.size:
        return 0.0
    with xp.errstate(over="ignore"):  # an overflow is caught just below
        n = float(xp.linalg.norm(g, ord=norm_type))
    if not math.isfinite(n) and bool(xp.isfinite(g).all()):
        n = float(xp.linalg.norm(g.astype(np.float64), ord=norm_type))
    return n


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place.

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is clamped.
        clip_value: the largest magnitude allowed (> 0).
        foreach: accepted for PyTorch's programs; the result is the same.

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
