"""The Transformer (seed section 5 and the original paper), PyTorch's module interface.

``norm_first=True`` is the seed's pre-LN block (x + f(LN(x))); ``norm_first=False`` is the
paper's post-LN block (LN(x + f(x))). Masks follow PyTorch: boolean True marks a position to
ignore, float masks are added. Layers default to ``batch_first=True`` (PyTorch: False).
"""

from __future__ import annotations

import copy

import numpy as np

from numformer import parallel
from numformer.autograd import is_grad_enabled
from numformer.nn import init
from numformer.nn.attention import MultiheadAttention, _mask_array
from numformer.nn.layers import Dropout, LayerNorm, Linear, ReLU, get_activation
from numformer.nn.module import Module, ModuleList
from numformer.tensor import Tensor, _as_tensor


def generate_square_subsequent_mask(size: int, dtype=None) -> Tensor:
    """Float causal mask ``(size, size)``: 0 on and below the diagonal, -inf above."""
    from numformer.nn.layers import _dtype

    mask = np.triu(np.full((size, size), -np.inf), k=1).astype(_dtype(dtype))
    return Tensor(mask)


def _linear_then(linear: Linear, activation: Module, x):
    """``activation(linear(x))``; a plain ``ReLU`` (no hooks of its own) runs inside the GEMM's
    chunks (``Linear.with_relu``)."""
    if type(activation) is ReLU and not activation._forward_hooks:
        return linear.with_relu(x)
    return activation(linear(x))


