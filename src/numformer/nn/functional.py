"""Functional API with PyTorch's names, argument names and meanings.

Each function validates its arguments (errors name the argument, the expected and the actual
value) and then calls one primitive from ``numformer.ops``. Shapes use named dimensions:
N batch, L target (query) length, S source (key) length, E embedding, C classes.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np

from numformer import backend
from numformer.backend import xp
from numformer.nn import checks
from numformer.ops import activation as A
from numformer.ops import conv as C
from numformer.ops import elementwise as E
from numformer.ops import linalg as LA
from numformer.ops import loss as LO
from numformer.ops.attention import BlockedAttention, ScaledDotProductAttention
from numformer.ops.dropout import Dropout
from numformer.ops.embedding import Embedding
from numformer.ops.gated import Silu, SwiGLU
from numformer.ops.normalization import LayerNorm, RMSNorm
from numformer.ops.normalize import Normalize
from numformer.ops.pad import Pad
from numformer.ops.rotary import Rotary
from numformer.ops.softmax import LogSoftmax, Softmax
from numformer.tensor import Tensor, array_of, as_tensor

# --- activations -----------------------------------------------------------------------------


def _in_place(input: Tensor, result: Tensor, inplace: bool) -> Tensor:
    """``result``, or, for PyTorch's ``inplace=True``, ``input`` overwritten with it (recorded in
    the graph as an in-place write: a leaf that requires grad refuses it, as PyTorch's does)."""
    if not inplace:
        return result
    return input.copy_(result)


def _activation(name: str, input, op, inplace: bool = False, **options) -> Tensor:
    """``op`` applied to floating ``input`` (checked), in place when asked (then, in a graph, on
    a copy: ``op``'s backward reads its input, which the write overwrites)."""
    t = as_tensor(input)
    checks.check_float(name, "input", t)
    source = t.clone() if inplace and t.requires_grad else t
    return _in_place(t, op.apply(source, **options), inplace)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(input, 0) elementwise; NaN stays NaN. ``inplace=True`` writes the result into
    ``input`` and returns it.

    Args:
        input: the input tensor.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, dtype kept."""
    t = as_tensor(input)
    return _in_place(t, E.Relu.apply(t), inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(input, 0), 6) elementwise (``hardtanh(input, 0, 6)``).

    Args:
        input: the input tensor.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("relu6", input, A.Hardtanh, inplace, min_val=0.0, max_val=6.0)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """input where positive, else ``negative_slope * input`` (Maas et al., 2013).

    Args:
        input: the input tensor.
        negative_slope: the slope for negative inputs.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("leaky_relu", input, A.LeakyRelu, inplace, negative_slope=float(negative_slope))


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """input where positive, else alpha (exp(input) - 1) (Clevert et al., 2015).

    Args:
        input: the input tensor.
        alpha: the negative side's saturation value.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("elu", input, A.Elu, inplace, alpha=float(alpha))


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(input, alpha) with the self-normalising constants (Klambauer et al., 2017):
    alpha = 1.6733, scale = 1.0507.

    Args:
        input: the input tensor.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("selu", input, A.Elu, inplace, alpha=SELU_ALPHA, scale=SELU_SCALE)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """input where positive, else alpha (exp(input / alpha) - 1) (Barron, 2017).

    Args:
        input: the input tensor.
        alpha: the negative side's saturation value (and scale of its input).
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``alpha`` = 0."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0 (it divides the input), got 0")
    return _activation("celu", input, A.Elu, inplace, alpha=float(alpha), input_scale=1.0 / alpha)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta input)) / beta, and input itself where beta input > ``threshold``
    (PyTorch's reversion to the identity, for precision). Finite for any input.

    Args:
        input: the input tensor.
        beta: the sharpness: log(1 + exp(beta x)) / beta.
        threshold: above ``beta x > threshold`` the output is x itself.

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``beta`` = 0."""
    if beta == 0:
        raise ValueError("softplus: beta must not be 0 (it divides the result), got 0")
    return _activation("softplus", input, A.Softplus, beta=float(beta), threshold=float(threshold))


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """input clipped to [min_val, max_val]; the gradient is 1 strictly inside, 0 at and past
    the bounds (PyTorch's hardtanh).

    Args:
        input: the input tensor.
        min_val: the lower bound.
        max_val: the upper bound.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``min_val`` > ``max_val``."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val must be <= max_val, got min_val={min_val} and max_val={max_val}")
    return _activation("hardtanh", input, A.Hardtanh, inplace, min_val=float(min_val), max_val=float(max_val))


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(input)) = -softplus(-input), finite for any input.

    Args:
        input: the input tensor.

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("logsigmoid", input, A.LogSigmoid)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """clip(input / 6 + 1/2, 0, 1) (Howard et al., 2019, MobileNetV3).

    Args:
        input: the input tensor.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("hardsigmoid", input, A.Hardsigmoid, inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """input * clip(input + 3, 0, 6) / 6 (Howard et al., 2019, MobileNetV3).

    Args:
        input: the input tensor.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("hardswish", input, A.Hardswish, inplace)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """input * tanh(softplus(input)) (Misra, 2019).

    Args:
        input: the input tensor.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("mish", input, A.Mish, inplace)


def softsign(input: Tensor) -> Tensor:
    """input / (1 + |input|).

    Args:
        input: the input tensor.

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    return _activation("softsign", input, A.Softsign)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """Gated linear unit (Dauphin et al., 2017): input's halves a, b along ``dim``, a * sigmoid(b).

    Args:
        input: the input tensor.
        dim: the dimension split into halves a and b (its size must be even).

    Shape: ``(*, 2M, *)`` -> ``(*, M, *)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``dim`` out of range or of odd size."""
    t = as_tensor(input)
    checks.check_float("glu", "input", t)
    axis = checks.check_dim("glu", dim, t.ndim)
    if t.ndim == 0 or t.shape[axis] % 2:
        raise ValueError(f"glu: input's dim {dim} must have an even size (halved), got shape {t.shape}")
    a, b = t.chunk(2, axis)
    return a * E.Sigmoid.apply(b)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU (Hendrycks and Gimpel, 2016), exact (``"none"``: x * Phi(x)) or the tanh
    approximation (``"tanh"``, GPT-2's).

    Args:
        input: the input tensor.
        approximate: ``"none"`` (exact, with erf) or ``"tanh"``.

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``approximate`` not "none" or "tanh"."""
    input = as_tensor(input)
    checks.check_gelu(input, approximate)
    return E.Gelu.apply(input, approximate=approximate)


def tanh(input: Tensor) -> Tensor:
    """tanh elementwise.

    Args:
        input: the input tensor.

    Shape: ``(*)`` -> ``(*)``, dtype kept."""
    return E.Tanh.apply(as_tensor(input))


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-input)) elementwise.

    Args:
        input: the input tensor.

    Shape: ``(*)`` -> ``(*)``, dtype kept."""
    return E.Sigmoid.apply(as_tensor(input))


def _softmax_input(name: str, input, dim, dtype, stacklevel: int) -> tuple:
    """(checked input cast to ``dtype``, axis): PyTorch's implicit dim, with its warning, when
    ``dim`` is None (0 for 0-, 1- and 3-dim inputs, else 1)."""
    t = as_tensor(input)
    if dtype is not None:
        t = t.to(dtype)
    checks.check_float(name, "input", t)
    if dim is None:
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. "
            "Change the call to include dim=X as an argument.",
            stacklevel=stacklevel,
        )
        dim = 0 if t.ndim in (0, 1, 3) else 1
    return t, checks.check_dim(name, dim, t.ndim)


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """Softmax along ``dim``: exp(x - max) / sum(exp(x - max)), one fused kernel with its
    backward dx = y (g - sum(g y)). A row that is all ``-inf`` gives zeros (PyTorch gives NaN
    there); stable for logits of any finite magnitude. ``dtype`` casts the input first;
    ``dim=None`` is PyTorch's deprecated implicit choice (with its warning).

    Args:
        input: the input tensor.
        dim: the dimension whose entries sum to 1 (None: PyTorch's legacy choice, with a warning).
        dtype: cast ``input`` to this dtype first (None: keep it).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``dim`` out of range."""
    t, axis = _softmax_input("softmax", input, dim, dtype, _stacklevel)
    return Softmax.apply(t, axis=axis)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """softmax(-input) along ``dim``.

    Args:
        input: the input tensor.
        dim: the dimension whose entries sum to 1 (None: PyTorch's legacy choice, with a warning).
        dtype: cast ``input`` to this dtype first (None: keep it).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``dim`` out of range."""
    t, axis = _softmax_input("softmin", input, dim, dtype, _stacklevel)
    return Softmax.apply(-t, axis=axis)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """log(softmax(input)) along ``dim``, computed as x - max - log(sum(exp(x - max))).
    Arguments as ``softmax``'s.

    Args:
        input: the input tensor.
        dim: the dimension normalised (None: PyTorch's legacy choice, with a warning).
        dtype: cast ``input`` to this dtype first (None: keep it).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``dim`` out of range."""
    t, axis = _softmax_input("log_softmax", input, dim, dtype, _stacklevel)
    return LogSoftmax.apply(t, axis=axis)


