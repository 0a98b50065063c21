"""Argument checks shared by ``numformer.nn.functional`` and the modules: one place, so a bad
input gets the same error (naming the op, the argument, the expected and the actual value)
whichever way it arrives. Each takes tensors or arrays (anything with ``shape`` and ``dtype``).
"""

from __future__ import annotations

import numpy as np

from numformer import backend
from numformer.tensor import Tensor, array_of

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_dim(op: str, dim: int, ndim: int) -> int:
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dims")
    return dim % max(ndim, 1)


def check_float(op: str, name: str, t: Tensor) -> None:
    if not backend.is_floating(t.dtype):
        raise TypeError(f"{op}: {name} must be a floating tensor, got dtype {t.dtype}")


def check_gelu(input, approximate: str) -> None:
    check_float("gelu", "input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def check_linear(name: str, input, weight) -> None:
    if input.shape[-1:] != weight.shape[-1:]:
        raise ValueError(
            f"{name}: input's last dim {input.shape[-1:]} must equal weight's "
            f"in_features; input shape {input.shape}, weight shape {weight.shape}"
        )
    if input.dtype != weight.dtype:
        raise TypeError(f"{name}: input dtype {input.dtype} and weight dtype {weight.dtype} differ")


def layer_norm_params(name: str, input: Tensor, normalized_shape, weight, bias):
    """Checked (normalised shape, [weight, bias] given) for ``layer_norm`` and ``add_layer_norm``
    (``input`` a tensor or an array)."""
    check_float(name, "input", input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if input.shape[input.ndim - len(shape) :] != shape or len(shape) > input.ndim:
        raise ValueError(f"{name}: input shape {input.shape} must end with normalized_shape {shape}")
    for arg, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != shape:
            raise ValueError(f"{name}: {arg} must have shape {shape}, got {p.shape}")
    return shape, [p for p in (weight, bias) if p is not None]


def check_indices(idx: np.ndarray, n: int) -> None:
    if idx.dtype.kind not in "iu":  # what np.issubdtype(dtype, np.integer) says, faster
        raise TypeError(f"embedding: input must hold integer indices, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"embedding: indices must be in [0, {n}), got values in [{idx.min()}, {idx.max()}]")


def check_features(op: str, x, expected: int, name: str = "input") -> None:
    """``x`` must have ``expected`` features in its last dim (ValueError)."""
    if x.ndim == 0 or x.shape[-1] != expected:
        raise ValueError(f"{op}: {name} must have {expected} features in its last dim, got shape {x.shape}")


def mask_array(mask, name: str, op: str = "MultiheadAttention") -> np.ndarray:
    """The array of a boolean or floating mask given as a tensor or array (TypeError otherwise)."""
    m = array_of(mask)
    if m.dtype != np.bool_ and not np.issubdtype(m.dtype, np.floating):
        raise TypeError(f"{op}: {name} must be bool or floating, got dtype {m.dtype}")
    return m


def dtype_or_default(dtype) -> np.dtype:
    """``dtype`` normalised, or the default floating dtype when None (a module's ``dtype=``)."""
    return backend.get_default_dtype() if dtype is None else backend.as_dtype(dtype)