class TransformerEncoderLayer(Module):
    """Self-attention then feed-forward, each with a residual connection and LayerNorm.

    Input ``src`` ``(N, S, E)`` (or ``(S, E)``); output the same shape.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = True,
                 norm_first: bool = False, bias: bool = True):  # fmt: skip
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first)  # fmt: skip
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = get_activation(activation)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1.add_and_norm(x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2.add_and_norm(x, self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        out, _ = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=is_causal)  # fmt: skip
        return self.dropout1(out)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(_linear_then(self.linear1, self.activation, x))))


class TransformerDecoderLayer(Module):
    """Masked self-attention, cross-attention over ``memory``, then feed-forward.

    ``tgt`` ``(N, T, E)``, ``memory`` ``(N, S, E)``; output ``(N, T, E)``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = True,
                 norm_first: bool = False, bias: bool = True):  # fmt: skip
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first)  # fmt: skip
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first)  # fmt: skip
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = get_activation(activation)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False):  # fmt: skip
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                    memory_is_causal)  # fmt: skip
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1.add_and_norm(x, self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2.add_and_norm(x, self._mha_block(x, memory, memory_mask, memory_key_padding_mask,
                                                           memory_is_causal))  # fmt: skip
            x = self.norm3.add_and_norm(x, self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        out, _ = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=is_causal)  # fmt: skip
        return self.dropout1(out)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        out, _ = self.multihead_attn(x, mem, mem, attn_mask=attn_mask,
                                     key_padding_mask=key_padding_mask, need_weights=False,
                                     is_causal=is_causal)  # fmt: skip
        return self.dropout2(out)

    def _ff_block(self, x):
        return self.dropout3(self.linear2(self.dropout(_linear_then(self.linear1, self.activation, x))))


def _clones(layer: Module, n: int) -> ModuleList:
    """``n`` independent deep copies of ``layer`` (so all start from the same weights, as PyTorch)."""
    return ModuleList(copy.deepcopy(layer) for _ in range(n))


def _whole_sequences_per_thread(stack: Module, src, batch_axis: int) -> bool:
    """Whether ``stack`` may run each thread's share of the batch through all its layers:
    kernel threads on, a batch to split, nothing that would notice (no forward hooks, which
    would see a part of the batch each; no module in training mode, whose dropout draws would
    change; no graph to record)."""
    if parallel.get_num_threads() == 1 or src.shape[batch_axis] < 2:
        return False
    if is_grad_enabled() and (src.requires_grad or any(p.requires_grad for p in stack.parameters())):
        return False
    return not any(m.training or m._forward_hooks for m in stack.modules())


def _batch_chunks(stack: Module, src: Tensor, batch_axis: int, run) -> Tensor:
    """``run(lo, hi)``, the stack's output for batch items ``lo:hi``, over contiguous shares of
    the batch, one per kernel thread, joined along ``batch_axis``. Every kernel inside runs on
    its caller's thread (``parallel_for`` does not nest), so a forward costs one hand-off
    instead of several per layer, and each thread's rows stay in its own cache."""
    parts = {}

    def chunk(lo, hi):
        parts[lo] = run(lo, hi).data

    # multiply-adds per batch item: each weight once per position (attention's extra ignored)
    work = (src.data.size // src.shape[batch_axis] // src.shape[-1]) * sum(p.data.size for p in stack.parameters())
    parallel.parallel_for(src.shape[batch_axis], chunk, work, parallel.MIN_MACS)
    if len(parts) == 1:
        return Tensor._wrap(parts[0], False)
    return Tensor._wrap(np.concatenate([parts[lo] for lo in sorted(parts)], axis=batch_axis), False)


class TransformerEncoder(Module):
    """A stack of ``num_layers`` copies of ``encoder_layer``, then an optional final ``norm``.

    Inference (no graph to record, every module in eval mode, no forward hooks) with kernel
    threads on splits the batch: each thread runs its sequences through the whole stack
    (``_batch_chunks``). The layer-by-layer path runs otherwise; both give the same numbers
    (to round-off where a GEMM's row count changes how BLAS orders its sums).
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int,
                 norm: Module | None = None):  # fmt: skip
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool = False):
        src = _as_tensor(src)
        pad = None if src_key_padding_mask is None else _mask_array(src_key_padding_mask, "key_padding_mask")
        axis = self._batch_axis(src, mask, pad)
        if axis is None:
            return self._run(src, mask, pad, is_causal)

        def run(lo, hi):
            part = src.data[lo:hi] if axis == 0 else src.data[:, lo:hi]
            return self._run(Tensor._wrap(part, False), mask, None if pad is None else pad[lo:hi], is_causal)

        return _batch_chunks(self, src, axis, run)

    def _batch_axis(self, src: Tensor, mask, pad) -> int | None:
        """The batch axis to split over threads, or None to run the batch as one. Only for
        what the split certainly handles like the whole: a batched ``(N, S, E)`` (or
        ``(S, N, E)``) input of the right width, a shared ``(S, S)`` mask, an ``(N, S)``
        padding mask; anything else goes the usual way (and gets its usual error)."""
        first = self.layers[0] if len(self.layers) else None
        if not isinstance(first, TransformerEncoderLayer) or src.ndim != 3 \
                or src.shape[-1] != first.self_attn.embed_dim:  # fmt: skip
            return None
        axis = 0 if first.self_attn.batch_first else 1
        N, S = src.shape[axis], src.shape[1 - axis]
        if mask is not None and _mask_array(mask, "attn_mask").shape != (S, S):
            return None
        if pad is not None and pad.shape != (N, S):
            return None
        return axis if _whole_sequences_per_thread(self, src, axis) else None

    def _run(self, src, mask, src_key_padding_mask, is_causal):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                      is_causal=is_causal)  # fmt: skip
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """A stack of ``num_layers`` copies of ``decoder_layer``, then an optional final ``norm``."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int,
                 norm: Module | None = None):  # fmt: skip
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False):  # fmt: skip
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)  # fmt: skip
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """The encoder-decoder Transformer of "Attention Is All You Need".

    ``forward(src (N, S, E), tgt (N, T, E), ...) -> (N, T, E)``. Every weight matrix starts
    Xavier-uniform, as in PyTorch's ``nn.Transformer``.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", custom_encoder: Module | None = None,
                 custom_decoder: Module | None = None, layer_norm_eps: float = 1e-5,
                 batch_first: bool = True, norm_first: bool = False, bias: bool = True):  # fmt: skip
        super().__init__()
        kw = {"dim_feedforward": dim_feedforward, "dropout": dropout, "activation": activation,
              "layer_norm_eps": layer_norm_eps, "batch_first": batch_first,
              "norm_first": norm_first, "bias": bias}  # fmt: skip
        self.encoder = custom_encoder or TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, **kw), num_encoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.decoder = custom_decoder or TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, **kw), num_decoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, src_is_causal: bool = False,
                tgt_is_causal: bool = False, memory_is_causal: bool = False):  # fmt: skip
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"Transformer: src and tgt must have d_model={self.d_model} features, "
                             f"got {src.shape} and {tgt.shape}")  # fmt: skip
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)  # fmt: skip
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)  # fmt: skip

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)
