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
from dataclasses import dataclass

import numpy as np

from numformer import backend
from numformer.backend import xp
from numformer.nn import checks
from numformer.ops import elementwise as E
from numformer.ops import linalg as LA
from numformer.ops.attention import BlockedAttention, ScaledDotProductAttention
from numformer.ops.dropout import Dropout
from numformer.ops.embedding import Embedding
from numformer.ops.gated import Silu, SwiGLU
from numformer.ops.loss import CrossEntropy, MSELoss
from numformer.ops.normalization import LayerNorm, RMSNorm
from numformer.ops.rotary import Rotary
from numformer.ops.softmax import LogSoftmax, Softmax
from numformer.tensor import Tensor, array_of, as_tensor

# --- activations -----------------------------------------------------------------------------


def relu(input: Tensor) -> Tensor:
    """max(input, 0) elementwise; NaN stays NaN.

    Shape: ``(*)`` -> ``(*)``, dtype kept."""
    return E.Relu.apply(as_tensor(input))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU (Hendrycks and Gimpel, 2016), exact (``"none"``: x * Phi(x)) or the tanh
    approximation (``"tanh"``, GPT-2's).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``approximate`` not "none" or "tanh"."""
    input = as_tensor(input)
    checks.check_gelu(input, approximate)
    return E.Gelu.apply(input, approximate=approximate)


def tanh(input: Tensor) -> Tensor:
    """tanh elementwise.

    Shape: ``(*)`` -> ``(*)``, dtype kept."""
    return E.Tanh.apply(as_tensor(input))


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-input)) elementwise.

    Shape: ``(*)`` -> ``(*)``, dtype kept."""
    return E.Sigmoid.apply(as_tensor(input))


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    """Softmax along ``dim``: exp(x - max) / sum(exp(x - max)), one fused kernel with its
    backward dx = y (g - sum(g y)). A row that is all ``-inf`` gives zeros (PyTorch gives NaN
    there); stable for logits of any finite magnitude.

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``dim`` out of range."""
    input = as_tensor(input)
    checks.check_float("softmax", "input", input)
    return Softmax.apply(input, axis=checks.check_dim("softmax", dim, input.ndim))


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(input)) along ``dim``, computed as x - max - log(sum(exp(x - max))).

    Shape: ``(*)`` -> ``(*)``, floating dtype kept.

    Raises:
        TypeError: integer input. ValueError: ``dim`` out of range."""
    input = as_tensor(input)
    checks.check_float("log_softmax", "input", input)
    return LogSoftmax.apply(input, axis=checks.check_dim("log_softmax", dim, input.ndim))


# --- layers as functions ---------------------------------------------------------------------


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` (one fused primitive, PyTorch's ``F.linear``).

    Shape: input ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` -> ``(*, out)``.

    Raises:
        ValueError: input's last dim is not ``in``. TypeError: dtypes differ."""
    return _linear("linear", input, weight, bias, relu=False)


