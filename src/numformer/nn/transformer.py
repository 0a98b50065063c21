"""The Transformer (seed section 5 and the original paper), PyTorch's module interface.

``norm_first=True`` is the seed's pre-LN block (x + f(LN(x))); ``norm_first=False`` is the
paper's post-LN block (LN(x + f(x))). Masks follow PyTorch: boolean True marks a position to
ignore, float masks are added. Layers default to ``batch_first=False``, as PyTorch's.
"""

from __future__ import annotations

import copy

import numpy as np

from numformer.backend import xp
from numformer.nn import init
from numformer.nn.attention import MultiheadAttention, is_causal_mask
from numformer.nn.cache import EncoderDecoderCache
from numformer.nn.checks import dtype_or_default
from numformer.nn.layers import Dropout, LayerNorm, Linear, get_activation, linear_then
from numformer.nn.module import Module, ModuleList
from numformer.tensor import Tensor


def generate_square_subsequent_mask(size: int, dtype=None) -> Tensor:
    """Float causal mask ``(size, size)``: 0 on and below the diagonal, -inf above.

    Args:
        size: the sequence length L.
        dtype: the mask's floating dtype (default: the default dtype, float32).

    Returns:
        A ``(size, size)`` tensor for ``mask=`` / ``tgt_mask=`` (PyTorch's
        ``nn.Transformer.generate_square_subsequent_mask``).
    """

    mask = xp.triu(xp.full((size, size), -np.inf), k=1).astype(dtype_or_default(dtype))
    return Tensor(mask)


