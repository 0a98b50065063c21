"""Attention weights are in the graph: a loss on them reaches query, key and the module's
projections, as in PyTorch (checked against PyTorch and against finite differences)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import numformer as nf
from numformer import nn
from numformer.nn import functional as F
from numformer.testing import gradcheck


def _torch_weights(q, k, mask, is_causal):
    s = q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1])
    if is_causal:
        mask = torch.ones(s.shape[-2:], dtype=torch.bool).tril()
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    return s.softmax(-1)


@given(
    seed=st.integers(0, 999),
    batch=st.sampled_from([(), (2,), (2, 3)]),
    L=st.integers(1, 5),
    S=st.integers(1, 5),
    mask=st.sampled_from(["none", "bool", "float", "causal"]),
)
def test_functional_weight_gradients_match_pytorch(seed, batch, L, S, mask):
    rng = np.random.default_rng(seed)
    if mask == "causal":
        S = L
    q, k, v = (rng.standard_normal(batch + (n, 4)) for n in (L, S, S))
    r = rng.standard_normal(batch + (L, S))
    m = None
    if mask == "bool":
        m = rng.random((L, S)) > 0.4
        m[:, 0] = True
    elif mask == "float":
        m = rng.standard_normal((L, S))
    ours = [nf.Tensor(a, requires_grad=True) for a in (q, k, v)]
    out, w = F.scaled_dot_product_attention_with_weights(*ours, attn_mask=m, is_causal=mask == "causal")
    assert w.requires_grad
    ((w * nf.Tensor(r)).sum() + (out * out).sum()).backward()
    ref = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    tw = _torch_weights(ref[0], ref[1], None if m is None else torch.from_numpy(m), mask == "causal")
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    ((tw * torch.from_numpy(r)).sum() + ((tw @ ref[2]) ** 2).sum()).backward()
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("padding", [False, True])
def test_module_weight_gradients_match_pytorch(average, padding):
    nf.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).to(np.float64)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    ref.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in mha.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 8))
    pad = np.zeros((2, 5), dtype=bool)
    if padding:
        pad[1, 3:] = True
    r = rng.standard_normal((2, 5, 5) if average else (2, 2, 5, 5))
    xs = nf.Tensor(x, requires_grad=True)
    out, w = mha(xs, xs, xs, key_padding_mask=pad, average_attn_weights=average)
    (w * nf.Tensor(r)).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    _, tw = ref(tx, tx, tx, key_padding_mask=torch.from_numpy(pad), average_attn_weights=average)
    (tw * torch.from_numpy(r)).sum().backward()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xs.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    params = dict(ref.named_parameters())
    for name, p in mha.named_parameters():
        expected = params[name].grad  # None for out_proj: the weights do not depend on it
        if expected is None:
            assert p.grad is None or not p.grad.any(), name
        else:
            np.testing.assert_allclose(p.grad, expected.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


def test_weight_gradients_with_dropout_match_finite_differences():
    rng = np.random.default_rng(2)
    q, k, v = (nf.Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True) for _ in range(3))
    r = nf.Tensor(rng.standard_normal((2, 3, 3)))

    def weighted(q, k, v):
        nf.manual_seed(7)  # the same dropout mask at every evaluation
        out, w = F.scaled_dot_product_attention_with_weights(q, k, v, dropout_p=0.3)
        return (w * r).sum() + (out * out).sum()

    assert gradcheck(weighted, [q, k, v])


def test_a_causal_mask_is_recognised_and_takes_the_causal_kernel():
    from numformer.nn.attention import is_causal_mask

    T = 6
    bool_causal = np.triu(np.ones((T, T), dtype=bool), 1)
    float_causal = nn.Transformer.generate_square_subsequent_mask(T)
    assert is_causal_mask(bool_causal, T) and is_causal_mask(float_causal, T)
    not_causal = bool_causal.copy()
    not_causal[0, 0] = True
    assert not is_causal_mask(not_causal, T) and not is_causal_mask(bool_causal, T + 1)
    assert not is_causal_mask(np.where(bool_causal, -1e9, 0.0), T)  # a large finite value is not -inf
    nf.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, norm_first=True, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2).to(np.float64)
    x = nf.Tensor(np.random.default_rng(0).standard_normal((2, T, 8)))
    causal = enc(x, is_causal=True).numpy()
    np.testing.assert_array_equal(enc(x, mask=bool_causal).numpy(), causal)  # the same kernel, the same bits
    np.testing.assert_array_equal(enc(x, mask=float_causal).numpy(), causal)
    general = enc(x, mask=np.where(bool_causal, -1e9, 0.0)).numpy()  # a general mask, the same maths
    np.testing.assert_allclose(general, causal, rtol=1e-12, atol=1e-12)
