"""Multi-head attention (seed section 3), PyTorch's ``nn.MultiheadAttention`` interface.

All heads run in one batched call of the fused attention kernel: the projections are
reshaped ``(N, L, E) -> (N, H, L, E/H)`` rather than looping over heads as the seed does.
"""

from __future__ import annotations

import numpy as np

from numformer.backend import xp
from numformer.nn import functional as F
from numformer.nn import init
from numformer.nn.cache import Cache
from numformer.nn.checks import dtype_or_default, mask_array
from numformer.nn.layers import NonDynamicallyQuantizableLinear
from numformer.nn.module import Module, Parameter
from numformer.ops.masks import MergeMasks
from numformer.tensor import Tensor


def is_causal_mask(mask, size: int) -> bool:
    """Whether ``mask`` is the causal mask of ``size`` positions in layer convention: an
    ``(size, size)`` boolean mask True exactly above the diagonal (True = ignore), or a float mask
    that is -inf exactly there and 0 elsewhere (``nn.Transformer.generate_square_subsequent_mask``).
    Such a mask takes the causal kernel (as PyTorch's ``_detect_is_causal_mask`` decides)."""
    m = mask.array if isinstance(mask, Tensor) else mask
    if m is None or getattr(m, "shape", None) != (size, size):
        return False
    above = ~xp.tri(size, size, dtype=bool)
    if m.dtype == np.bool_:
        return bool((m == above).all())
    if m.dtype.kind != "f":
        return False
    return bool((xp.isneginf(m) == above).all() and (m[~above] == 0).all())


def merge_masks(attn_mask, key_padding_mask, is_causal: bool, N: int, H: int, L: int, S: int, dtype) -> Tensor | None:
    """Combine PyTorch-style layer masks into one mask for ``scaled_dot_product_attention``.

    Inputs follow ``nn.MultiheadAttention``: boolean True marks a position to *ignore*; float
    masks are added. ``attn_mask`` is ``(L, S)`` or ``(N * H, L, S)``; ``key_padding_mask`` is
    ``(N, S)``. The result is a boolean mask (True = take part) or a float mask, broadcastable
    to ``(N, H, L, S)``, computed by one primitive (``ops.masks.MergeMasks``) so that a traced
    forward records it as a function of the masks and sizes.
    """
    masks = []
    if attn_mask is not None:
        m = mask_array(attn_mask, "attn_mask")
        if m.shape not in ((L, S), (N * H, L, S)):
            raise ValueError(
                f"MultiheadAttention: attn_mask must have shape (L, S) = {(L, S)} "
                f"or (N * num_heads, L, S) = {(N * H, L, S)}, got {m.shape}"
            )
        masks.append(m)
    if key_padding_mask is not None:
        m = mask_array(key_padding_mask, "key_padding_mask")
        if m.shape != (N, S):
            raise ValueError(f"MultiheadAttention: key_padding_mask must have shape (N, S) = {(N, S)}, got {m.shape}")
        masks.append(m)
    if not masks:  # nothing to merge (the kernel's is_causal is the fast way to the causal mask)
        return Tensor(xp.tri(L, S, dtype=bool)[None, None]) if is_causal else None
    return MergeMasks.apply(
        *[Tensor._wrap(m, False) for m in masks],
        has_attn_mask=attn_mask is not None,
        has_key_padding_mask=key_padding_mask is not None,
        is_causal=is_causal,
        N=N,
        H=H,
        L=L,
        S=S,
        dtype=dtype,
    )


def _attend(q, k, v, mask, dropout_p: float, is_causal: bool, need_weights: bool):
    """(output, weights or None) of the fused kernel."""
    if need_weights:
        return F.scaled_dot_product_attention_with_weights(q, k, v, mask, dropout_p, is_causal)
    return F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal), None