# --- layers as functions ---------------------------------------------------------------------


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` (one fused primitive, PyTorch's ``F.linear``).

    Args:
        input: the input tensor.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)``, or None.

    Shape: input ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` -> ``(*, out)``.

    Raises:
        ValueError: input's last dim is not ``in``. TypeError: dtypes differ."""
    return _linear("linear", input, weight, bias, relu=False)


def linear_relu(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``relu(linear(input, weight, bias))`` in one kernel: each thread applies the ReLU to its
    block of the GEMM's result while it is in cache (no second pass, no second array).

    Args:
        input: the input tensor.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)``, or None.

    Shape: input ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` -> ``(*, out)``.

    Raises:
        ValueError: input's last dim is not ``in``. TypeError: dtypes differ."""
    return _linear("linear_relu", input, weight, bias, relu=True)


def linear_gelu(input: Tensor, weight: Tensor, bias: Tensor | None = None, approximate: str = "none") -> Tensor:
    """``gelu(linear(input, weight, bias), approximate)`` in one kernel: each thread applies the
    GELU to its block of the GEMM's result while it is in cache (one parallel region, not two),
    and keeps the GELU's derivative for backward as ``gelu`` does.

    Args:
        input: the input tensor.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)``, or None.
        approximate: ``"none"`` (exact, x Phi(x)) or ``"tanh"``, as ``gelu``'s.

    Shape: input ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` -> ``(*, out)``.

    Raises:
        ValueError: input's last dim is not ``in``, or another ``approximate``. TypeError:
        an input that is not floating (as ``gelu``), or dtypes that differ."""
    input = as_tensor(input)
    checks.check_float("linear_gelu", "input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"linear_gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _linear("linear_gelu", input, weight, bias, gelu=approximate)


def _linear(
    name: str, input: Tensor, weight: Tensor, bias: Tensor | None, relu: bool = False, gelu: str | None = None
) -> Tensor:
    checks.check_linear(name, input, weight, bias)
    params = (weight,) if bias is None else (weight, bias)
    return LA.Linear.apply(as_tensor(input), *params, relu=relu, gelu=gelu)


def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims (biased variance), then
    ``* weight + bias`` (Ba et al., 2016). One fused kernel; its backward
    dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) is in ``numformer.ops.normalization``.

    Args:
        input: the input tensor.
        normalized_shape: the trailing shape to normalise over (an int for the last dim).
        weight: the scale over ``normalized_shape``, or None.
        bias: the shift over ``normalized_shape``, or None.
        eps: a small constant for numerical stability.

    Shape: input ``(*, *normalized_shape)``, weight and bias ``normalized_shape`` -> input's
    shape and dtype.

    Raises:
        ValueError: input does not end with ``normalized_shape``, or weight/bias of another
        shape. TypeError: integer input."""
    input = as_tensor(input)
    shape, params = checks.layer_norm_params("layer_norm", input, normalized_shape, weight, bias)
    return LayerNorm.apply(
        input, *params, ndim=len(shape), eps=eps, has_weight=weight is not None, has_bias=bias is not None
    )