class TransformerEncoderLayer(Module):
    """Self-attention then feed-forward, each with a residual connection and LayerNorm
    (Vaswani et al., 2017, "Attention Is All You Need"; seed §5, the encoder).

    Args:
        d_model: the embedding width E.
        nhead: attention heads (E must divide by it).
        dim_feedforward: the feed-forward layer's hidden width (2048).
        dropout: dropout probability after attention, inside and after the feed-forward (0.1).
        activation: ``"relu"``, ``"gelu"`` or a callable, between the feed-forward layers.
        layer_norm_eps: LayerNorm's epsilon (1e-5).
        batch_first: inputs ``(N, L, E)`` when True, ``(L, N, E)`` when False (PyTorch's default).
        norm_first: pre-LN (LayerNorm before each sub-layer) when True, post-LN (the paper's)
            when False.
        bias: biases in the linear layers and LayerNorms (True).
        device, dtype: where and in what type the parameters are made (PyTorch's factory
            arguments; numformer computes in float32).

    Shape:
        ``src`` ``(N, S, E)`` (``(S, N, E)`` unless ``batch_first``, or ``(S, E)`` unbatched);
        output the same shape.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = {"bias": bias, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first, **kw)
        self.linear1 = Linear(d_model, dim_feedforward, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = get_activation(activation)
        if device is not None:
            self.to(device)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        """Self-attention then feed-forward, each with a residual and LayerNorm (pre-LN with
        ``norm_first``, the seed's section 5; post-LN otherwise, the paper's).

        Shape: src ``(N, S, E)`` (``(S, N, E)`` if not ``batch_first``; or ``(S, E)``);
        ``src_mask`` ``(S, S)`` or ``(N * nhead, S, S)``; ``src_key_padding_mask`` ``(N, S)``
        (True marks padding) -> the shape of ``src``."""
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1.add_and_norm(x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2.add_and_norm(x, self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        out, _ = self.self_attn(
            x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False, is_causal=is_causal
        )
        return self.dropout1(out)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(linear_then(self.linear1, self.activation, x))))


class TransformerDecoderLayer(Module):
    """Masked self-attention, cross-attention over ``memory``, then feed-forward, each with a
    residual connection and LayerNorm (Vaswani et al., 2017).

    Args:
        d_model: the embedding width E.
        nhead: attention heads (E must divide by it).
        dim_feedforward: the feed-forward layer's hidden width (2048).
        dropout: dropout probability after attention, inside and after the feed-forward (0.1).
        activation: ``"relu"``, ``"gelu"`` or a callable, between the feed-forward layers.
        layer_norm_eps: LayerNorm's epsilon (1e-5).
        batch_first: inputs ``(N, L, E)`` when True, ``(L, N, E)`` when False (PyTorch's default).
        norm_first: pre-LN (LayerNorm before each sub-layer) when True, post-LN (the paper's)
            when False.
        bias: biases in the linear layers and LayerNorms (True).
        device, dtype: where and in what type the parameters are made (PyTorch's factory
            arguments; numformer computes in float32).

    Shape:
        ``tgt`` ``(N, T, E)``, ``memory`` ``(N, S, E)`` (sequence first unless ``batch_first``);
        output ``(N, T, E)``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = {"bias": bias, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first, **kw)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first, **kw)
        self.linear1 = Linear(d_model, dim_feedforward, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, **kw)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = get_activation(activation)
        if device is not None:
            self.to(device)

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
        cache: EncoderDecoderCache | None = None,
        layer_idx: int = 0,
    ):
        """Masked self-attention, cross-attention over ``memory``, then feed-forward, each with a
        residual and LayerNorm (Vaswani et al., 2017, 3.1).

        Shape: tgt ``(N, T, E)``, memory ``(N, S, E)`` (sequence first if not ``batch_first``);
        ``tgt_mask`` ``(T, T)``, ``memory_mask`` ``(T, S)``; padding masks ``(N, T)`` and
        ``(N, S)`` -> ``(N, T, E)``. With ``cache`` (an ``nn.EncoderDecoderCache``; incremental
        decoding, batch-first): ``tgt`` holds only the new positions; the self-attention keys
        grow in the cache's self-attention layer ``layer_idx``, the memory's are projected once
        into its cross-attention layer ``layer_idx`` (``tgt_mask`` must then be None:
        ``tgt_is_causal`` masks the new positions among themselves)."""
        if cache is not None and tgt_mask is not None:
            raise ValueError("TransformerDecoderLayer: with a cache pass tgt_is_causal=True, not tgt_mask")
        self_cache, cross_cache = (
            (None, None) if cache is None else (cache.self_attention_cache, cache.cross_attention_cache)
        )
        sa, mha = (self_cache, layer_idx), (cross_cache, layer_idx)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal, *sa)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal, *mha)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1.add_and_norm(x, self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal, *sa))
            x = self.norm2.add_and_norm(
                x, self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal, *mha)
            )
            x = self.norm3.add_and_norm(x, self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal, cache=None, layer_idx=0):
        out, _ = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
            cache=cache,
            layer_idx=layer_idx,
        )
        return self.dropout1(out)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal, cache=None, layer_idx=0):
        if cache is not None and attn_mask is not None:
            raise ValueError("TransformerDecoderLayer: memory_mask cannot be used with a cache")
        out, _ = self.multihead_attn(
            x,
            mem,
            mem,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
            cache=cache,
            layer_idx=layer_idx,
            static_kv=True,
        )
        return self.dropout2(out)

    def _ff_block(self, x):
        return self.dropout3(self.linear2(self.dropout(linear_then(self.linear1, self.activation, x))))


def _clones(layer: Module, n: int) -> ModuleList:
    """``n`` independent deep copies of ``layer`` (so all start from the same weights, as PyTorch)."""
    return ModuleList(copy.deepcopy(layer) for _ in range(n))


