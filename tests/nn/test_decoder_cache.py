"""Incremental decoding through ``nn.DecoderCache`` gives the full forward's outputs, for post-
and pre-LN layers, with memory padding, and rows reorder as beam search needs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from numformer import nn


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 3),
    T=st.integers(1, 6),
    S=st.integers(1, 5),
    first=st.integers(1, 3),
    norm_first=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_incremental_decoding_equals_the_full_forward(batch, T, S, first, norm_first, seed):
    nf.manual_seed(seed)
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first, batch_first=True)
    decoder = nn.TransformerDecoder(layer, 2).eval()
    r = np.random.default_rng(seed)
    memory = nf.tensor(r.standard_normal((batch, S, 16)).astype(np.float32))
    tgt = nf.tensor(r.standard_normal((batch, T, 16)).astype(np.float32))
    padding = np.zeros((batch, S), dtype=bool)
    padding[0, S // 2 + 1 :] = True
    first = min(first, T)
    with nf.no_grad():
        full = decoder(
            tgt, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(T), memory_key_padding_mask=padding
        ).array
        cache = nn.DecoderCache(2)
        parts = [
            decoder(tgt[:, :first], memory, memory_key_padding_mask=padding, tgt_is_causal=True, cache=cache).array
        ]
        for t in range(first, T):
            parts.append(decoder(tgt[:, t : t + 1], memory, memory_key_padding_mask=padding, cache=cache).array)
    np.testing.assert_allclose(np.concatenate(parts, 1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == T


def test_reorder_picks_rows_of_every_layer():
    cache = nn.DecoderCache(2)
    for layer in cache.layers:
        layer.self_attn.k = layer.self_attn.v = nf.tensor(np.arange(3, dtype=np.float32)[:, None, None, None])
    cache.reorder(np.array([2, 2, 0]))
    assert cache.layers[1].self_attn.k.array.ravel().tolist() == [2.0, 2.0, 0.0]
    assert cache.layers[0].multihead_attn.k is None  # nothing cached yet: nothing to reorder


def test_a_cache_refuses_masks_it_cannot_honour():
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 1)
    x = nf.tensor(np.zeros((1, 2, 8), np.float32))
    with pytest.raises(ValueError, match="pass tgt_is_causal=True, not tgt_mask"):
        decoder(x, x, tgt_mask=nn.Transformer.generate_square_subsequent_mask(2), cache=nn.DecoderCache(1))
    with pytest.raises(ValueError, match="cache has 3 layers, the decoder 1"):
        decoder(x, x, cache=nn.DecoderCache(3))