def add_layer_norm(
    input: Tensor,
    residual: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """``layer_norm(input + residual, ...)`` in one kernel: the add happens row by row inside
    the normalisation, so the sum is never a separate pass or a stored array (post-LN blocks'
    "add & norm"). The gradient of each operand is the gradient of the sum.

    Args:
        input: the input tensor.
        residual: the tensor added to ``input`` before normalising (the residual branch).
        normalized_shape: the trailing shape to normalise over (an int for the last dim).
        weight: the scale over ``normalized_shape``, or None.
        bias: the shift over ``normalized_shape``, or None.
        eps: a small constant for numerical stability.

    Shape: input and residual ``(*, *normalized_shape)`` (the same shape and dtype: no
    broadcasting) -> the same.

    Raises:
        ValueError: residual of another shape or dtype, or as ``layer_norm``."""
    input, residual = as_tensor(input), as_tensor(residual)
    if residual.shape != input.shape or residual.dtype != input.dtype:
        raise ValueError(
            f"add_layer_norm: residual must match input's shape {input.shape} and dtype "
            f"{input.dtype}, got {residual.shape} {residual.dtype}"
        )
    shape, params = checks.layer_norm_params("add_layer_norm", input, normalized_shape, weight, bias)
    return LayerNorm.apply(
        input,
        residual,
        *params,
        ndim=len(shape),
        eps=eps,
        has_weight=weight is not None,
        has_bias=bias is not None,
        has_residual=True,
    )


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout (Srivastava et al., 2014): zero each element with probability ``p`` and
    scale the rest by 1/(1-p), so the expectation is unchanged; the identity when not
    ``training`` or p = 0. The mask comes from ``manual_seed``'s generator, in fixed blocks, so
    it is the same for any thread count. ``inplace=True`` writes into ``input``.

    Args:
        input: the input tensor.
        p: the probability of zeroing an element (or channel), in [0, 1].
        training: apply dropout (False: return ``input`` unchanged).
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``.

    Raises:
        ValueError: ``p`` outside [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    return _in_place(input, Dropout.apply(input, p=p, rng=backend.generator()), inplace)


def _channel_dropout(name: str, input, p: float, training: bool, inplace: bool, batched_ndim: int) -> Tensor:
    """Zero whole channels (every element of one (sample, channel)) with probability ``p``, the
    rest scaled by 1/(1-p): the dropout mask drawn at shape (N, C, 1, ...) and broadcast."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p must be in [0, 1], got {p}")
    t = as_tensor(input)
    if t.ndim not in (batched_ndim - 1, batched_ndim):
        layouts = {3: "(N, C, L) or (C, L)", 4: "(N, C, H, W) or (C, H, W)"}[batched_ndim]
        raise ValueError(f"{name}: input must be {layouts}, got shape {t.shape}")
    if not training or p == 0.0:
        return input
    channels = 1 if t.ndim == batched_ndim - 1 else 2  # unbatched (C, ...): one mask entry per channel
    ones = Tensor(xp.ones(t.shape[:channels] + (1,) * (t.ndim - channels), dtype=t.dtype))
    mask = Dropout.apply(ones, p=p, rng=backend.generator())
    source = t.clone() if inplace and t.requires_grad else t  # the product's backward reads its input
    return _in_place(t, source * mask, inplace)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout (Tompson et al., 2015) for ``(N, C, L)`` or ``(C, L)``: each channel zeroed
    whole with probability ``p``, the rest scaled by 1/(1-p).

    Args:
        input: the input tensor.
        p: the probability of zeroing a channel, in [0, 1].
        training: apply dropout (False: return ``input`` unchanged).
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(N, C, L)`` or ``(C, L)`` -> the same.

    Raises:
        ValueError: ``p`` outside [0, 1], or another number of dims."""
    return _channel_dropout("dropout1d", input, p, training, inplace, 3)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout (Tompson et al., 2015) for ``(N, C, H, W)``: each feature map zeroed whole
    with probability ``p``, the rest scaled by 1/(1-p). A 3-dim input is taken as ``(N, C, L)``
    (PyTorch's legacy reading, with its warning).

    Args:
        input: the input tensor.
        p: the probability of zeroing a channel, in [0, 1].
        training: apply dropout (False: return ``input`` unchanged).
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(N, C, H, W)`` or ``(N, C, L)`` -> the same.

    Raises:
        ValueError: ``p`` outside [0, 1], or another number of dims."""
    t = as_tensor(input)
    if t.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout behavior is "
            "desired - input is interpreted as shape (N, C, L), where C is the channel dim. Use dropout1d instead.",
            stacklevel=2,
        )
        return _channel_dropout("dropout2d", t, p, training, inplace, 3)
    return _channel_dropout("dropout2d", t, p, training, inplace, 4)


def embedding(
    input,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Rows of ``weight`` at integer indices ``input``; the ``padding_idx`` row gets no gradient.
    PyTorch's ``max_norm`` (renormalising rows in place), ``scale_grad_by_freq`` and ``sparse``
    gradients are not implemented: asking for one is an error, never silently ignored.

    Args:
        input: integer ids.
        weight: the table ``(num_embeddings, embedding_dim)``.
        padding_idx: a row that gets no gradient, or None.
        max_norm: renormalise the looked-up rows to at most this norm, in place (as PyTorch's), or None.
        norm_type: the p of ``max_norm``'s norm.
        scale_grad_by_freq: scale each row's gradient by the inverse of its count in the batch.
        sparse: PyTorch's sparse gradients: must be False (numformer's gradients are dense).

    Shape: input ``(*)`` integers, weight ``(num_embeddings, E)`` -> ``(*, E)``.

    Raises:
        TypeError: indices not integers. IndexError: an index outside [0, num_embeddings).
        ValueError: ``padding_idx`` out of range. NotImplementedError: ``max_norm``,
        ``scale_grad_by_freq`` or ``sparse``."""
    checks.check_embedding_options("embedding", max_norm, scale_grad_by_freq, sparse)
    idx = array_of(input)
    n = weight.shape[0]
    checks.check_indices(idx, n)
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx must be in [-{n}, {n}), got {padding_idx}")
        padding_idx %= n
    return Embedding.apply(weight, indices=idx, padding_idx=padding_idx)


# --- losses ----------------------------------------------------------------------------------


def _reduction(op: str, size_average, reduce, reduction: str, allowed=checks.REDUCTIONS) -> str:
    """``reduction``, or PyTorch's deprecated ``size_average``/``reduce`` pair read as one."""
    reduction = checks.legacy_reduction(op, size_average, reduce, reduction)
    checks.check_reduction(op, reduction, allowed)
    return reduction


def _class_target(op: str, input: Tensor, target, ignore_index: int):
    """The checked integer class-index target of ``cross_entropy``/``nll_loss`` (array)."""
    t = array_of(target)
    C = input.shape[1] if input.ndim > 1 else input.shape[0]
    expected = (input.shape[0],) + input.shape[2:] if input.ndim > 1 else ()
    if t.shape != expected:
        raise ValueError(
            f"{op}: class-index target must have shape {expected} for input shape {input.shape}, got {t.shape}"
        )
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    if bad.any():
        raise IndexError(
            f"{op}: target values must be in [0, {C}) or ignore_index={ignore_index}, got {t[bad].reshape(-1)[0]}"
        )
    return t


def _class_weight(op: str, weight, input: Tensor):
    """``weight`` as an array ``(C,)`` of input's dtype, or None."""
    if weight is None:
        return None
    C = input.shape[1] if input.ndim > 1 else input.shape[0]
    w = array_of(weight).astype(input.dtype)
    if w.shape != (C,):
        raise ValueError(f"{op}: weight must have shape ({C},) (one per class), got {w.shape}")
    return w


def cross_entropy(
    input: Tensor,
    target,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between logits and class indices or class probabilities (PyTorch's
    ``F.cross_entropy``, one fused kernel with its backward), with ``ignore_index``,
    ``label_smoothing`` and per-class ``weight``. Finite for logits of any finite size. Mean over
    no kept target gives 0 (PyTorch gives NaN). ``size_average`` and ``reduce`` are PyTorch's
    deprecated spelling of ``reduction``.

    Args:
        input: logits ``(N, C)`` (or ``(C,)``, ``(N, C, d1, ...)``).
        target: class indices, or probabilities of ``input``'s shape.
        weight: a rescaling weight per class ``(C,)``, or None.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        ignore_index: a target class that contributes nothing (nor counts in the mean).
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).
        label_smoothing: the mass in [0, 1] spread uniformly over the classes (Szegedy et al., 2016).

    Shape: input ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; target integer class indices
    ``(N,)``, ``()`` or ``(N, d1, ...)``, or floating probabilities of input's shape; weight
    ``(C,)``. Output ``()`` for ``reduction`` "mean" and "sum", the target's shape for "none".

    Raises:
        ValueError: shapes that do not fit, ``reduction`` or ``label_smoothing`` out of range.
        IndexError: a class index outside [0, C). TypeError: a target neither integer nor
        floating."""
    input = as_tensor(input)
    checks.check_float("cross_entropy", "input", input)
    reduction = _reduction("cross_entropy", size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have at least 1 dim (classes), got a scalar")
    t = array_of(target)
    if np.issubdtype(t.dtype, np.floating):
        if t.shape != input.shape:
            raise checks.ShapeError(  # PyTorch: RuntimeError (it reads it as class indices of the wrong dtype)
                f"cross_entropy: a floating target holds class probabilities and must have input's shape "
                f"{input.shape}, got {t.shape} (class indices must be integers: .long())"
            )
        t = t.astype(input.dtype, copy=False)
    elif np.issubdtype(t.dtype, np.integer):
        t = _class_target("cross_entropy", input, t, ignore_index)
    else:
        raise TypeError(f"cross_entropy: target must be integer indices or floating probabilities, got dtype {t.dtype}")
    w = _class_weight("cross_entropy", weight, input)
    return LO.CrossEntropy.apply(
        input, target=t, weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )


def nll_loss(
    input: Tensor,
    target,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class targets given log-probabilities (PyTorch's
    ``F.nll_loss``; ``cross_entropy`` is ``nll_loss(log_softmax(x))``): -weight[t] input[t] per
    position; "mean" divides by the kept positions' weights. Mean over no kept target gives 0
    (PyTorch gives NaN).

    Args:
        input: log-probabilities ``(N, C)`` (or ``(C,)``, ``(N, C, d1, ...)``).
        target: class indices.
        weight: a rescaling weight per class ``(C,)``, or None.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        ignore_index: a target class that contributes nothing (nor counts in the mean).
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).

    Shape: input ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; target integer ``(N,)``, ``()`` or
    ``(N, d1, ...)``; weight ``(C,)``. Output ``()``, or the target's shape for "none".

    Raises:
        ValueError: shapes that do not fit, an unknown ``reduction``. IndexError: a class
        index outside [0, C). TypeError: integer input or a target that is not integer."""
    input = as_tensor(input)
    checks.check_float("nll_loss", "input", input)
    reduction = _reduction("nll_loss", size_average, reduce, reduction)
    if input.ndim == 0:
        raise ValueError("nll_loss: input must have at least 1 dim (classes), got a scalar")
    t = array_of(target)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype {t.dtype}")
    t = _class_target("nll_loss", input, t, ignore_index)
    w = _class_weight("nll_loss", weight, input)
    return LO.NLLLoss.apply(input, target=t, weight=w, ignore_index=ignore_index, reduction=reduction)


def _pair(op: str, input, target, same_shape: bool = True) -> tuple:
    """(input, target) as floating tensors of one dtype (PyTorch's promotion: the wider float;
    an integer target takes input's), of one shape unless broadcasting is allowed."""
    input, target = as_tensor(input), as_tensor(target)
    checks.check_float(op, "input", input)
    dtype = np.result_type(input.dtype, target.dtype) if backend.is_floating(target.dtype) else input.dtype
    input = input if input.dtype == dtype else input.to(dtype)
    target = target if target.dtype == dtype else target.to(dtype)
    if same_shape and input.shape != target.shape:
        raise ValueError(
            f"{op}: input shape {input.shape} and target shape {target.shape} "
            f"differ (broadcasting here is almost always a bug)"
        )
    return input, target


def _elementwise_weight(op: str, weight, input: Tensor, same_shape: bool):
    """``weight`` as an array of input's dtype (the input's shape, or broadcasting to it), or None."""
    if weight is None:
        return None
    w = array_of(weight).astype(input.dtype)
    if same_shape and w.shape != input.shape:
        raise ValueError(f"{op}: weight must have input's shape {input.shape}, got {w.shape}")
    if not same_shape and np.broadcast_shapes(w.shape, input.shape) != input.shape:
        raise ValueError(f"{op}: weight of shape {w.shape} must broadcast to input's shape {input.shape}")
    return w


def mse_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean", weight=None
) -> Tensor:
    """Mean squared error (input - target)^2, optionally times an elementwise ``weight`` ("mean"
    then divides by the weights' sum, PyTorch's rule).

    Args:
        input: the input tensor.
        target: the targets, ``input``'s shape.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).
        weight: a rescaling weight per element (broadcast to the input), or None.

    Shape: input, target (and weight) of one shape ``(*)`` (no broadcasting: here it is almost
    always a bug; PyTorch warns and broadcasts) -> ``()``, or ``(*)`` for "none".

    Raises:
        ValueError: shapes differ, or an unknown ``reduction``."""
    reduction = _reduction("mse_loss", size_average, reduce, reduction)
    input, target = _pair("mse_loss", input, target)
    w = _elementwise_weight("mse_loss", weight, input, same_shape=True)
    return LO.MSELoss.apply(input, target, reduction=reduction, weight=w, weighted_mean=True)


def l1_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean", weight=None
) -> Tensor:
    """Mean absolute error |input - target|, optionally times an elementwise ``weight`` ("mean"
    then divides by the weights' sum). The gradient at input = target is 0, as PyTorch's.

    Args:
        input: the input tensor.
        target: the targets, ``input``'s shape.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).
        weight: a rescaling weight per element (broadcast to the input), or None.

    Shape: input, target (and weight) of one shape ``(*)`` -> ``()``, or ``(*)`` for "none".

    Raises:
        ValueError: shapes differ, or an unknown ``reduction``."""
    reduction = _reduction("l1_loss", size_average, reduce, reduction)
    input, target = _pair("l1_loss", input, target)
    w = _elementwise_weight("l1_loss", weight, input, same_shape=True)
    return LO.L1Loss.apply(input, target, reduction=reduction, weight=w, weighted_mean=True)


def smooth_l1_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0
) -> Tensor:
    """Smooth L1 (Girshick, 2015): 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta, with
    d = input - target; beta = 0 is the L1 loss.

    Args:
        input: the input tensor.
        target: the targets, ``input``'s shape.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).
        beta: where the loss turns from quadratic to linear.

    Shape: input and target of one shape ``(*)`` -> ``()``, or ``(*)`` for "none".

    Raises:
        ValueError: shapes differ, an unknown ``reduction`` or a negative ``beta``."""
    reduction = _reduction("smooth_l1_loss", size_average, reduce, reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    input, target = _pair("smooth_l1_loss", input, target)
    return LO.SmoothL1Loss.apply(input, target, reduction=reduction, beta=float(beta))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0, weight=None) -> Tensor:
    """Huber loss (Huber, 1964): 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), with
    d = input - target (``delta`` times ``smooth_l1_loss`` with beta = delta), optionally
    times an elementwise ``weight`` ("mean" stays over the elements here, as PyTorch's, unlike
    ``mse_loss``'s and ``l1_loss``'s).

    Args:
        input: the input tensor.
        target: the targets, ``input``'s shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).
        delta: where the loss turns from quadratic to linear.
        weight: a rescaling weight per element (broadcast to the input), or None.

    Shape: input, target (and weight) of one shape ``(*)`` -> ``()``, or ``(*)`` for "none".

    Raises:
        ValueError: shapes differ, an unknown ``reduction`` or ``delta`` <= 0."""
    checks.check_reduction("huber_loss", reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    input, target = _pair("huber_loss", input, target)
    w = _elementwise_weight("huber_loss", weight, input, same_shape=True)
    return LO.HuberLoss.apply(input, target, reduction=reduction, weight=w, delta=float(delta))


def binary_cross_entropy(
    input: Tensor, target: Tensor, weight=None, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    """Binary cross-entropy of probabilities: -weight (t log p + (1 - t) log(1 - p)), each log
    clamped to >= -100 as PyTorch's (so p = 0 or 1 gives a finite loss). ``weight`` rescales
    each element (broadcast to input's shape); "mean" is over the elements.

    Args:
        input: probabilities in [0, 1].
        target: targets in [0, 1], ``input``'s shape.
        weight: a rescaling weight per element (broadcast to the input), or None.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).

    Shape: input and target of one shape ``(*)``, weight broadcasting to it -> ``()``, or
    ``(*)`` for "none".

    Raises:
        ValueError: shapes differ, input outside [0, 1], or an unknown ``reduction``."""
    reduction = _reduction("binary_cross_entropy", size_average, reduce, reduction)
    input, target = _pair("binary_cross_entropy", input, target)
    p = input.array
    if p.size and not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError(
            f"binary_cross_entropy: input must hold probabilities in [0, 1] (apply sigmoid, or use "
            f"binary_cross_entropy_with_logits), got values in [{p.min()}, {p.max()}]"
        )
    w = _elementwise_weight("binary_cross_entropy", weight, input, same_shape=False)
    return LO.BinaryCrossEntropy.apply(input, target, reduction=reduction, weight=w)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight=None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    pos_weight=None,
) -> Tensor:
    """Binary cross-entropy of logits, sigmoid and loss in one stable kernel:
    (1 - t) x + (1 + (pos_weight - 1) t) log(1 + exp(-x)), finite for any x. ``pos_weight``
    weighs the positive term, per class (broadcast along the last dim); ``weight`` rescales each
    element. Both are fixed factors (no gradient reaches them).

    Args:
        input: logits (any real numbers).
        target: targets in [0, 1], ``input``'s shape.
        weight: a rescaling weight per element (broadcast to the input), or None.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per element).
        pos_weight: a weight of the positive term per class, or None.

    Shape: input and target of one shape ``(*)``; weight and pos_weight broadcasting to it
    (pos_weight typically ``(C,)`` for input ``(N, C)``) -> ``()``, or ``(*)`` for "none".

    Raises:
        ValueError: shapes differ or do not broadcast, or an unknown ``reduction``."""
    reduction = _reduction("binary_cross_entropy_with_logits", size_average, reduce, reduction)
    input, target = _pair("binary_cross_entropy_with_logits", input, target)
    w = _elementwise_weight("binary_cross_entropy_with_logits", weight, input, same_shape=False)
    pw = None
    if pos_weight is not None:
        pw = array_of(pos_weight).astype(input.dtype)
        try:
            fits = np.broadcast_shapes(pw.shape, input.shape) == input.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"binary_cross_entropy_with_logits: pos_weight of shape {pw.shape} must broadcast to input's "
                f"shape {input.shape} (one per class, the last dim)"
            )
    return LO.BinaryCrossEntropyWithLogits.apply(input, target, reduction=reduction, weight=w, pos_weight=pw)


