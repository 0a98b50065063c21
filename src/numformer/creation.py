"""Tensor constructors, named as PyTorch's. Floating results use the default dtype; ``device``
("cpu", "cuda") says where the tensor lives (default: where numformer computes, the CPU until
a model or tensor has moved to a GPU; numformer computes on one device at a time). Random draws
come from numformer's generator on the host, so ``manual_seed`` gives the same values on every
device."""

from __future__ import annotations

import numpy as np

from numformer import backend
from numformer.backend import xp
from numformer.tensor import Tensor, shape_arg


def _dtype(dtype):
    return backend.get_default_dtype() if dtype is None else backend.as_dtype(dtype)


def _placed(t: Tensor, device) -> Tensor:
    return t if device is None else t.to(device)


def tensor(data, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A new tensor from ``data`` (copied). Python floats become the default dtype. An array of
    another device stays on its device (copied there); other data goes where xp computes."""
    data = data.array if isinstance(data, Tensor) else data
    if not isinstance(data, (xp.ndarray, np.ndarray)) and hasattr(data, "shape") and hasattr(data, "get"):
        t = Tensor._wrap_on(data.astype(backend.as_dtype(dtype)) if dtype is not None else data.copy(), False)
        t.requires_grad = requires_grad
        return _placed(t, device)
    t = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    if t.array is data:
        t.array = t.array.copy()
    return _placed(t, device)


def zeros(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return _placed(Tensor(xp.zeros(shape_arg(size), dtype=_dtype(dtype)), requires_grad=requires_grad), device)


def ones(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return _placed(Tensor(xp.ones(shape_arg(size), dtype=_dtype(dtype)), requires_grad=requires_grad), device)


def zeros_like(t: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=device or t.device)


def ones_like(t: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=device or t.device)


def randn(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Standard normal draws from numformer's generator (reproducible with ``manual_seed``)."""
    data = backend.generator().standard_normal(shape_arg(size), dtype=_dtype(dtype))
    return _placed(Tensor(data, requires_grad=requires_grad), device)


def rand(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Uniform draws on [0, 1) from numformer's generator."""
    data = backend.generator().random(shape_arg(size), dtype=_dtype(dtype))
    return _placed(Tensor(data, requires_grad=requires_grad), device)


def arange(start, end=None, step=1, dtype=None, device=None) -> Tensor:
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, int) for v in (start, end, step))
    dt = backend.as_dtype(dtype) if dtype is not None else (xp.int64 if ints else _dtype(None))
    return _placed(Tensor(xp.arange(start, end, step, dtype=dt)), device)