class TransformerEncoder(Module):
    """A stack of ``num_layers`` copies of ``encoder_layer``, then an optional final ``norm``.

    Args:
        encoder_layer: the layer to copy (each copy has its own weights).
        num_layers: how many copies.
        norm: a module applied to the last layer's output (a LayerNorm for pre-LN stacks).
        enable_nested_tensor, mask_check: PyTorch's switches for its nested-tensor fast path
            over padded batches; numformer has no nested tensors, so they are accepted and
            stored, and change nothing (the outputs are the same either way, as in PyTorch).

    Shape:
        as ``forward``'s ``src``; output the same shape.
    """

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool = False):
        """Run ``src`` through every layer, then ``norm``.

        Shape:
            src ``(N, S, E)`` (``(S, N, E)`` when the layers are not ``batch_first``, or
            ``(S, E)`` unbatched); ``mask`` ``(S, S)`` or ``(N * nhead, S, S)``;
            ``src_key_padding_mask`` ``(N, S)``, True marking padding. Output: ``src``'s shape.
        """
        x = src
        if mask is not None and len(self.layers):  # a causal mask, detected once for every layer
            batch_first = getattr(self.layers[0].self_attn, "batch_first", False)
            S = src.shape[-2] if batch_first or src.ndim == 2 else src.shape[0]
            if is_causal_mask(mask, S):
                mask, is_causal = None, True
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """A stack of ``num_layers`` copies of ``decoder_layer``, then an optional final ``norm``.

    Args:
        decoder_layer: the layer to copy (each copy has its own weights).
        num_layers: how many copies.
        norm: a module applied to the last layer's output.

    Shape:
        ``tgt`` ``(N, T, E)``, ``memory`` ``(N, S, E)``; output ``(N, T, E)``.
    """

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
        cache: EncoderDecoderCache | None = None,
    ):
        """Run ``tgt`` through every layer against ``memory``, then ``norm``.

        Shape: as ``TransformerDecoderLayer.forward``: tgt ``(N, T, E)``, memory ``(N, S, E)``
        -> ``(N, T, E)``. ``cache`` (an ``nn.EncoderDecoderCache()``): incremental decoding,
        ``tgt`` holding only the new positions, layer i's keys in the cache's layer i (see
        ``TransformerDecoderLayer.forward``).

        Raises:
            ValueError: a cache that holds more layers than the decoder has (another decoder's)."""
        if cache is not None and len(cache) > len(self.layers):
            raise ValueError(f"TransformerDecoder: cache has {len(cache)} layers, the decoder {len(self.layers)}")
        x = tgt
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=tgt_is_causal,
                memory_is_causal=memory_is_causal,
                cache=cache,
                layer_idx=i,
            )
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).
    Every weight matrix starts Xavier-uniform, as in PyTorch's ``nn.Transformer``.

    Args:
        d_model: the embedding width E (512).
        nhead: attention heads (8; E must divide by it).
        num_encoder_layers, num_decoder_layers: the stacks' depths (6 each).
        custom_encoder, custom_decoder: modules used instead of the stacks built here.
        dim_feedforward: the feed-forward layer's hidden width (2048).
        dropout: dropout probability after attention, inside and after the feed-forward (0.1).
        activation: ``"relu"``, ``"gelu"`` or a callable, between the feed-forward layers.
        layer_norm_eps: LayerNorm's epsilon (1e-5).
        batch_first: inputs ``(N, L, E)`` when True, ``(L, N, E)`` when False (PyTorch's default).
        norm_first: pre-LN (LayerNorm before each sub-layer) when True, post-LN (the paper's)
            when False.
        bias: biases in the linear layers and LayerNorms (True).
        device, dtype: where and in what type the parameters are made (PyTorch's factory
            arguments; numformer computes in float32).

    Shape:
        ``forward(src (N, S, E), tgt (N, T, E), ...) -> (N, T, E)`` (sequence first unless
        ``batch_first``).
    """

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        custom_encoder: Module | None = None,
        custom_decoder: Module | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = {
            "dim_feedforward": dim_feedforward,
            "dropout": dropout,
            "activation": activation,
            "layer_norm_eps": layer_norm_eps,
            "batch_first": batch_first,
            "norm_first": norm_first,
            "bias": bias,
            "dtype": dtype,
        }
        self.encoder = custom_encoder or TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, **kw),
            num_encoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype),
        )
        self.decoder = custom_decoder or TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, **kw),
            num_decoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype),
        )
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)
        if device is not None:
            self.to(device)

    def forward(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal: bool = False,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ):
        """Encode ``src``, then decode ``tgt`` against it ("Attention Is All You Need").

        Shape: src ``(N, S, E)``, tgt ``(N, T, E)`` (sequence first if not ``batch_first``);
        masks as in the encoder and decoder layers -> ``(N, T, E)``. ``tgt_mask`` is usually
        ``generate_square_subsequent_mask(T)``.

        Raises:
            ValueError: ``src`` and ``tgt`` differ in batch size or feature size."""
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(
                f"Transformer: src and tgt must have d_model={self.d_model} features, got {src.shape} and {tgt.shape}"
            )
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)
