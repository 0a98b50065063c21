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
    another device stays on its device (copied there); other data goes where xp computes.

    Args:
        data: a nested list, a number, an array or a tensor.
        dtype: the dtype (default: inferred from ``data``; Python floats give the default dtype).
        requires_grad: record operations on the result for ``backward``.
        device: ``"cpu"`` or ``"cuda"`` (default: where numformer computes).

    Returns:
        A tensor that shares no memory with ``data``.

    Shape:
        that of ``data``.

    Examples:
        >>> import numformer as nf
        >>> nf.tensor([[1, 2], [3, 4]]).dtype, nf.tensor([0.5]).dtype
        (dtype('int64'), dtype('float32'))"""
    data = data.array if isinstance(data, Tensor) else data
    if not isinstance(data, (xp.ndarray, np.ndarray)) and hasattr(data, "shape") and hasattr(data, "get"):
        t = Tensor._wrap_on(data.astype(backend.as_dtype(dtype)) if dtype is not None else data.copy(), False)
        t.requires_grad = requires_grad
        return _placed(t, device)
    t = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    if t.array is data:
        t.array = t.array.copy()
    return _placed(t, device)


def _made(array, requires_grad: bool, device) -> Tensor:
    return _placed(Tensor(array, requires_grad=requires_grad), device)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """``data`` as a tensor, sharing memory with it where it can (a NumPy array of the same
    dtype; a tensor as it is), as PyTorch's ``as_tensor``.

    Args:
        data: an array, a tensor, a list or a number.
        dtype: the dtype (a different one copies).
        device: the device (another one copies).

    Returns:
        A tensor, ``data``'s memory shared where possible.

    Shape:
        that of ``data``."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype)
    if isinstance(data, np.ndarray) and xp.ndarray is np.ndarray and (dtype is None or np.dtype(dtype) == data.dtype):
        return _placed(Tensor._wrap(data, False), device)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray) -> Tensor:
    """A tensor sharing ``ndarray``'s memory (and dtype), as PyTorch's ``from_numpy``.

    Args:
        ndarray: the NumPy array.

    Returns:
        A tensor whose changes show in ``ndarray`` and vice versa.

    Raises:
        TypeError: not a NumPy array."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    return Tensor._wrap_on(ndarray, False)


def zeros(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A tensor of zeros.

    Args:
        *size: the shape, as integers or one sequence (``zeros(2, 3)`` or ``zeros((2, 3))``).
        dtype: the dtype (default: numformer's default floating dtype, float32).
        requires_grad: record operations on the result for ``backward``.
        device: ``"cpu"`` or ``"cuda"`` (default: where numformer computes).

    Returns:
        The tensor."""
    return _made(xp.zeros(shape_arg(size), dtype=_dtype(dtype)), requires_grad, device)