def kl_div(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False
) -> Tensor:
    """Kullback-Leibler divergence, pointwise target (log target - input) with ``input``
    log-probabilities and ``target`` probabilities (log-probabilities with ``log_target``); 0
    where target = 0. ``"batchmean"`` divides the sum by the batch size (input's first dim),
    which is KL's definition; ``"mean"`` divides by the element count (PyTorch's warning says so).
    input and target broadcast together, as PyTorch's.

    Args:
        input: log-probabilities.
        target: probabilities (log-probabilities with ``log_target``), broadcastable with ``input``.
        size_average: PyTorch's deprecated flag (with ``reduce``), mapped to ``reduction``.
        reduce: PyTorch's deprecated flag, mapped to ``reduction``.
        reduction: ``"mean"``, ``"batchmean"`` (KL's definition), ``"sum"`` or ``"none"``.
        log_target: ``target`` holds log-probabilities.

    Shape: input ``(N, *)``, target broadcasting with it -> ``()``, or the broadcast shape for
    "none".

    Raises:
        ValueError: shapes that do not broadcast, or an unknown ``reduction``."""
    reduction = _reduction("kl_div", size_average, reduce, reduction, allowed=checks.REDUCTIONS + ("batchmean",))
    if reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support size. "
            "'batchmean' divides only by the batch size, and aligns with the KL div math definition.",
            stacklevel=2,
        )
    input, target = _pair("kl_div", input, target, same_shape=False)
    try:
        np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(
            f"kl_div: input shape {input.shape} and target shape {target.shape} do not broadcast"
        ) from None
    return LO.KLDiv.apply(input, target, reduction=reduction, log_target=bool(log_target))