class MultiheadAttention(Module):
    """Multi-head attention: ``out_proj(concat_h softmax(Q_h K_h^T / sqrt(d)) V_h)`` (Vaswani et
    al., 2017, "Attention Is All You Need", 3.2.2; PyTorch's ``nn.MultiheadAttention``), all heads
    in one fused kernel call.

    Masks as PyTorch's: ``key_padding_mask (N, S)`` and ``attn_mask (L, S)`` or ``(N*H, L, S)``,
    boolean True = ignore, float = added. ``is_causal=True`` without ``attn_mask`` builds the
    causal mask (PyTorch requires the mask as well). A query that may attend to nothing gets a
    zero output (PyTorch: NaN).

    Parameters (PyTorch's names and layouts): ``in_proj_weight (3E, E)`` and ``in_proj_bias
    (3E,)`` (or ``q/k/v_proj_weight`` when kdim/vdim differ from E), ``out_proj.weight (E, E)``,
    ``out_proj.bias (E,)``.

    Args:
        embed_dim: E, the model's width (queries' features and the output's).
        num_heads: H, the number of heads; must divide ``embed_dim`` (head width E / H).
        dropout: dropout probability on the attention weights, in training mode.
        bias: whether the input and output projections have biases.
        kdim: the keys' features (default ``embed_dim``).
        vdim: the values' features (default ``embed_dim``).
        batch_first: inputs and output are ``(N, L, E)``; the default, as PyTorch's, is
            ``(L, N, E)``.
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the parameters' floating dtype (default: numformer's default dtype).

    Shape:
        query ``(N, L, E)``, key ``(N, S, kdim)``, value ``(N, S, vdim)`` (``batch_first=True``;
        ``(L, N, E)`` ... otherwise), or unbatched ``(L, E)``. Returns ``(output (N, L, E),
        weights)`` with weights ``(N, L, S)`` averaged over heads, ``(N, H, L, S)`` with
        ``average_attn_weights=False``, or None with ``need_weights=False``.

    Raises:
        ValueError: ``embed_dim`` or ``num_heads`` not positive, or ``num_heads`` not dividing
            ``embed_dim``.

    Examples:
        >>> import numformer as nf
        >>> mha = nf.nn.MultiheadAttention(16, num_heads=4, batch_first=True)
        >>> x = nf.randn(2, 5, 16)
        >>> out, weights = mha(x, x, x)
        >>> tuple(out.shape), tuple(weights.shape)
        ((2, 5, 16), (2, 5, 5))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}"
            )
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.batch_first = batch_first
        d = dtype_or_default(dtype)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(xp.zeros((3 * embed_dim, embed_dim), dtype=d))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.in_proj_weight = None
            self.q_proj_weight = Parameter(xp.zeros((embed_dim, embed_dim), dtype=d))
            self.k_proj_weight = Parameter(xp.zeros((embed_dim, self.kdim), dtype=d))
            self.v_proj_weight = Parameter(xp.zeros((embed_dim, self.vdim), dtype=d))
        self.in_proj_bias = Parameter(xp.zeros(3 * embed_dim, dtype=d)) if bias else None
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self._reset_parameters()
        if device is not None:
            self.to(device)

    def _reset_parameters(self) -> None:
        # PyTorch: Xavier-uniform input projections, zero biases; out_proj keeps Linear's init
        # for its weight but gets a zero bias.
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if w is not None:
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, query, key, value):
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E : 2 * E], b[2 * E :])
        if self._qkv_same_embed_dim:
            if query is key and key is value:  # self-attention: one GEMM for Q, K and V
                qkv = F.linear(query, self.in_proj_weight, b)
                return qkv[..., :E], qkv[..., E : 2 * E], qkv[..., 2 * E :]
            w = self.in_proj_weight
            wq, wk, wv = w[:E], w[E : 2 * E], w[2 * E :]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights: bool = True,
        attn_mask=None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        cache: Cache | None = None,
        layer_idx: int = 0,
        static_kv: bool = False,
    ):
        """Attention of ``query`` over ``key``/``value``, all heads in one fused kernel call
        (Vaswani et al., 2017, 3.2.2; PyTorch's ``nn.MultiheadAttention``).

        With ``cache`` (an ``nn.Cache``, such as ``nn.DynamicCache``; batch-first, batched input):
        this call's keys and values are stored in the cache's layer ``layer_idx`` after those of
        earlier calls and the queries attend over all of them (``is_causal`` then masks only
        within this call's positions, which come after the cached ones). With ``static_kv``
        (cross-attention over a fixed memory, fairseq's name) ``key``/``value`` are projected
        and stored at the first call only; later calls read them from the cache. Cached keys
        are outside the graph: only this call's own positions are differentiated.

        Shape (``batch_first=True``; ``(L, N, E)`` otherwise): query ``(N, L, E)``, key
        ``(N, S, kdim)``, value ``(N, S, vdim)``, or unbatched ``(L, E)``; ``key_padding_mask``
        ``(N, S)``; ``attn_mask`` ``(L, S)`` or ``(N * num_heads, L, S)``. Masks are PyTorch's:
        boolean True marks a pair to *ignore*, floating masks are added. Returns
        ``(output (N, L, E), weights)``, weights ``(N, L, S)`` averaged over heads,
        ``(N, num_heads, L, S)`` with ``average_attn_weights=False``, or None without
        ``need_weights``.

        Raises:
            ValueError: feature sizes or mask shapes that do not fit. TypeError: masks neither
            boolean nor floating."""
        batched = query.ndim == 3
        for name, t, dim in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.ndim != query.ndim or t.ndim not in (2, 3):
                raise ValueError(
                    f"MultiheadAttention: {name} must be 3-D (batched) or 2-D "
                    f"(unbatched) like query {query.shape}, got {t.shape}"
                )
            if t.shape[-1] != dim:
                raise ValueError(
                    f"MultiheadAttention: {name} must have {dim} features in its last dim, got shape {t.shape}"
                )
        self_attention = query is key and key is value
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = mask_array(key_padding_mask, "key_padding_mask")[None]
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        if self_attention:
            key = value = query
        N, L, _ = query.shape
        S = key.shape[1]
        if key.shape[0] != N or value.shape[:2] != (N, S):
            raise ValueError(
                f"MultiheadAttention: key {key.shape} and value {value.shape} must "
                f"match query's batch {N} and each other's length"
            )
        H, D = self.num_heads, self.head_dim
        if cache is not None:
            if attn_mask is not None:
                raise ValueError("MultiheadAttention: with a cache use is_causal or key_padding_mask, not attn_mask")
            static_kv = static_kv or getattr(cache, "static", False)  # the deprecated nn.AttentionCache(static=True)
            return self._cached(
                query, key, value, key_padding_mask, need_weights, is_causal, cache, layer_idx, static_kv
            )
        if attn_mask is not None and L == S and is_causal_mask(attn_mask, L):
            attn_mask, is_causal = None, True  # the causal kernel, not a general mask
        causal_kernel = is_causal and attn_mask is None and key_padding_mask is None
        mask = None if causal_kernel else merge_masks(attn_mask, key_padding_mask, is_causal, N, H, L, S, query.dtype)
        q, k, v = self._project(query, key, value)
        q = q.reshape(N, L, H, D).transpose(1, 2)  # (N, H, L, D)
        k = k.reshape(N, S, H, D).transpose(1, 2)
        v = v.reshape(N, S, H, D).transpose(1, 2)
        out, weights = _attend(q, k, v, mask, self.dropout if self.training else 0.0, causal_kernel, need_weights)
        out = self.out_proj(out.transpose(1, 2).reshape(N, L, self.embed_dim))
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)  # over the heads, in the graph
        if not batched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _cached(self, query, key, value, key_padding_mask, need_weights, is_causal, cache, layer_idx, static_kv):
        """The incremental form of ``forward`` (see its ``cache``)."""
        if not (self.batch_first and query.ndim == 3):
            raise ValueError("MultiheadAttention: a cache needs batch-first, batched input (N, L, E)")
        N, L, E = query.shape
        H, D = self.num_heads, self.head_dim
        b = self.in_proj_bias
        if static_kv and cache.get_seq_length(layer_idx) > 0:  # the memory's keys, projected before
            q = F.linear(query, self._weight(0), None if b is None else b[:E])
            k, v = cache[layer_idx]
        else:
            q, k, v = self._project(query, key, value)
            S = key.shape[1]
            k = k.reshape(N, S, H, D).transpose(1, 2)
            v = v.reshape(N, S, H, D).transpose(1, 2)
            k, v = cache.update(k, v, layer_idx)
        q = q.reshape(N, L, H, D).transpose(1, 2)
        S, past = k.shape[2], k.shape[2] - L
        mask = None
        if key_padding_mask is not None:
            keep = ~mask_array(key_padding_mask, "key_padding_mask")
            if keep.shape != (N, S):
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask must be {(N, S)} with the cache, got {keep.shape}"
                )
            mask = keep[:, None, None, :]
        if is_causal and L > 1:
            causal = xp.arange(S)[None, :] <= (past + xp.arange(L))[:, None]  # (L, S), True = attend
            mask = causal if mask is None else mask & causal
        out, weights = _attend(q, k, v, mask, self.dropout if self.training else 0.0, False, need_weights)
        out = self.out_proj(out.transpose(1, 2).reshape(N, L, E))
        return out, (weights.mean(dim=1) if weights is not None else None)

    def _weight(self, i: int):
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            return self.in_proj_weight[i * E : (i + 1) * E]
        return (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[i]

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
