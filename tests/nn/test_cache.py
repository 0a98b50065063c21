"""The caches of the one protocol, Hugging Face's (update, ``cache[layer]``, get_seq_length,
reorder_cache): ``nn.DynamicCache``'s growth without losing what it holds and gradients through
a cached step's own keys; ``nn.StaticCache``'s writes at shared and per-row positions."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from helpers import randn
from numformer import nn


def kv(seed, T, N=2, H=3, D=4):
    return nf.Tensor(randn(seed, (N, H, T, D)).astype(np.float32)), nf.Tensor(
        randn(seed + 1, (N, H, T, D)).astype(np.float32)
    )


@pytest.mark.parametrize("max_cache_len", [None, 1, 6, 50])
def test_updates_append_and_return_everything_cached(max_cache_len):
    cache = nn.DynamicCache(max_cache_len=max_cache_len)
    assert isinstance(cache, nn.Cache) and cache.get_seq_length() == 0
    parts = {0: ([], []), 1: ([], [])}
    for step, T in enumerate([3, 1, 1, 4, 1]):  # a prompt, then single tokens, then a chunk
        for layer in (0, 1):
            k, v = kv(10 * step + layer, T)
            keys, values = cache.update(k, v, layer)
            parts[layer][0].append(k.numpy())
            parts[layer][1].append(v.numpy())
            np.testing.assert_array_equal(keys.numpy(), np.concatenate(parts[layer][0], axis=2))
            np.testing.assert_array_equal(values.numpy(), np.concatenate(parts[layer][1], axis=2))
        assert cache.get_seq_length() == cache.get_seq_length(1) == sum([3, 1, 1, 4, 1][: step + 1])
    assert len(cache) == 2 and cache.get_seq_length(5) == 0


def test_reorder_cache_keeps_the_rows_beam_search_picks():
    cache = nn.DynamicCache()
    k, v = kv(0, 5, N=3)
    cache.update(k, v, 0)
    cache.reorder_cache(np.array([2, 2, 0]))
    keys, values = cache.update(*kv(1, 1, N=3), 0)
    np.testing.assert_array_equal(keys.numpy()[:, :, :5], k.numpy()[[2, 2, 0]])
    np.testing.assert_array_equal(values.numpy()[:, :, :5], v.numpy()[[2, 2, 0]])


def test_a_cached_step_keeps_its_own_keys_in_the_graph():
    cache = nn.DynamicCache()
    cache.update(*kv(0, 4), 0)
    k = nf.Tensor(randn(5, (2, 3, 1, 4)).astype(np.float32), requires_grad=True)
    v = nf.Tensor(randn(6, (2, 3, 1, 4)).astype(np.float32), requires_grad=True)
    keys, values = cache.update(k, v, 0)
    (keys * 2 + values * 3).sum().backward()
    np.testing.assert_array_equal(k.grad.numpy(), np.full(k.shape, 2, np.float32))
    np.testing.assert_array_equal(v.grad.numpy(), np.full(v.shape, 3, np.float32))


def test_misuse_is_named():
    cache = nn.DynamicCache()
    with pytest.raises(ValueError, match="layer 1 updated before layer 0"):
        cache.update(*kv(0, 1), 1)
    cache.update(*kv(0, 1), 0)
    with pytest.raises(ValueError, match="holds keys of shape"):
        cache.update(*kv(0, 1, H=2), 0)
    with pytest.raises(ValueError, match="max_cache_len"):
        nn.DynamicCache(max_cache_len=0)


@pytest.mark.parametrize("cache", [nn.DynamicCache(), nn.StaticCache(8)], ids=["dynamic", "static"])
def test_getitem_reads_what_a_layer_holds_without_storing(cache):
    k, v = kv(0, 3)
    cache.update(k, v, 0)
    keys, values = cache[0]
    np.testing.assert_array_equal(keys.numpy(), k.numpy())
    np.testing.assert_array_equal(values.numpy(), v.numpy())
    assert cache.get_seq_length() == 3
    with pytest.raises(IndexError, match="layer 1 holds nothing"):
        cache[1]


def test_static_cache_writes_at_shared_and_per_row_positions():
    cache = nn.StaticCache(max_cache_len=8)
    expected = np.zeros((2, 3, 8, 4), np.float32)
    k, v = kv(0, 3)
    keys, _ = cache.update(k, v, 0)  # no positions: after what it holds (0, 1, 2)
    expected[:, :, :3] = k.numpy()
    np.testing.assert_array_equal(keys.numpy(), expected[:, :, :3])
    k, v = kv(2, 2)
    keys, _ = cache.update(k, v, 0, {"cache_position": np.array([5, 3])})  # shared, out of order
    expected[:, :, [5, 3]] = k.numpy()
    np.testing.assert_array_equal(keys.numpy(), expected[:, :, :6])  # up to the last position written
    k, v = kv(4, 1)
    keys, values = cache.update(k, v, 0, {"cache_position": np.array([[6], [4]])})  # one position per row
    expected[0, :, 6], expected[1, :, 4] = k.numpy()[0, :, 0], k.numpy()[1, :, 0]
    np.testing.assert_array_equal(keys.numpy(), expected[:, :, :7])
    assert cache.get_seq_length() == 7 and values.shape == (2, 3, 7, 4)
    cache.reorder_cache(np.array([1, 1]))
    np.testing.assert_array_equal(cache[0][0].numpy(), expected[[1, 1], :, :7])


def test_static_cache_misuse_is_named():
    cache = nn.StaticCache(4)
    with pytest.raises(ValueError, match=r"cache_position must be in \[0, max_cache_len=4\), got \[3, 4\]"):
        cache.update(*kv(0, 2), 0, {"cache_position": np.array([3, 4])})
    with pytest.raises(ValueError, match=r"cache_position must be integers of shape \(T,\) = \(2,\) or \(N, T\)"):
        cache.update(*kv(0, 2), 0, {"cache_position": np.array([0, 1, 2])})
    k = nf.Tensor(randn(5, (2, 3, 1, 4)).astype(np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="StaticCache: keys require gradients"):
        cache.update(k, k, 0)
    with pytest.raises(ValueError, match="max_cache_len must be >= 1"):
        nn.StaticCache(0)


def test_encoder_decoder_cache_holds_two_caches():
    cache = nn.EncoderDecoderCache()
    k, v = kv(0, 2)
    cache.update(k, v, 0)  # the self-attention's
    cache.cross_attention_cache.update(*kv(5, 7), 0)
    assert cache.get_seq_length() == 2 and len(cache) == 1
    assert cache.cross_attention_cache.get_seq_length() == 7
    np.testing.assert_array_equal(cache[0][0].numpy(), k.numpy())
