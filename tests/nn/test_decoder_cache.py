"""Incremental decoding through an ``nn.EncoderDecoderCache`` (the one cache protocol,
``nn.Cache``) gives the full forward's outputs, for post- and pre-LN layers, with memory
padding; rows reorder as beam search needs; ``nn.MultiheadAttention`` takes any ``nn.Cache``;
the deprecated ``nn.DecoderCache`` and ``nn.AttentionCache`` still decode the same."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from numformer import nn


def _decode_in_steps(decoder, tgt, memory, padding, first, cache):
    parts = [decoder(tgt[:, :first], memory, memory_key_padding_mask=padding, tgt_is_causal=True, cache=cache).array]
    for t in range(first, tgt.shape[1]):
        parts.append(decoder(tgt[:, t : t + 1], memory, memory_key_padding_mask=padding, cache=cache).array)
    return np.concatenate(parts, 1)


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
        cache = nn.EncoderDecoderCache()
        cached = _decode_in_steps(decoder, tgt, memory, padding, first, cache)
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5)
    assert isinstance(cache, nn.Cache) and cache.get_seq_length() == T and len(cache) == 2
    assert cache.cross_attention_cache.get_seq_length(1) == S  # the memory's keys, stored once


def test_the_deprecated_decoder_cache_decodes_the_same():
    nf.manual_seed(0)
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 2).eval()
    tgt, memory = nf.randn(2, 4, 8), nf.randn(2, 3, 8)
    padding = np.zeros((2, 3), dtype=bool)
    with nf.no_grad():
        expected = _decode_in_steps(decoder, tgt, memory, padding, 2, nn.EncoderDecoderCache())
        with pytest.warns(DeprecationWarning, match="nn.DecoderCache is deprecated: use nn.EncoderDecoderCache"):
            old = nn.DecoderCache(2)
        np.testing.assert_array_equal(_decode_in_steps(decoder, tgt, memory, padding, 2, old), expected)
    assert old.length == 4


def test_reorder_picks_rows_of_both_caches_of_every_layer():
    cache = nn.EncoderDecoderCache()
    rows = nf.tensor(np.arange(3, dtype=np.float32)[:, None, None, None])
    for layer in (0, 1):
        cache.update(rows, rows, layer)
        cache.cross_attention_cache.update(rows + 10, rows + 10, layer)
    cache.reorder_cache(np.array([2, 2, 0]))
    assert cache[1][0].numpy().ravel().tolist() == [2.0, 2.0, 0.0]
    assert cache.cross_attention_cache[0][1].numpy().ravel().tolist() == [12.0, 12.0, 10.0]


def test_multihead_attention_with_a_cache_equals_its_full_forward():
    """Self-attention growing in layer 1 of a cache, cross-attention read back after its first
    call (``static_kv``), and the deprecated ``AttentionCache(static=True)`` doing the same."""
    nf.manual_seed(1)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x, memory = nf.randn(2, 5, 8), nf.randn(2, 3, 8)
    with nf.no_grad():
        full = mha(x, x, x, is_causal=True, attn_mask=nn.Transformer.generate_square_subsequent_mask(5))[0].numpy()
        cross = mha(x, memory, memory)[0].numpy()
        cache = nn.DynamicCache()
        cache.update(nf.zeros(2, 2, 1, 4), nf.zeros(2, 2, 1, 4), 0)  # layer 0 belongs to another attention
        steps = [mha(x[:, :2], x[:, :2], x[:, :2], is_causal=True, cache=cache, layer_idx=1)[0].numpy()]
        steps += [
            mha(x[:, t : t + 1], x[:, t : t + 1], x[:, t : t + 1], cache=cache, layer_idx=1)[0].numpy()
            for t in (2, 3, 4)
        ]
        memory_cache = nn.DynamicCache()
        with pytest.warns(DeprecationWarning, match="nn.AttentionCache is deprecated"):
            old = nn.AttentionCache(static=True)
        crossed, old_crossed = [], []
        for t in range(5):
            step = x[:, t : t + 1]
            # from the second step on, the memory given is ignored: its keys come from the cache
            given = memory if t == 0 else nf.zeros(2, 3, 8)
            crossed.append(mha(step, given, given, cache=memory_cache, static_kv=True)[0].numpy())
            old_crossed.append(mha(step, given, given, cache=old)[0].numpy())
    np.testing.assert_allclose(np.concatenate(steps, 1), full, rtol=1e-5, atol=1e-6)
    assert cache.get_seq_length(1) == 5 and cache.get_seq_length(0) == 1
    np.testing.assert_allclose(np.concatenate(crossed, 1), cross, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate(old_crossed, 1), np.concatenate(crossed, 1))
    assert memory_cache.get_seq_length() == 3 and old.length == 3


def test_a_cache_refuses_masks_it_cannot_honour_and_another_decoders_layers():
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 1)
    x = nf.tensor(np.zeros((1, 2, 8), np.float32))
    with pytest.raises(ValueError, match="pass tgt_is_causal=True, not tgt_mask"):
        decoder(x, x, tgt_mask=nn.Transformer.generate_square_subsequent_mask(2), cache=nn.EncoderDecoderCache())
    deeper = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 3)
    cache = nn.EncoderDecoderCache()
    with nf.no_grad():
        deeper(x, x, tgt_is_causal=True, cache=cache)
        with pytest.raises(ValueError, match="cache has 3 layers, the decoder 1"):
            decoder(x, x, cache=cache)
