"""``nn.DynamicCache``: Hugging Face's cache protocol (update, get_seq_length, reorder_cache),
growth without losing what it holds, and gradients through a cached step's own keys."""

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
