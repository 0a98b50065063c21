"""The plain attention kernel's memory: its weights P kept for backward or recomputed there
(``keeps_weights``). Recomputing gives the kept kernel's bits exactly (backward runs the
forward's chunks again), for any thread count, and the recomputing kernel keeps no (L, S)
array."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from helpers import randn
from numformer.nn import functional as F
from numformer.ops import _threads as parallel
from numformer.ops import attention as kernel


@contextlib.contextmanager
def plain_kernel(keep: bool, threads: int):
    """The plain kernel with P kept or not, on ``threads`` threads that split even small work;
    everything restored after."""
    saved = kernel.keeps_weights, parallel.MIN_ELEMENTS, parallel.MIN_MACS
    kernel.keeps_weights = lambda *sizes: keep
    parallel.MIN_ELEMENTS = parallel.MIN_MACS = 1
    nf.set_num_threads(threads)
    try:
        with F.attention_kernel("plain"):
            yield
    finally:
        kernel.keeps_weights, parallel.MIN_ELEMENTS, parallel.MIN_MACS = saved
        nf.set_num_threads(1)


def _inputs(seed, N, H, L, S, E, mask_kind, dtype):
    q, k = randn(seed, (N, H, L, E), dtype), randn(seed + 1, (N, H, S, E), dtype) * 3
    v = randn(seed + 2, (N, H, S, E + 1), dtype)
    rng = np.random.default_rng(seed)
    mask = {
        "none": None,
        "causal": None,
        "bool": rng.random((N, 1, L, S)) > 0.3,
        "padding": np.arange(S) < rng.integers(0, S + 1, (N, 1, 1, 1)),  # a row may see nothing
        "float": rng.standard_normal((L, S)).astype(dtype),
    }[mask_kind]
    return q, k, v, mask


def _run(q, k, v, mask, causal, seed):
    ts = [nf.Tensor(a.copy(), requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts, attn_mask=mask, is_causal=causal)
    out.backward(randn(seed + 4, out.shape, out.dtype))
    with nf.no_grad():
        inferred = F.scaled_dot_product_attention(*ts, attn_mask=mask, is_causal=causal)
    return [out.numpy(), inferred.numpy()] + [t.grad for t in ts]


@settings(max_examples=40, deadline=None)
@given(
    N=st.integers(1, 4),
    H=st.integers(1, 3),
    L=st.integers(1, 9),
    S=st.integers(1, 9),
    E=st.integers(1, 4),
    mask_kind=st.sampled_from(["none", "causal", "bool", "padding", "float"]),
    threads=st.sampled_from([1, 3]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 999),
)
def test_recomputed_weights_give_the_kept_kernels_bits(N, H, L, S, E, mask_kind, threads, dtype, seed):
    causal = mask_kind == "causal"
    if causal:
        S = L
    q, k, v, mask = _inputs(seed, N, H, L, S, E, mask_kind, dtype)
    with plain_kernel(True, threads):
        kept = _run(q, k, v, mask, causal, seed)
    with plain_kernel(False, threads):
        recomputed = _run(q, k, v, mask, causal, seed)
    for a, b in zip(kept, recomputed, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("T, E, keeps", [(64, 32, True), (256, 64, False), (128, 32, False)])
def test_training_attention_keeps_its_weights_only_where_they_cost_no_more_than_q_k_v(T, E, keeps):
    q, k, v = (nf.Tensor(randn(i, (2, 3, T, E)), requires_grad=True) for i in range(3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    arrays = [a for a in vars(out._fn).values() if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    saved = [a for a in arrays if a.shape[-2:] == (T, T)]  # the causal mask (bool, (T, T)) is no weight
    assert kernel.keeps_weights(T, T, E, E) is keeps
    assert (len(saved) > 0) is keeps, [a.shape for a in saved]


@pytest.mark.parametrize("mask_kind", ["float", "bool"])
def test_a_mask_changed_in_place_after_forward_does_not_change_the_gradients(mask_kind):
    # P is recomputed here (T 64 > 3 x 8): from a copy of the mask, not the caller's array
    q, k, v = (randn(i, (2, 2, 64, 8)) for i in range(3))
    rng = np.random.default_rng(0)
    mask = rng.standard_normal((64, 64)) if mask_kind == "float" else rng.random((2, 1, 64, 64)) > 0.3
    g = randn(5, (2, 2, 64, 8))
    ts = [nf.Tensor(a, requires_grad=True) for a in (q, k, v)]
    F.scaled_dot_product_attention(*ts, attn_mask=mask).backward(g)
    changed = [nf.Tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*changed, attn_mask=mask)
    mask[...] = 0 if mask_kind == "float" else True
    out.backward(g)
    for a, b in zip(ts, changed, strict=True):
        np.testing.assert_array_equal(a.grad, b.grad)


def test_a_mask_as_large_as_the_weights_keeps_the_weights_instead_of_a_copy_of_the_mask():
    q, k, v = (nf.Tensor(randn(i, (2, 3, 64, 8)), requires_grad=True) for i in range(3))
    mask = randn(7, (2, 3, 64, 64))  # a float mask per batch item and head: P's size
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    kept = [a for a in vars(out._fn).values() if isinstance(a, np.ndarray) and a.shape == (2, 3, 64, 64)]
    assert len({id(a) for a in kept}) == 1 and out._fn.masks is None  # P (also as P * D) alone, no mask


@pytest.mark.parametrize("kernel_name", ["plain", "blocked"])
def test_attention_over_no_keys_gives_pytorchs_zeros(kernel_name):
    # S = 0: PyTorch returns a zero output and zero gradients (this was NumPy's reduction error)
    q = nf.Tensor(randn(0, (2, 3, 4, 5)), requires_grad=True)
    k = nf.Tensor(np.zeros((2, 3, 0, 5)), requires_grad=True)
    v = nf.Tensor(np.zeros((2, 3, 0, 6)), requires_grad=True)
    with F.attention_kernel(kernel_name):
        out = F.scaled_dot_product_attention(q, k, v)
        with nf.no_grad():
            inferred = F.scaled_dot_product_attention(q, k, v)
    out.sum().backward()
    tq = torch.tensor(randn(0, (2, 3, 4, 5)), requires_grad=True)
    tk, tv = torch.zeros(2, 3, 0, 5, dtype=tq.dtype), torch.zeros(2, 3, 0, 6, dtype=tq.dtype)
    expected = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
    expected.sum().backward()
    assert out.shape == inferred.shape == tuple(expected.shape)
    np.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
    np.testing.assert_array_equal(inferred.numpy(), expected.detach().numpy())
    np.testing.assert_array_equal(q.grad, tq.grad.numpy())
    assert k.grad.shape == (2, 3, 0, 5) and v.grad.shape == (2, 3, 0, 6)