# --- convolution and pooling -----------------------------------------------------------------


def _images(op: str, input, n: int) -> tuple:
    """(input as a 4-dim ``(N, C, H, W)`` tensor, batched?): a 1-dim op's ``(N, C, L)`` becomes
    ``(N, C, 1, L)``, an unbatched input gets N = 1."""
    t = as_tensor(input)
    checks.check_float(op, "input", t)
    layouts = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)"}[n]
    if t.ndim not in (n + 1, n + 2):
        raise ValueError(f"{op}: input must be {layouts}, got shape {t.shape}")
    batched = t.ndim == n + 2
    if not batched:
        t = t.unsqueeze(0)
    if n == 1:
        t = t.unsqueeze(2)
    return t, batched


def _restore(out: Tensor, n: int, batched: bool) -> Tensor:
    """The inverse of ``_images`` on an op's output."""
    if n == 1:
        out = out.squeeze(2)
    return out if batched else out.squeeze(0)


def _conv(op: str, n: int, input, weight, bias, stride, padding, dilation, groups) -> Tensor:
    x, batched = _images(op, input, n)
    w = as_tensor(weight)
    checks.check_conv_weight(op, x, w, bias, groups, n)
    stride = checks.int_tuple(op, "stride", stride, n)
    dilation = checks.int_tuple(op, "dilation", dilation, n)
    pads = checks.conv_padding(op, padding, tuple(w.shape[2:]), stride, dilation)
    if n == 1:
        w = w.unsqueeze(2)
        stride, dilation, pads = (1,) + stride, (1,) + dilation, ((0, 0),) + pads
    for size, k, d, (before, after) in zip(x.shape[2:], w.shape[2:], dilation, pads):
        if size + before + after < d * (k - 1) + 1:
            raise ValueError(
                f"{op}: the kernel {tuple(w.shape[2:])} (dilation {dilation}) does not fit the padded input "
                f"{tuple(x.shape[2:])} + padding {pads}"
            )
    params = (x, w) if bias is None else (x, w, as_tensor(bias))
    out = C.Conv2d.apply(*params, stride=stride, padding=pads, dilation=dilation, groups=groups)
    return _restore(out, n, batched)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation over sequences (PyTorch's ``F.conv1d``): the 2-D kernel with H = 1.

    Args:
        stride, dilation: an int or a 1-tuple. padding: an int, a 1-tuple, ``"valid"`` (none)
        or ``"same"`` (the output as long as the input; stride 1 only; an odd total puts the
        extra zero on the right). groups: channels split into that many independent groups.

    Shape: input ``(N, C_in, L)`` or ``(C_in, L)``, weight ``(C_out, C_in / groups, K)``, bias
    ``(C_out,)`` -> ``(N, C_out, L_out)``, L_out = (L + 2 padding - dilation (K - 1) - 1) /
    stride + 1, rounded down.

    Raises:
        ValueError: shapes or groups that do not fit, bad stride, padding or dilation.
        TypeError: integer input, or dtypes that differ."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation over images (PyTorch's ``F.conv2d``; LeCun et al., 1998), im2col and
    one batched GEMM with a hand-derived backward (``numformer.ops.conv``).

    Args:
        stride, dilation: an int or a pair. padding: an int, a pair, ``"valid"`` (none) or
        ``"same"`` (the output the input's size; stride 1 only; an odd total puts the extra
        zero at the bottom and right). groups: channels split into that many independent groups
        (``groups = C_in``: depthwise).

    Shape: input ``(N, C_in, H, W)`` or ``(C_in, H, W)``, weight
    ``(C_out, C_in / groups, KH, KW)``, bias ``(C_out,)`` -> ``(N, C_out, H_out, W_out)``,
    H_out = (H + 2 padding - dilation (KH - 1) - 1) / stride + 1, rounded down.

    Raises:
        ValueError: shapes or groups that do not fit, bad stride, padding or dilation.
        TypeError: integer input, or dtypes that differ."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def _max_pool(op, n, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x, batched = _images(op, input, n)
    geometry = checks.pool_geometry(op, x.shape[4 - n :], n, kernel_size, stride, padding, dilation, ceil_mode)
    kernel, stride, padding, dilation, out_size = geometry
    if n == 1:  # the 2-D kernel with H = 1: one row, no padding above or below
        kernel, stride, dilation, out_size = ((1,) + v for v in (kernel, stride, dilation, out_size))
        padding = (0,) + padding
    result = C.MaxPool2d.apply(
        x,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        out_hw=out_size,
        return_indices=bool(return_indices),
        ceil_mode=bool(ceil_mode),
    )
    if return_indices:
        return _restore(result[0], n, batched), _restore(result[1], n, batched)
    return _restore(result, n, batched)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The maximum over each window of a sequence (PyTorch's ``F.max_pool1d``); the 2-D kernel
    with H = 1. Arguments as ``max_pool2d``'s, each an int or a 1-tuple.

    Args:
        input: the input tensor.
        kernel_size: the window's size (an int, or one per spatial dim).
        stride: the step between windows (default: ``kernel_size``).
        padding: implicit padding on each side.
        dilation: the spacing between window elements.
        ceil_mode: round the output size up instead of down.
        return_indices: also return the positions of the maxima.

    Shape: ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, L_out)``; indices (``return_indices``) int64,
    into L.

    Raises:
        ValueError: a kernel, stride or dilation below 1, padding over half the kernel, or no
        output."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The maximum over each window (PyTorch's ``F.max_pool2d``): padding is -inf; the first
    maximum of a window wins and NaN beats any number (PyTorch's rules); the gradient goes to
    each window's winner.

    Args:
        input: the images.
        kernel_size: the window's size, an int or a pair.
        stride: the step between windows (default: ``kernel_size``).
        padding: -inf padding on each side, at most half the (dilated) kernel.
        dilation: the spacing between window elements.
        ceil_mode: round the output size up (a last partial window).
        return_indices: also return each winner's flat index into its channel's H W.

    Shape: ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, H_out, W_out)``, H_out =
    (H + 2 padding - dilation (kernel - 1) - 1) / stride + 1, rounded down (up with
    ``ceil_mode``); indices int64 of the output's shape.

    Raises:
        ValueError: a kernel, stride or dilation below 1, padding over half the kernel, or no
        output."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _avg_pool(op, n, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x, batched = _images(op, input, n)
    kernel, stride, padding, _, out_size = checks.pool_geometry(
        op, x.shape[4 - n :], n, kernel_size, stride, padding, 1, ceil_mode, average=True
    )
    if divisor_override is not None and divisor_override == 0:
        raise ValueError(f"{op}: divisor_override must not be 0")
    if n == 1:
        kernel, stride, out_size = ((1,) + v for v in (kernel, stride, out_size))
        padding = (0,) + padding
    out = C.AvgPool2d.apply(
        x,
        kernel=kernel,
        stride=stride,
        padding=padding,
        out_hw=out_size,
        count_include_pad=bool(count_include_pad),
        divisor_override=divisor_override,
        ceil_mode=bool(ceil_mode),
    )
    return _restore(out, n, batched)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """The mean over each window of a sequence (PyTorch's ``F.avg_pool1d``). Arguments as
    ``avg_pool2d``'s, each an int or a 1-tuple.

    Args:
        input: the input tensor.
        kernel_size: the window's size (an int, or one per spatial dim).
        stride: the step between windows (default: ``kernel_size``).
        padding: implicit padding on each side.
        ceil_mode: round the output size up instead of down.
        count_include_pad: count padded zeros in the average.

    Shape: ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, L_out)``.

    Raises:
        ValueError: a kernel or stride below 1, padding over half the kernel, or no output."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(
    input: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """The mean over each window (PyTorch's ``F.avg_pool2d``): zero padding, counted in the
    divisor when ``count_include_pad``; ``divisor_override`` replaces the divisor.

    Args:
        input: the input tensor.
        kernel_size: the window's size (an int, or one per spatial dim).
        stride: the step between windows (default: ``kernel_size``).
        padding: implicit padding on each side.
        ceil_mode: round the output size up instead of down.
        count_include_pad: count padded zeros in the average.
        divisor_override: divide by this instead of the window's size, or None.

    Shape: ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, H_out, W_out)`` (sizes as
    ``max_pool2d``'s, dilation 1).

    Raises:
        ValueError: a kernel or stride below 1, padding over half the kernel, no output, or a
        zero divisor."""
    return _avg_pool(
        "avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


def _adaptive_matrix(size: int, out: int, dtype) -> Tensor:
    """``(out, size)``: row i averages input positions floor(i size / out) to
    ceil((i + 1) size / out) - 1, PyTorch's adaptive windows."""
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    j = np.arange(size)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return Tensor(xp.asarray(inside / (end - start)[:, None], dtype=dtype))


def _adaptive_avg_pool(op: str, n: int, input, output_size) -> Tensor:
    x, batched = _images(op, input, n)
    sizes = x.shape[4 - n :]
    wanted = (output_size,) * n if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(wanted) != n:
        raise ValueError(f"{op}: output_size must be an int or {n} of them, got {output_size!r}")
    out = tuple(size if o is None else o for size, o in zip(sizes, wanted))
    if any(not isinstance(o, (int, np.integer)) or o < 1 for o in out):
        raise ValueError(f"{op}: output_size must be positive ints (or None: the input's size), got {output_size!r}")
    if n == 2:
        x = _adaptive_matrix(sizes[0], out[0], x.dtype) @ x  # (Ho, H) @ (N, C, H, W)
    x = x @ _adaptive_matrix(sizes[-1], out[-1], x.dtype).T  # (..., W) @ (W, Wo)
    return _restore(x, n, batched)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """Mean pooling to a fixed length (PyTorch's ``F.adaptive_avg_pool1d``): window i covers
    floor(i L / out) to ceil((i + 1) L / out); a product with a constant pooling matrix.

    Args:
        input: the input tensor.
        output_size: the output's spatial size (an int, or one per dim; None keeps a dim).

    Shape: ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, output_size)``.

    Raises:
        ValueError: an output size below 1."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Mean pooling to a fixed size (PyTorch's ``F.adaptive_avg_pool2d``; (1, 1) is global
    average pooling): window (i, j) covers rows floor(i H / Ho) to ceil((i + 1) H / Ho) and
    likewise columns; two products with constant pooling matrices, Ah x Aw^T.

    Args:
        input: the input tensor.
        output_size: the output's spatial size (an int, or one per dim; None keeps a dim).

    Shape: ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, Ho, Wo)``; ``output_size`` an int, a
    pair, or None in a place to keep that size.

    Raises:
        ValueError: an output size below 1."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


# --- padding, one-hot, normalisation -----------------------------------------------------------


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or, with negative amounts, crop) the last dims, PyTorch's ``F.pad``: ``pad`` lists
    (before, after) amounts from the last dim backwards, ``(left, right, top, bottom, ...)``.

    Args:
        mode: "constant" (``value``, default 0, any number of dims), "reflect" (mirrored about
            the edge, which is not repeated), "replicate" (the edge repeated) or "circular"
            (wrapped): these three pad the last 1, 2 or 3 dims of a batched or unbatched input.

    Shape: ``(*, d_k, ..., d_1)`` -> each padded dim grown by its two amounts; dtype kept.

    Raises:
        ValueError: an odd-length ``pad``, more amounts than dims, an unknown mode, a value with
        a mode that takes none, a negative amount outside constant mode, a reflection at least
        as long as its dim, or a dim padded below 0. NotImplementedError: a non-constant mode
        on dims it does not support (as PyTorch)."""
    t = as_tensor(input)
    pads = checks.pad_amounts(t.shape, pad, mode, value)
    return Pad.apply(t, pads=pads, mode=mode, value=0 if value is None else value)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """Class indices as one-hot rows: ``out[..., i] = 1`` where ``tensor == i`` (PyTorch's
    ``F.one_hot``); ``num_classes=-1`` takes the largest index plus one. No gradient.

    Args:
        tensor: integer class indices.
        num_classes: the number of classes (-1: one more than the largest index).

    Shape: integer ``(*)`` -> int64 ``(*, num_classes)``.

    Raises:
        RuntimeError: a non-integer input, an index < 0 or >= num_classes, or an empty input
        without ``num_classes`` (PyTorch's errors)."""
    idx = array_of(tensor)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"one_hot: tensor must hold integer class indices, got dtype {idx.dtype}")
    if num_classes == -1:
        if idx.size == 0:
            raise RuntimeError("one_hot: can not infer the number of classes from an empty tensor: pass num_classes")
        num_classes = int(idx.max()) + 1
    if idx.size and idx.min() < 0:
        raise RuntimeError(f"one_hot: class values must be non-negative, got {int(idx.min())}")
    if idx.size and idx.max() >= num_classes:
        raise RuntimeError(
            f"one_hot: class values must be smaller than num_classes={num_classes}, got {int(idx.max())}"
        )
    return Tensor((idx[..., None] == xp.arange(num_classes)).astype(np.int64))


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    """``input / max(||input||_p, eps)`` along ``dim`` (PyTorch's ``F.normalize``): unit vectors,
    and a vector shorter than ``eps`` divided by eps instead. One primitive with its backward.

    Args:
        input: the input tensor.
        p: the order of the norm.
        dim: the dimension normalised.
        eps: the smallest norm divided by.
        out: must be None (numformer takes no ``out=``).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input, or ``out=`` (not supported). ValueError: ``dim`` out of range,
        or p not a finite number > 0."""
    if out is not None:
        raise TypeError("normalize: out= is not supported; use the returned tensor")
    t = as_tensor(input)
    checks.check_float("normalize", "input", t)
    if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
        raise ValueError(f"normalize: p must be a finite number > 0, got {p!r}")
    return Normalize.apply(t, p=float(p), axis=checks.check_dim("normalize", dim, t.ndim), eps=float(eps))


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Cosine of the angle between x1 and x2 along ``dim`` (PyTorch's ``F.cosine_similarity``):
    sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps)), x1 and x2 broadcast together.

    Args:
        x1: the first tensor.
        x2: the second tensor, broadcastable with ``x1``.
        dim: the dimension along which to compare.
        eps: the smallest norm used (avoids division by zero).

    Shape: x1 and x2 broadcasting to ``(*, D, *)`` -> ``(*, *)`` (``dim`` removed).

    Raises:
        TypeError: integer inputs. ValueError: shapes that do not broadcast, ``dim`` out of
        range."""
    a, b = as_tensor(x1), as_tensor(x2)
    checks.check_float("cosine_similarity", "x1", a)
    checks.check_float("cosine_similarity", "x2", b)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"cosine_similarity: x1 shape {a.shape} and x2 shape {b.shape} do not broadcast") from None
    axis = checks.check_dim("cosine_similarity", dim, len(shape))
    a = a if a.shape == shape else a.expand(shape)
    b = b if b.shape == shape else b.expand(shape)
    unit_a = Normalize.apply(a, p=2.0, axis=axis, eps=float(eps))
    unit_b = Normalize.apply(b, p=2.0, axis=axis, eps=float(eps))
    return (unit_a * unit_b).sum(axis)


# --- attention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionKernel:
    """Which attention kernel ``scaled_dot_product_attention`` runs (``attention_kernel``).

    ``kernel``: "plain" materialises the (L, S) scores; "blocked" is flash attention's algorithm
    (keys in blocks, online softmax); "auto" takes the blocked kernel when no weights are asked
    for and either the plain one's score matrix would exceed ``threshold_bytes`` or the
    attention is causal with L and S of at least ``causal_length`` (the blocked kernel skips the
    tiles above the diagonal, about half the work). ``block_q`` x ``block_k`` is its tile: 256 x
    512 keeps a block's scores for 8 heads (4 MiB) near cache.

    Args:
        kernel: ``"auto"``, ``"plain"`` or ``"blocked"``.
        threshold_bytes: with ``"auto"``: the score-matrix size from which the blocked kernel runs.
        causal_length: with ``"auto"``: the causal length from which the blocked kernel runs.
        block_q: the blocked kernel's query block.
        block_k: the blocked kernel's key block."""

    kernel: str = "auto"
    threshold_bytes: int = 128 << 20
    causal_length: int = 1024
    block_q: int = 256
    block_k: int = 512

    def blocked(self, batch, L: int, S: int, itemsize: int, need_weights: bool, is_causal: bool) -> bool:
        """Whether attention of these sizes runs the blocked kernel."""
        if self.kernel == "plain" or need_weights:
            return False
        return (
            self.kernel == "blocked"
            or math.prod(batch) * L * S * itemsize > self.threshold_bytes
            or (is_causal and min(L, S) >= self.causal_length)
        )


