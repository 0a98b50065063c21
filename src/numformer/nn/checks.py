"""Argument checks shared by ``numformer.nn.functional`` and the modules: one place, so a bad
input gets the same error (naming the op, the argument, the expected and the actual value)
whichever way it arrives. Each takes tensors or arrays (anything with ``shape`` and ``dtype``).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from numformer import backend
from numformer.ops.conv import output_size
from numformer.tensor import Tensor, array_of

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(op: str, reduction: str, allowed: tuple = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{op}: reduction must be one of {allowed}, got {reduction!r}")


def legacy_reduction(op: str, size_average, reduce, reduction: str) -> str:
    """``reduction``, or PyTorch's deprecated ``size_average``/``reduce`` pair read as PyTorch
    reads it (with its warning): both unset (None) mean True; reduce=False is "none", else
    size_average picks "mean" or "sum"."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    legacy = "none" if not reduce else "mean" if size_average else "sum"
    warnings.warn(
        f"{op}: size_average and reduce args will be deprecated, please use reduction='{legacy}' instead.",
        stacklevel=4,
    )
    return legacy


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


def check_linear(name: str, input, weight, bias=None) -> None:
    if input.shape[-1:] != weight.shape[-1:]:
        raise ValueError(
            f"{name}: input's last dim {input.shape[-1:]} must equal weight's "
            f"in_features; input shape {input.shape}, weight shape {weight.shape}"
        )
    if input.dtype != weight.dtype:
        raise TypeError(f"{name}: input dtype {input.dtype} and weight dtype {weight.dtype} differ")
    if bias is not None and bias.shape not in ((), (1,), weight.shape[:1]):  # PyTorch's addmm broadcasts these
        raise ValueError(f"{name}: bias must have shape {tuple(weight.shape[:1])}, got {tuple(bias.shape)}")
    if bias is not None and bias.dtype != weight.dtype:
        raise TypeError(f"{name}: bias dtype {bias.dtype} and weight dtype {weight.dtype} differ")


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


def check_embedding_options(op: str, max_norm, scale_grad_by_freq: bool, sparse: bool) -> None:
    """PyTorch's embedding options numformer does not implement: an error, never ignored."""
    for name, value in (("max_norm", max_norm), ("scale_grad_by_freq", scale_grad_by_freq), ("sparse", sparse)):
        if value not in (None, False):
            raise NotImplementedError(f"{op}: {name}={value!r} is not supported (only its default)")


def int_tuple(op: str, name: str, value, n: int, minimum: int = 1) -> tuple:
    """``value`` (an int or a sequence of ``n`` ints, each >= ``minimum``) as an n-tuple."""
    items = (
        (value,) * n
        if isinstance(value, numbers.Integral)
        else tuple(value)
        if isinstance(value, (tuple, list))
        else None
    )
    if (
        items is None
        or len(items) != n
        or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < minimum for v in items)
    ):
        raise ValueError(f"{op}: {name} must be an int >= {minimum} or {n} of them, got {value!r}")
    return tuple(int(v) for v in items)


