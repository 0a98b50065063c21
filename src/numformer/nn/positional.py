"""Position information (seed section 4): sinusoidal, learned, and rotary."""

from __future__ import annotations

import numpy as np

from numformer.backend import xp
from numformer.nn import functional as F
from numformer.nn import init
from numformer.nn.checks import dtype_or_default
from numformer.nn.layers import Dropout
from numformer.nn.module import Module, Parameter
from numformer.tensor import Tensor, cat


def _check_length(op: str, x: Tensor, offset: int, max_len: int, dim: int = -2) -> int:
    L = x.shape[dim]
    if offset + L > max_len:
        raise ValueError(
            f"{op}: sequence of length {L} at offset {offset} exceeds max_len "
            f"{max_len}; build the module with a larger max_len"
        )
    return L


class SinusoidalPositionalEncoding(Module):
    """``dropout(x + PE[offset : offset + L])`` for ``x`` of shape ``(N, L, d_model)`` or
    ``(L, d_model)``. ``pe`` ``(max_len, d_model)`` is a buffer (saved, never trained) holding the
    seed's table: PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same).

    Args:
        d_model: the width of the inputs.
        max_len: the most positions the table holds.
        dropout: dropout after the addition (training only).
        dtype: the table's floating dtype.
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0, dtype=None):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", F.sinusoidal_positional_encoding(max_len, d_model, dtype_or_default(dtype)))
        self.dropout = Dropout(dropout)

    def forward(self, x, offset: int = 0):
        """``dropout(x + PE[offset : offset + L])`` (seed section 4; Vaswani et al., 2017, 3.5).

        Shape: ``(N, L, d_model)`` or ``(L, d_model)`` -> the same; ``offset + L <= max_len``.

        Raises:
            ValueError: the last dim is not ``d_model``, or the positions run past ``max_len``."""
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"SinusoidalPositionalEncoding: input must have d_model={self.d_model} features, got shape {x.shape}"
            )
        L = _check_length("SinusoidalPositionalEncoding", x, offset, self.max_len)
        return self.dropout(x + self.pe[offset : offset + L])

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(Module):
    """``x + weight[offset : offset + L]`` with a trained table ``weight`` ``(max_len, d_model)``
    (GPT-2's ``wpe``), initialised N(0, 0.02).

    Args:
        max_len: the most positions the table holds.
        d_model: the width of the inputs.
        dtype: the table's floating dtype.
    """

    def __init__(self, max_len: int, d_model: int, dtype=None):
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.weight = Parameter(xp.zeros((max_len, d_model), dtype=dtype_or_default(dtype)))
        init.normal_(self.weight, 0.0, 0.02)

    def forward(self, x, offset: int = 0):
        """``x + weight[offset : offset + L]`` (GPT-2's learned position table).

        Shape: ``(N, L, d_model)`` or ``(L, d_model)`` -> the same; ``offset + L <= max_len``.

        Raises:
            ValueError: the last dim is not ``d_model``, or the positions run past ``max_len``."""
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"LearnedPositionalEmbedding: input must have d_model={self.d_model} features, got shape {x.shape}"
            )
        L = _check_length("LearnedPositionalEmbedding", x, offset, self.max_len)
        return x + self.weight[offset : offset + L]


class RotaryEmbedding(Module):
    """Rotary position embedding (RoPE), applied to queries and keys, not to the input.

    Rotates each pair of features ``(x_i, x_{i + d/2})`` of position ``p`` by the angle
    ``p * base^(-2i/d)`` (the "rotate half" layout of GPT-NeoX and Llama), so that
    ``q_p . k_s`` depends on ``p - s`` only. Input ``(..., L, dim)``; same shape out. The cos
    and sin tables are non-persistent float64 buffers (rebuilt, never saved), cast to the
    input's dtype per call so a float64 model gets float64 angles.

    Args:
        dim: the features rotated (the head width; even).
        max_len: the most positions the tables hold.
        base: the frequencies' base (10000 in RoFormer and Llama).

    Raises:
        ValueError: an odd ``dim``.
    """

    def __init__(self, dim: int, max_len: int = 4096, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"RotaryEmbedding: dim must be even, got {dim}")
        self.dim, self.max_len, self.base = dim, max_len, base
        inv_freq = base ** (-xp.arange(0, dim, 2, dtype=np.float64) / dim)
        angles = xp.arange(max_len, dtype=np.float64)[:, None] * inv_freq[None, :]
        angles = xp.concatenate([angles, angles], axis=-1)  # (max_len, dim)
        self.register_buffer("cos", xp.cos(angles), persistent=False)
        self.register_buffer("sin", xp.sin(angles), persistent=False)

    def forward(self, x, offset: int = 0, positions=None):
        """Rotate ``x`` by its positions (Su et al., 2021, "RoFormer"): ``offset .. offset + L - 1``,
        or explicit ``positions``, one row per sequence, as a KV cache with rows of different
        lengths needs.

        Shape: ``(..., L, dim)`` -> the same; ``positions`` ``(N, L)`` with ``x`` ``(N, L, dim)``
        or ``(N, H, L, dim)``.

        Raises:
            ValueError: the last dim is not ``dim``, or positions reach ``max_len``."""
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"RotaryEmbedding: input must have dim={self.dim} features in its last dim, got shape {x.shape}"
            )
        if positions is not None:
            positions = xp.asarray(positions)
            if positions.size and positions.max() >= self.max_len:
                raise ValueError(f"RotaryEmbedding: position {positions.max()} exceeds max_len {self.max_len}")
            cos = self.cos[positions].to(x.dtype)  # (N, L, dim)
            sin = self.sin[positions].to(x.dtype)
            if x.ndim == 4:
                cos, sin = cos[:, None], sin[:, None]
        else:
            L = _check_length("RotaryEmbedding", x, offset, self.max_len)
            cos = self.cos[offset : offset + L].to(x.dtype)
            sin = self.sin[offset : offset + L].to(x.dtype)
        half = self.dim // 2
        rotated = cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}, base={self.base}"