_KERNEL: contextvars.ContextVar[AttentionKernel] = contextvars.ContextVar("attention_kernel", default=AttentionKernel())  # noqa: B039 - frozen


@contextlib.contextmanager
def attention_kernel(
    kernel: str = "auto",
    threshold_bytes: int | None = None,
    block_q: int | None = None,
    block_k: int | None = None,
    causal_length: int | None = None,
):
    """Choose the attention kernel inside a ``with`` block (as ``torch.nn.attention.sdpa_kernel``);
    see ``AttentionKernel`` for the settings. The choice is a context variable: it holds for
    this thread (or task) and the block only.

    Args:
        kernel: ``"auto"`` (chosen by size), ``"plain"`` (the (L, S) scores) or ``"blocked"`` (online softmax
            over key blocks).
        threshold_bytes: with ``"auto"``: the score-matrix size from which the blocked kernel is taken (None:
            keep the current value).
        block_q: the blocked kernel's query block (None: keep).
        block_k: the blocked kernel's key block (None: keep).
        causal_length: with ``"auto"``: the causal length from which the blocked kernel is taken (None: keep).

    Raises:
        ValueError: an unknown kernel, or a size below 1."""
    if kernel not in ("auto", "plain", "blocked"):
        raise ValueError(f"attention_kernel: kernel must be 'auto', 'plain' or 'blocked', got {kernel!r}")
    sizes = {"threshold_bytes": threshold_bytes, "block_q": block_q, "block_k": block_k, "causal_length": causal_length}
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"attention_kernel: {key} must be >= 1, got {value}")
    chosen = dataclasses.replace(_KERNEL.get(), kernel=kernel, **{k: v for k, v in sizes.items() if v is not None})
    token = _KERNEL.set(chosen)
    try:
        yield chosen
    finally:
        _KERNEL.reset(token)


