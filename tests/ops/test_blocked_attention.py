"""The blocked (flash) attention kernel: same values and gradients as the plain kernel and
PyTorch, for every mask kind and ragged block edges; gradcheck; dropout; the automatic choice;
and the memory it saves (measured with tracemalloc, never timed)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import LOOSE, randn
from numformer.nn import functional as F
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**31 - 1)


def _case(data, seed):
    batch = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    L, S = data.draw(st.integers(1, 13)), data.draw(st.integers(1, 13))
    E = data.draw(st.integers(1, 5))
    q, k, v = randn(seed, batch + (L, E)), randn(seed + 1, batch + (S, E)), randn(seed + 2, batch + (S, E))
    kind = data.draw(st.sampled_from(["none", "bool", "float", "causal", "key_row", "empty_rows"]))
    rng = np.random.default_rng(seed)
    mask = None
    if kind in ("bool", "empty_rows"):
        mask = rng.random(batch + (L, S)) > 0.4
        if kind == "bool":
            mask[..., 0] = True
        else:
            mask[..., 0, :] = False  # query 0 may attend to nothing
    elif kind == "float":
        mask = rng.standard_normal((L, S))
    elif kind == "key_row":
        mask = rng.random((1, S)) > 0.3
        mask[..., 0] = True
    blocks = data.draw(st.sampled_from([(1, 1), (2, 3), (4, 5), (16, 16)]))
    return q, k, v, mask, kind == "causal", blocks


def _run(kernel, arrays, mask, causal, blocks, dtype, grad):
    inputs = [nf.Tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    m = None if mask is None else mask if mask.dtype == bool else mask.astype(dtype)
    with F.attention_kernel(kernel, block_q=blocks[0], block_k=blocks[1]):
        out = F.scaled_dot_product_attention(*inputs, attn_mask=m, is_causal=causal)
    assert type(out._fn).__name__ == {"plain": "ScaledDotProductAttention", "blocked": "BlockedAttention"}[kernel]
    out.backward(grad.astype(dtype))
    return [out.numpy()] + [t.grad for t in inputs]


@given(seed=SEEDS, data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_blocked_equals_plain(seed, data, dtype):
    q, k, v, mask, causal, blocks = _case(data, seed)
    if causal and q.shape[-2] > k.shape[-2]:
        q = q[..., : k.shape[-2], :]
    g = randn(seed + 3, np.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + q.shape[-2:-1] + v.shape[-1:])
    if mask is not None:
        g = np.broadcast_to(g, np.broadcast_shapes(g.shape[:-2], mask.shape[:-2]) + g.shape[-2:]).copy()
    plain = _run("plain", [q, k, v], mask, causal, blocks, dtype, g)
    blocked = _run("blocked", [q, k, v], mask, causal, blocks, dtype, g)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else LOOSE[np.float32]
    for name, a, b in zip(["out", "dq", "dk", "dv"], plain, blocked):
        np.testing.assert_allclose(b, a, **tol, err_msg=name)
        assert np.isfinite(b).all() and b.dtype == dtype


def test_blocked_matches_torch_and_gradchecks():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 20, 8)) for _ in range(3))
    ins = [nf.Tensor(a, requires_grad=True) for a in (q, k, v)]
    tins = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    with F.attention_kernel("blocked", block_q=6, block_k=7):
        out = F.scaled_dot_product_attention(*ins, is_causal=True)
        ref = torch.nn.functional.scaled_dot_product_attention(*tins, is_causal=True)
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
        out.sum().backward()
        ref.sum().backward()
        for a, b in zip(ins, tins):
            np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-11)
        small = [nf.Tensor(randn(i, (2, 5, 3)), requires_grad=True) for i in range(3)]
        assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), small)

        def with_dropout(a, b, c):
            nf.manual_seed(11)  # the same per-block masks at every evaluation
            return F.scaled_dot_product_attention(a, b, c, dropout_p=0.3)

        assert gradcheck(with_dropout, small)


def test_blocked_dropout_keeps_the_expectation():
    nf.manual_seed(0)
    v = nf.Tensor(np.ones((1, 256, 4), dtype=np.float32))
    q = nf.zeros(1, 256, 4)
    with F.attention_kernel("blocked", block_q=64, block_k=64):
        out = F.scaled_dot_product_attention(q, q, v, dropout_p=0.25).numpy()
    # uniform attention over 256 ones, a quarter of the weights dropped and the rest scaled
    assert abs(out.mean() - 1.0) < 0.02 and out.std() > 0.01


def test_auto_picks_the_blocked_kernel_for_large_score_matrices():
    q = nf.randn(1, 2, 64, 8)
    q.requires_grad = True
    with F.attention_kernel("auto", threshold_bytes=1000):
        assert type(F.scaled_dot_product_attention(q, q, q)._fn).__name__ == "BlockedAttention"
        out, w = F.scaled_dot_product_attention_with_weights(q, q, q)  # weights need the matrix
        assert type(out._fn).__name__ == "ScaledDotProductAttention" and w.shape == (1, 2, 64, 64)
    assert type(F.scaled_dot_product_attention(q, q, q)._fn).__name__ == "ScaledDotProductAttention"
    with F.attention_kernel("auto", causal_length=64):  # long causal attention: blocked skips tiles
        assert type(F.scaled_dot_product_attention(q, q, q, is_causal=True)._fn).__name__ == "BlockedAttention"
        assert type(F.scaled_dot_product_attention(q, q, q)._fn).__name__ == "ScaledDotProductAttention"
        short = q[:, :, :63]
        assert type(F.scaled_dot_product_attention(short, short, short, is_causal=True)._fn).__name__ == (
            "ScaledDotProductAttention"
        )
    with pytest.raises(ValueError, match="kernel must be 'auto', 'plain' or 'blocked'"):
        with F.attention_kernel("flash"):
            pass


def test_blocked_kernel_never_holds_the_full_score_matrix():
    rng = np.random.default_rng(0)
    heads, T, d = 4, 2048, 32
    full_scores = heads * T * T * 4  # bytes of one float32 (heads, T, T) matrix: 64 MiB
    peaks = {}
    for kernel in ("plain", "blocked"):
        q, k, v = (
            nf.Tensor(rng.standard_normal((1, heads, T, d)).astype(np.float32), requires_grad=True) for _ in range(3)
        )
        tracemalloc.start()
        with F.attention_kernel(kernel):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            out.backward(np.ones(out.shape, dtype=np.float32))
        peaks[kernel] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["plain"] > 2 * full_scores  # scores and probabilities, plus backward temporaries
    assert peaks["blocked"] < full_scores  # never even one full (heads, T, T) matrix
