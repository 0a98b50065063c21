"""Tensor constructors, named as PyTorch's. Floating results use the default dtype."""

from __future__ import annotations

from numformer import backend
from numformer.backend import xp
from numformer.tensor import Tensor, shape_arg


def _dtype(dtype):
    return backend.get_default_dtype() if dtype is None else backend.as_dtype(dtype)


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    """A new tensor from ``data`` (copied). Python floats become the default dtype."""
    data = data.data if isinstance(data, Tensor) else data
    t = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    if t.data is data:
        t.data = t.data.copy()
    return t


def zeros(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    return Tensor(xp.zeros(shape_arg(size), dtype=_dtype(dtype)), requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    return Tensor(xp.ones(shape_arg(size), dtype=_dtype(dtype)), requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def randn(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Standard normal draws from numformer's generator (reproducible with ``manual_seed``)."""
    data = backend.generator().standard_normal(shape_arg(size), dtype=_dtype(dtype))
    return Tensor(data, requires_grad=requires_grad)


def rand(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uniform draws on [0, 1) from numformer's generator."""
    data = backend.generator().random(shape_arg(size), dtype=_dtype(dtype))
    return Tensor(data, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None) -> Tensor:
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, int) for v in (start, end, step))
    dt = backend.as_dtype(dtype) if dtype is not None else (xp.int64 if ints else _dtype(None))
    return Tensor(xp.arange(start, end, step, dtype=dt))