def _attention_inputs(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, op):
    """The checked inputs of attention: (q, k, v, options for the kernel, batch dims, GQA group)."""
    q, k, v = as_tensor(query), as_tensor(key), as_tensor(value)
    for name, t in (("query", q), ("key", k), ("value", v)):
        checks.check_float(op, name, t)
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must have shape (..., seq, features), got {t.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: query and key must share the last dim, got query {q.shape} and key {k.shape}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: key and value must share the sequence dim, got key {k.shape} and value {v.shape}")
    group = 1
    if enable_gqa and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        if k.shape[-3] != v.shape[-3] or q.shape[-3] % k.shape[-3]:
            raise ValueError(
                f"{op}: with enable_gqa, query's heads {q.shape[-3]} must be a multiple of key's and value's"
            )
        group = q.shape[-3] // k.shape[-3]  # query heads h * group + j read key head h
        q = q.reshape(q.shape[:-3] + (k.shape[-3], group) + q.shape[-2:])
        k, v = k.unsqueeze(-3), v.unsqueeze(-3)
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(
            f"{op}: batch dims of query {q.shape}, key {k.shape} and value {v.shape} do not broadcast"
        ) from None
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    if is_causal and attn_mask is not None:
        raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
    L, S = q.shape[-2], k.shape[-2]
    options = {"bool_mask": None, "float_mask": None, "is_causal": is_causal, "dropout_p": dropout_p}
    if attn_mask is not None:
        m = array_of(attn_mask)
        if group > 1 and m.ndim >= 3:
            # the mask's heads dim (-3) must follow the queries' split into (key heads, group):
            # H heads become (H / G, G); one head broadcast over all stays (1, 1), never (1, G)
            # aligned with the batch
            H = q.shape[-4] * group
            if m.shape[-3] not in (1, H):
                raise ValueError(
                    f"{op}: with enable_gqa, attn_mask's heads dim (-3) must be 1 or query's heads {H}, "
                    f"got attn_mask of shape {m.shape}"
                )
            heads = (1, 1) if m.shape[-3] == 1 else (H // group, group)
            m = m.reshape(m.shape[:-3] + heads + m.shape[-2:])
        try:
            batch = np.broadcast_shapes(m.shape[:-2], batch)
            np.broadcast_shapes(m.shape, batch + (L, S))
        except ValueError:
            raise ValueError(
                f"{op}: attn_mask of shape {m.shape} does not broadcast to (..., L, S) = {batch + (L, S)}"
            ) from None
        if m.dtype == np.bool_:
            options["bool_mask"] = m
        elif np.issubdtype(m.dtype, np.floating):
            options["float_mask"] = m.astype(q.dtype, copy=False)
        else:
            raise TypeError(f"{op}: attn_mask must be bool or floating, got dtype {m.dtype}")
    options["scale"] = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    options["rng"] = backend.generator() if dropout_p > 0 else None
    return q, k, v, options, batch, group


def scaled_dot_product_attention(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(Q K^T * scale + mask) V over all leading (batch, head) dims at once (Vaswani et
    al., 2017, eq. 1; PyTorch's ``F.scaled_dot_product_attention``).

    Large inputs go to the blocked (flash) kernel, which never holds the full score matrix
    (Dao et al., 2022); see ``attention_kernel``. For the weights as well, see
    ``scaled_dot_product_attention_with_weights``.

    Args:
        query, key, value: the projected queries, keys and values.
        attn_mask: boolean, True marking the (query, key) pairs that take part (PyTorch's
            convention here), or floating, added to the scores.
        dropout_p: dropout on the weights (0 in evaluation).
        is_causal: mask the keys after each query.
        scale: the scores' factor; default 1/sqrt(E).
        enable_gqa: grouped-query attention: query's heads dim (-3) may be a multiple of key's
            and value's; query head ``h * G + j`` reads key head ``h`` (G = the ratio).

    Returns:
        The output. A query whose keys are all masked gets a zero output and zero gradients
        (never NaN).

    Shape:
        query ``(..., L, E)``, key ``(..., S, E)``, value ``(..., S, Ev)`` -> ``(..., L, Ev)``;
        ``attn_mask`` broadcasts to ``(..., L, S)``.

    Raises:
        ValueError: shapes that do not fit, dropout_p outside [0, 1), a mask with is_causal.
        TypeError: integer inputs, or a mask neither boolean nor floating.
    """
    op = "scaled_dot_product_attention"
    q, k, v, options, batch, group = _attention_inputs(
        query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, op
    )
    kernel = _KERNEL.get()
    if kernel.blocked(batch, q.shape[-2], k.shape[-2], q.dtype.itemsize, False, is_causal):
        out = BlockedAttention.apply(q, k, v, **options, block_q=kernel.block_q, block_k=kernel.block_k)
    else:
        out = ScaledDotProductAttention.apply(q, k, v, **options)
    return _ungroup(out, group)


def scaled_dot_product_attention_with_weights(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[Tensor, Tensor]:
    """``scaled_dot_product_attention`` and its weights, always both (one kernel call): the
    weights are in the graph, so a loss on them (attention supervision, an entropy penalty)
    reaches query and key. Arguments as ``scaled_dot_product_attention``'s.

    Args:
        query: ``(N, ..., L, E)``.
        key: ``(N, ..., S, E)``.
        value: ``(N, ..., S, Ev)``.
        attn_mask: boolean (True = take part) or floating (added to the scores), broadcastable to ``(N, ...,
            L, S)``, or None.
        dropout_p: dropout on the weights (pass 0 outside training).
        is_causal: query i attends to keys 0..i only (no ``attn_mask`` then).
        scale: the scores' factor (default 1 / sqrt(E)).
        enable_gqa: grouped-query attention: fewer key/value heads than query heads.

    Returns:
        ``(output, weights)``: weights after dropout.

    Shape:
        output ``(..., L, Ev)``, weights ``(..., L, S)``.

    Raises:
        As ``scaled_dot_product_attention``."""
    op = "scaled_dot_product_attention_with_weights"
    q, k, v, options, _, group = _attention_inputs(
        query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, op
    )
    out, weights = ScaledDotProductAttention.apply(q, k, v, **options, need_weights=True)
    return _ungroup(out, group), _ungroup(weights, group)


def _ungroup(t: Tensor, group: int) -> Tensor:
    """Merge grouped-query attention's (..., Hkv, G, L, X) back into (..., H, L, X)."""
    return t if group == 1 else t.reshape(t.shape[:-4] + (t.shape[-4] * group,) + t.shape[-2:])


def sinusoidal_positional_encoding(max_len: int, d_model: int, dtype=None) -> np.ndarray:
    """The seed's table (section 4; Vaswani et al., 2017, 3.5): PE[pos, 2i] =
    sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)), computed in float64.

    Args:
        max_len: the number of positions.
        d_model: the width (even).
        dtype: the table's dtype (default: the default floating dtype).

    Shape: -> an array ``(max_len, d_model)`` of ``dtype`` (default: the default dtype).

    Raises:
        ValueError: ``max_len`` or ``d_model`` not positive."""
    if max_len <= 0 or d_model <= 0:
        raise ValueError(
            f"sinusoidal_positional_encoding: max_len and d_model must be positive, got {max_len} and {d_model}"
        )
    dtype = backend.get_default_dtype() if dtype is None else backend.as_dtype(dtype)
    position = xp.arange(max_len, dtype=np.float64)[:, None]
    div_term = xp.exp(xp.arange(0, d_model, 2, dtype=np.float64) * -(math.log(10000.0) / d_model))
    pe = xp.zeros((max_len, d_model), dtype=np.float64)
    pe[:, 0::2] = xp.sin(position * div_term)
    pe[:, 1::2] = xp.cos(position * div_term[: d_model // 2])
    return pe.astype(dtype)


# --- the Llama family's kernels: SiLU, SwiGLU, RMS normalisation, rotary embedding -----------


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """SiLU (swish): x * sigmoid(x) elementwise (Elfwing et al., 2018), one fused kernel with its
    backward s (1 + x (1 - s)), s = sigmoid(x). ``inplace`` is accepted for PyTorch's signature;
    numformer's tensors are never overwritten, so a new tensor comes back either way.

    Args:
        input: the input tensor.
        inplace: write the result into ``input`` (recorded in the graph, as PyTorch's in-place ops).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input."""
    input = as_tensor(input)
    checks.check_float("silu", "input", input)
    return Silu.apply(input)


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
    """``silu(gate) * up`` in one kernel: the gated product of a SwiGLU feed-forward layer
    (Shazeer, 2020; Llama's MLP ``down_proj(silu(gate_proj(x)) * up_proj(x))``). PyTorch has no
    such function (it runs the two ops); the backward is written out in ``numformer.ops.gated``.

    Args:
        gate: the gate branch, passed through SiLU.
        up: the linear branch, ``gate``'s shape.

    Shape: gate and up ``(*)`` of one shape and dtype (no broadcasting) -> ``(*)``.

    Raises:
        ValueError: shapes or dtypes differ. TypeError: integer input."""
    gate, up = as_tensor(gate), as_tensor(up)
    checks.check_float("swiglu", "gate", gate)
    if gate.shape != up.shape or gate.dtype != up.dtype:
        raise ValueError(
            f"swiglu: gate and up must have one shape and dtype, got {gate.shape} {gate.dtype} "
            f"and {up.shape} {up.dtype}"
        )
    return SwiGLU.apply(gate, up)


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """Root-mean-square normalisation over the trailing ``normalized_shape`` dims, then
    ``* weight`` (Zhang and Sennrich, 2019): x / sqrt(mean(x^2) + eps) * weight, no mean
    subtracted and no bias. One fused kernel; its backward
    dx = rstd (dxhat - xhat mean(dxhat xhat)) is in ``numformer.ops.normalization``.

    ``eps`` defaults to the machine epsilon of input's dtype, as PyTorch's ``F.rms_norm``.

    Args:
        input: the input tensor.
        normalized_shape: the trailing shape to normalise over (an int for the last dim).
        weight: the scale over ``normalized_shape``, or None.
        eps: added to the mean square (None: the dtype's machine epsilon).

    Shape: input ``(*, *normalized_shape)``, weight ``normalized_shape`` -> input's shape and dtype.

    Raises:
        ValueError: input does not end with ``normalized_shape``, or a weight of another shape.
        TypeError: integer input."""
    input = as_tensor(input)
    shape, params = checks.layer_norm_params("rms_norm", input, normalized_shape, weight, None)
    eps = float(np.finfo(input.dtype).eps) if eps is None else eps
    return RMSNorm.apply(input, *params, ndim=len(shape), eps=eps, has_weight=weight is not None)


def apply_rotary_emb(input: Tensor, cos, sin) -> Tensor:
    """Rotate pairs of features by position-dependent angles (RoPE, Su et al., 2021), in the
    "rotate half" layout of GPT-NeoX and Llama: out = input * cos + rotate_half(input) * sin,
    rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]). One kernel; the backward rotates back.
    ``cos`` and ``sin`` are constants (arrays or tensors, not differentiated) in Hugging Face's
    layout: the angles of the half repeated, ``cat(angles, angles)``.

    Args:
        input: queries or keys, the features last.
        cos: the cosines of the positions' angles, broadcastable to ``input``.
        sin: the sines, shaped as ``cos``.

    Shape: input ``(..., L, D)``, D even; cos and sin broadcastable to it (``(N, 1, L, D)`` for
    input ``(N, H, L, D)``) -> input's shape and dtype.

    Raises:
        ValueError: an odd D, or cos/sin that do not broadcast to input's shape.
        TypeError: integer input."""
    input = as_tensor(input)
    checks.check_float("apply_rotary_emb", "input", input)
    cos, sin = array_of(cos), array_of(sin)
    if input.ndim == 0 or input.shape[-1] % 2:
        raise ValueError(f"apply_rotary_emb: input's last dim must be even, got shape {input.shape}")
    for name, table in (("cos", cos), ("sin", sin)):
        lead = input.ndim - table.ndim
        if lead < 0 or any(t not in (1, n) for t, n in zip(table.shape, input.shape[lead:])):
            raise ValueError(f"apply_rotary_emb: {name} of shape {table.shape} does not broadcast to {input.shape}")
    if cos.dtype != input.dtype or sin.dtype != input.dtype:
        cos, sin = cos.astype(input.dtype), sin.astype(input.dtype)
    return Rotary.apply(input, cos=cos, sin=sin)