def conv_padding(op: str, padding, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """A convolution's padding as (before, after) per spatial dim: ``padding`` an int, one per
    dim, ``"valid"`` (none) or ``"same"`` (total dilation (k - 1), the odd one after, PyTorch's
    split; stride 1 only)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, {n} ints, 'valid' or 'same', got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    amounts = int_tuple(op, "padding", padding, n, minimum=0)
    return tuple((p, p) for p in amounts)


def check_conv_weight(op: str, x, weight, bias, groups, n: int) -> None:
    """A convolution's weight ``(C_out, C_in / groups, *kernel)``, bias ``(C_out,)`` and groups
    against the input ``x`` ``(N, C_in, ...)``."""
    if weight.ndim != n + 2:
        raise ValueError(f"{op}: weight must be (C_out, C_in / groups, {n} kernel dims), got shape {weight.shape}")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    C, O = x.shape[1], weight.shape[0]
    if C % groups or O % groups:
        raise ValueError(f"{op}: in_channels {C} and out_channels {O} must both be divisible by groups={groups}")
    if weight.shape[1] * groups != C:
        raise ValueError(
            f"{op}: input has {C} channels but weight of shape {weight.shape} with groups={groups} expects "
            f"{weight.shape[1] * groups}"
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} and weight dtype {weight.dtype} differ")
    if bias is not None and tuple(bias.shape) != (O,):
        raise ValueError(f"{op}: bias must have shape ({O},), got {tuple(bias.shape)}")
    if bias is not None and bias.dtype != x.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} and bias dtype {bias.dtype} differ")


def pool_geometry(op: str, sizes: tuple, n: int, kernel_size, stride, padding, dilation, ceil_mode, average=False):
    """A pooling's (kernel, stride, padding, dilation, output sizes), each an n-tuple, checked as
    PyTorch checks them: stride None (or empty) is the kernel; padding at most half the
    (dilated) kernel; at least one output."""
    kernel = int_tuple(op, "kernel_size", kernel_size, n)
    stride = (
        kernel
        if stride is None or (isinstance(stride, (tuple, list)) and not stride)
        else int_tuple(op, "stride", stride, n)
    )
    padding = int_tuple(op, "padding", padding, n, minimum=0)
    dilation = int_tuple(op, "dilation", dilation, n)
    for k, p, d in zip(kernel, padding, dilation):
        if 2 * p > d * (k - 1) + 1:
            raise ValueError(
                f"{op}: padding must be at most half of the effective kernel size, got padding={padding}, "
                f"kernel_size={kernel}" + ("" if average else f" and dilation={dilation}")
            )
    out = tuple(output_size(*args, ceil_mode) for args in zip(sizes, kernel, stride, padding, dilation))
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: input of spatial size {tuple(sizes)} is too small for the pooling: output size {out}")
    return kernel, stride, padding, dilation, out


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad_amounts(shape: tuple, pad, mode: str, value) -> tuple:
    """``F.pad``'s ``pad`` (last dim first: (left, right, top, bottom, ...)) as (before, after)
    for every dim of ``shape``, checked for ``mode`` as PyTorch checks it."""
    pad = tuple(pad)
    if len(pad) % 2 or any(not isinstance(p, numbers.Integral) for p in pad):
        raise ValueError(f"pad: pad must be an even number of ints, got {pad!r}")
    k = len(pad) // 2
    if k > len(shape):
        raise ValueError(f"pad: {len(pad)} amounts pad {k} dims, but the input has {len(shape)}: shape {shape}")
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    pairs = [(0, 0)] * (len(shape) - k) + [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in reversed(range(k))]
    if mode == "constant":
        for dim, (n, (before, after)) in enumerate(zip(shape, pairs)):
            if n + before + after < 0:
                raise ValueError(f"pad: dim {dim} of size {n} padded by ({before}, {after}) is below 0")
        return tuple(pairs)
    if value not in (None, 0):
        raise ValueError(f'pad: padding mode "{mode}" doesn\'t take in value argument, got value={value!r}')
    if not 1 <= k <= 3 or len(shape) not in (k + 1, k + 2):
        raise NotImplementedError(
            f"pad: mode {mode!r} pads the last 1, 2 or 3 dims of a (batched or unbatched) input: {len(pad)} amounts "
            f"for an input of {len(shape)} dims is not supported"
        )
    for dim, (n, (before, after)) in enumerate(zip(shape, pairs)):
        if before < 0 or after < 0:
            raise ValueError(f"pad: mode {mode!r} takes no negative amounts, got ({before}, {after}) at dim {dim}")
        limit = n - 1 if mode == "reflect" else n
        if (before or after) and max(before, after) > limit:
            raise ValueError(
                f"pad: mode {mode!r} pads dim {dim} of size {n} by at most {limit}, got ({before}, {after})"
            )
    return tuple(pairs)


class ShapeError(RuntimeError, ValueError):
    """An input or state of a shape a layer cannot take, where PyTorch raises a RuntimeError
    (``except RuntimeError`` written for PyTorch catches it); a ValueError too, as numformer's
    other bad-input errors."""


class FeaturesError(ShapeError):
    """An input with the wrong number of features for a layer (``nn.Linear``, the recurrent
    layers): a ``ShapeError``."""


def check_features(op: str, x, expected: int, name: str = "input") -> None:
    """``x`` must have ``expected`` features in its last dim.

    Raises:
        FeaturesError: (a RuntimeError and a ValueError) it has another number, or is 0-d."""
    if x.ndim == 0 or x.shape[-1] != expected:
        raise FeaturesError(f"{op}: {name} must have {expected} features in its last dim, got shape {x.shape}")


def mask_array(mask, name: str, op: str = "MultiheadAttention") -> np.ndarray:
    """The array of a boolean or floating mask given as a tensor or array (TypeError otherwise)."""
    m = array_of(mask)
    if m.dtype != np.bool_ and not np.issubdtype(m.dtype, np.floating):
        raise TypeError(f"{op}: {name} must be bool or floating, got dtype {m.dtype}")
    return m


def dtype_or_default(dtype) -> np.dtype:
    """``dtype`` normalised, or the default floating dtype when None (a module's ``dtype=``)."""
    return backend.get_default_dtype() if dtype is None else backend.as_dtype(dtype)