def linear_relu(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``relu(linear(input, weight, bias))`` in one kernel: each thread applies the ReLU to its
    block of the GEMM's result while it is in cache (no second pass, no second array).

    Shape: input ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` -> ``(*, out)``.

    Raises:
        ValueError: input's last dim is not ``in``. TypeError: dtypes differ."""
    return _linear("linear_relu", input, weight, bias, relu=True)


def _linear(name: str, input: Tensor, weight: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
    checks.check_linear(name, input, weight)
    params = (weight,) if bias is None else (weight, bias)
    return LA.Linear.apply(as_tensor(input), *params, relu=relu)


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


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout (Srivastava et al., 2014): zero each element with probability ``p`` and
    scale the rest by 1/(1-p), so the expectation is unchanged; the identity when not
    ``training`` or p = 0. The mask comes from ``manual_seed``'s generator, in fixed blocks, so
    it is the same for any thread count.

    Shape: ``(*)`` -> ``(*)``.

    Raises:
        ValueError: ``p`` outside [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    return Dropout.apply(input, p=p, rng=backend.generator())


def embedding(input, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` at integer indices ``input``; the ``padding_idx`` row gets no gradient.

    Shape: input ``(*)`` integers, weight ``(num_embeddings, E)`` -> ``(*, E)``.

    Raises:
        TypeError: indices not integers. IndexError: an index outside [0, num_embeddings).
        ValueError: ``padding_idx`` out of range."""
    idx = array_of(input)
    n = weight.shape[0]
    checks.check_indices(idx, n)
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx must be in [-{n}, {n}), got {padding_idx}")
        padding_idx %= n
    return Embedding.apply(weight, indices=idx, padding_idx=padding_idx)


# --- losses ----------------------------------------------------------------------------------


def cross_entropy(
    input: Tensor,
    target,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between logits and class indices or class probabilities (PyTorch's
    ``F.cross_entropy``, one fused kernel with its backward), with ``ignore_index``,
    ``label_smoothing`` and per-class ``weight``. Finite for logits of any finite size. Mean over
    no kept target gives 0 (PyTorch gives NaN).

    Shape: input ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; target integer class indices
    ``(N,)``, ``()`` or ``(N, d1, ...)``, or floating probabilities of input's shape; weight
    ``(C,)``. Output ``()`` for ``reduction`` "mean" and "sum", the target's shape for "none".

    Raises:
        ValueError: shapes that do not fit, ``reduction`` or ``label_smoothing`` out of range.
        IndexError: a class index outside [0, C). TypeError: a target neither integer nor
        floating."""
    input = as_tensor(input)
    checks.check_float("cross_entropy", "input", input)
    checks.check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    t = array_of(target)
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have at least 1 dim (classes), got a scalar")
    C = input.shape[1] if input.ndim > 1 else input.shape[0]
    if np.issubdtype(t.dtype, np.floating):
        if t.shape != input.shape:
            raise ValueError(f"cross_entropy: probability target must have input's shape {input.shape}, got {t.shape}")
        t = t.astype(input.dtype, copy=False)
    elif np.issubdtype(t.dtype, np.integer):
        expected = (input.shape[0],) + input.shape[2:] if input.ndim > 1 else ()
        if t.shape != expected:
            raise ValueError(
                f"cross_entropy: class-index target must have shape {expected} for "
                f"input shape {input.shape}, got {t.shape}"
            )
        bad = (t != ignore_index) & ((t < 0) | (t >= C))
        if bad.any():
            raise IndexError(
                f"cross_entropy: target values must be in [0, {C}) or "
                f"ignore_index={ignore_index}, got {t[bad].reshape(-1)[0]}"
            )
    else:
        raise TypeError(f"cross_entropy: target must be integer indices or floating probabilities, got dtype {t.dtype}")
    w = None
    if weight is not None:
        w = array_of(weight).astype(input.dtype)
        if w.shape != (C,):
            raise ValueError(f"cross_entropy: weight must have shape ({C},), got {w.shape}")
    return CrossEntropy.apply(
        input, target=t, weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error, ``reduction`` "mean", "sum" or "none".

    Shape: input and target of one shape ``(*)`` (no broadcasting: here it is almost always a
    bug) -> ``()``, or ``(*)`` for "none".

    Raises:
        ValueError: shapes differ, or an unknown ``reduction``."""
    input, target = as_tensor(input), as_tensor(target)
    checks.check_reduction("mse_loss", reduction)
    if input.shape != target.shape:
        raise ValueError(
            f"mse_loss: input shape {input.shape} and target shape {target.shape} "
            f"differ (broadcasting here is almost always a bug)"
        )
    return MSELoss.apply(input, target, reduction=reduction)


# --- attention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionKernel:
    """Which attention kernel ``scaled_dot_product_attention`` runs (``attention_kernel``).

    ``kernel``: "plain" materialises the (L, S) scores; "blocked" is flash attention's algorithm
    (keys in blocks, online softmax); "auto" takes the blocked kernel when no weights are asked
    for and either the plain one's score matrix would exceed ``threshold_bytes`` or the
    attention is causal with L and S of at least ``causal_length`` (the blocked kernel skips the
    tiles above the diagonal, about half the work). ``block_q`` x ``block_k`` is its tile: 256 x
    512 keeps a block's scores for 8 heads (4 MiB) near cache."""

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
        if group > 1 and m.ndim >= 3 and m.shape[-3] != 1:
            m = m.reshape(m.shape[:-3] + (m.shape[-3] // group, group) + m.shape[-2:])
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