def ones(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A tensor of ones.

    Args:
        *size: the shape, as integers or one sequence.
        dtype: the dtype (default: numformer's default floating dtype, float32).
        requires_grad: record operations on the result for ``backward``.
        device: ``"cpu"`` or ``"cuda"`` (default: where numformer computes).

    Returns:
        The tensor."""
    return _made(xp.ones(shape_arg(size), dtype=_dtype(dtype)), requires_grad, device)


def empty(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A tensor of ``size`` whose values are whatever the memory held (write it before reading).

    Args:
        *size: the shape, as integers or one sequence.
        dtype: the dtype (default: numformer's default floating dtype, float32).
        requires_grad: record operations on the result for ``backward``.
        device: ``"cpu"`` or ``"cuda"`` (default: where numformer computes).

    Returns:
        The tensor."""
    return _made(xp.empty(shape_arg(size), dtype=_dtype(dtype)), requires_grad, device)


def full(size, fill_value, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value``; its dtype, without one, follows the
    value as PyTorch's does (bool, int64, or the default float).

    Args:
        size: the shape (a sequence of integers).
        fill_value: the value of every element.
        dtype: the dtype (default: from ``fill_value``).
        requires_grad: record operations on the result for ``backward``.
        device: ``"cpu"`` or ``"cuda"`` (default: where numformer computes).

    Returns:
        The tensor."""
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else np.int64 if isinstance(fill_value, int) else None
    return _made(xp.full(shape_arg((size,)), fill_value, dtype=_dtype(dtype)), requires_grad, device)


def _like(t: Tensor, dtype, device) -> dict:
    return {"dtype": dtype or t.dtype, "device": device or t.device}


def zeros_like(input, dtype=None, requires_grad: bool = False, device=None) -> Tensor:  # noqa: A002
    """A tensor of zeros shaped like ``input``.

    Args:
        input: the tensor whose shape (and, by default, dtype and device) to take.
        dtype: the dtype (default: ``input``'s).
        requires_grad: record operations on the result for ``backward``.
        device: the device (default: ``input``'s).

    Returns:
        The tensor.

    Shape:
        that of ``input``."""
    return zeros(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def ones_like(input, dtype=None, requires_grad: bool = False, device=None) -> Tensor:  # noqa: A002
    """A tensor of ones shaped like ``input``.

    Args:
        input: the tensor whose shape (and, by default, dtype and device) to take.
        dtype: the dtype (default: ``input``'s).
        requires_grad: record operations on the result for ``backward``.
        device: the device (default: ``input``'s).

    Returns:
        The tensor.

    Shape:
        that of ``input``."""
    return ones(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def empty_like(input, dtype=None, requires_grad: bool = False, device=None) -> Tensor:  # noqa: A002
    """An uninitialised tensor shaped like ``input``.

    Args:
        input: the tensor whose shape (and, by default, dtype and device) to take.
        dtype: the dtype (default: ``input``'s).
        requires_grad: record operations on the result for ``backward``.
        device: the device (default: ``input``'s).

    Returns:
        The tensor.

    Shape:
        that of ``input``."""
    return empty(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def full_like(input, fill_value, dtype=None, requires_grad: bool = False, device=None) -> Tensor:  # noqa: A002
    """A tensor shaped like ``input`` filled with ``fill_value``.

    Args:
        input: the tensor whose shape (and, by default, dtype and device) to take.
        fill_value: the value of every element.
        dtype: the dtype (default: ``input``'s).
        requires_grad: record operations on the result for ``backward``.
        device: the device (default: ``input``'s).

    Returns:
        The tensor.

    Shape:
        that of ``input``."""
    return full(input.shape, fill_value, requires_grad=requires_grad, **_like(input, dtype, device))


def randn(*size, generator=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Standard normal draws from numformer's generator (reproducible with ``manual_seed``), or
    from ``generator``'s.

    Args:
        *size: the shape, as integers or one sequence.
        generator: a ``numformer.Generator`` to draw from (default: the global one).
        dtype: the dtype (default: numformer's default floating dtype, float32).
        requires_grad: record operations on the result for ``backward``.
        device: ``"cpu"`` or ``"cuda"`` (default: where numformer computes).

    Returns:
        The tensor."""
    return _made(backend.rng_of(generator).standard_normal(shape_arg(size), dtype=_dtype(dtype)), requires_grad, device)


def rand(*size, generator=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Uniform draws on [0, 1) from numformer's generator, or from ``generator``'s.

    Args:
        *size: the shape, as integers or one sequence.
        generator: a ``numformer.Generator`` to draw from (default: the global one).
        dtype: the dtype (default: numformer's default floating dtype, float32).
        requires_grad: record operations on the result for ``backward``.
        device: ``"cpu"`` or ``"cuda"`` (default: where numformer computes).

    Returns:
        The tensor."""
    return _made(backend.rng_of(generator).random(shape_arg(size), dtype=_dtype(dtype)), requires_grad, device)


def randn_like(input, dtype=None, requires_grad: bool = False, device=None) -> Tensor:  # noqa: A002
    """Standard normal draws shaped like ``input``.

    Args:
        input: the tensor whose shape (and, by default, dtype and device) to take.
        dtype: the dtype (default: ``input``'s).
        requires_grad: record operations on the result for ``backward``.
        device: the device (default: ``input``'s).

    Returns:
        The tensor.

    Shape:
        that of ``input``."""
    return randn(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def rand_like(input, dtype=None, requires_grad: bool = False, device=None) -> Tensor:  # noqa: A002
    """Uniform draws on [0, 1) shaped like ``input``.

    Args:
        input: the tensor whose shape (and, by default, dtype and device) to take.
        dtype: the dtype (default: ``input``'s).
        requires_grad: record operations on the result for ``backward``.
        device: the device (default: ``input``'s).

    Returns:
        The tensor.

    Shape:
        that of ``input``."""
    return rand(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad: bool = False):
    """Integers drawn uniformly from [low, high) (``randint(high, size)`` as well), int64 by default.

    Args:
        low: the smallest value (or ``high``, when called as ``randint(high, size)``).
        high: one past the largest value.
        size: the shape.
        generator: a ``numformer.Generator`` to draw from (default: the global one).
        dtype: the integer dtype (default int64).
        device: the device.
        requires_grad: accepted for PyTorch's signature.

    Returns:
        The tensor.

    Raises:
        TypeError: no ``size``.
        RuntimeError: high <= low."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high  # randint(high, size)
    if size is None:
        raise TypeError("randint() missing 1 required positional argument: 'size'")
    if high is None or high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    array = backend.rng_of(generator).integers(low, high, shape_arg((size,)))
    return _made(array.astype(backend.as_dtype(dtype or np.int64)), requires_grad, device)


def randperm(n: int, *, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A random permutation of 0 .. n-1 (int64 by default).

    Args:
        n: the number of elements.
        generator: a ``numformer.Generator`` to draw from (default: the global one).
        dtype: the integer dtype (default int64).
        device: the device.
        requires_grad: accepted for PyTorch's signature.

    Returns:
        The tensor, shape ``(n,)``."""
    array = backend.rng_of(generator).permutation(int(n))
    return _made(array.astype(backend.as_dtype(dtype or np.int64)), requires_grad, device)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Values from ``start`` to ``end`` (excluded) by ``step``; ``arange(end)`` starts at 0. Integer
    arguments give int64, any float the default floating dtype, as PyTorch's.

    Args:
        start: the first value (or the end, when called with one argument).
        end: one past the last value.
        step: the spacing.
        dtype: the dtype (default: from the arguments).
        device: the device.
        requires_grad: record operations on the result for ``backward``.

    Returns:
        A 1-D tensor."""
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, int) for v in (start, end, step))
    dt = backend.as_dtype(dtype) if dtype is not None else (xp.int64 if ints else _dtype(None))
    return _made(xp.arange(start, end, step, dtype=dt), requires_grad, device)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end``, both included.

    Args:
        start: the first value.
        end: the last value.
        steps: how many values.
        dtype: the dtype (default: the default floating dtype).
        device: the device.
        requires_grad: record operations on the result for ``backward``.

    Returns:
        A 1-D tensor of ``steps`` values."""
    return _made(xp.linspace(start, end, steps).astype(_dtype(dtype)), requires_grad, device)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """An identity matrix: ones on the diagonal.

    Args:
        n: the rows.
        m: the columns (default ``n``).
        dtype: the dtype (default: the default floating dtype).
        device: the device.
        requires_grad: record operations on the result for ``backward``.

    Returns:
        A tensor ``(n, m)``."""
    return _made(xp.eye(n, m, dtype=_dtype(dtype)), requires_grad, device)


def meshgrid(*tensors, indexing: str | None = None) -> tuple:
    """Coordinate grids from 1-D tensors, "ij" (PyTorch's default) or "xy" indexing; in the
    graph (each grid is its tensor expanded).

    Args:
        *tensors: 1-D tensors (or one sequence of them).
        indexing: ``"ij"`` (matrix) or ``"xy"`` (Cartesian: the first two grids swapped).

    Returns:
        A tuple of grids, one per tensor.

    Shape:
        ``k`` tensors ``(n_i,)`` -> each grid ``(n_1, ..., n_k)`` (``"xy"``: the first two sizes swapped).

    Raises:
        ValueError: an indexing other than "ij" or "xy", or a tensor that is not 1-D."""
    tensors = shape_arg(tensors)
    indexing = indexing or "ij"
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    if any(t.ndim != 1 for t in tensors):
        raise ValueError(f"meshgrid: expects 1-D tensors, got shapes {[t.shape for t in tensors]}")
    sizes = [t.shape[0] for t in tensors]
    if indexing == "xy" and len(tensors) >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for i, t in enumerate(tensors):
        axis = (1 - i if i < 2 else i) if indexing == "xy" and len(tensors) >= 2 else i
        shape = [1] * len(tensors)
        shape[axis] = t.shape[0]
        grids.append(t.reshape(tuple(shape)).expand(tuple(sizes)))
    return tuple(grids)


def is_tensor(obj) -> bool:
    """Whether ``obj`` is a numformer tensor.

    Args:
        obj: anything.

    Returns:
        True for a ``Tensor`` (or ``Parameter``)."""
    return isinstance(obj, Tensor)


def is_floating_point(input) -> bool:  # noqa: A002
    """Whether ``input``'s dtype is a floating one.

    Args:
        input: the tensor.

    Returns:
        True for float16, bfloat16, float32 and float64.

    Shape:
        any."""
    return backend.is_floating(input.dtype)
