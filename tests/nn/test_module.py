"""The module system: traversal, state dicts both ways, modes, dtype, hooks, containers, and the
errors bad configurations and bad state dicts get."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import numformer as nf
from numformer import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])

    def forward(self, x):
        x = self.norm(self.fc(x)).relu()
        for b in self.blocks:
            x = b(x)
        return x


def test_names_order_and_counts_match_torch_conventions():
    m = Tiny()
    names = [n for n, _ in m.named_parameters()]
    assert names == [
        "fc.weight",
        "fc.bias",
        "norm.weight",
        "norm.bias",
        "blocks.0.weight",
        "blocks.0.bias",
        "blocks.1.weight",
        "blocks.1.bias",
    ]
    assert list(m.state_dict())[4:7] == ["norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]
    assert m.num_parameters() == 3 * 4 + 4 + 4 + 4 + 16 + 4 + 8 + 2
    assert [n for n, _ in m.named_modules()][:3] == ["", "fc", "norm"]
    assert "# 54 params" in repr(m) and "(fc): Linear(in_features=3" in repr(m)


def test_state_dict_round_trip_both_ways_with_torch():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    t.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(m(nf.Tensor(x)).numpy(), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    torch.manual_seed(1)
    t2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    m.load_state_dict(t2.state_dict())
    np.testing.assert_allclose(m(nf.Tensor(x)).numpy(), t2(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_load_state_dict_lists_every_offending_key_and_changes_nothing():
    m = Tiny()
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    bad = dict(m.state_dict())
    bad.pop("fc.bias")
    bad["extra.weight"] = np.zeros(3)
    bad["blocks.1.weight"] = np.zeros((3, 3))
    bad["fc.weight"] = np.ones((4, 3))
    with pytest.raises(ValueError) as info:
        m.load_state_dict(bad)
    msg = str(info.value)
    assert "blocks.1.weight: expected shape (2, 4), got (3, 3)" in msg
    assert "missing key fc.bias" in msg and "unexpected key extra.weight" in msg
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    loose = {k: v for k, v in bad.items() if k not in ("blocks.1.weight",)}
    result = m.load_state_dict(loose, strict=False)
    assert result.missing_keys == ["fc.bias", "blocks.1.weight"]
    assert result.unexpected_keys == ["extra.weight"]
    assert (
        repr(result)
        == "IncompatibleKeys(missing_keys=['fc.bias', 'blocks.1.weight'], unexpected_keys=['extra.weight'])"
    )
    matched = m.load_state_dict(m.state_dict())
    assert (
        repr(matched) == str(matched) == repr(torch.nn.Linear(1, 1).load_state_dict(torch.nn.Linear(1, 1).state_dict()))
    )
    np.testing.assert_array_equal(m.fc.weight.numpy(), np.ones((4, 3)))


def test_train_eval_zero_grad_to_dtype_and_requires_grad():
    m = Tiny()
    m.eval()
    assert all(not mod.training for mod in m.modules())
    m.train()
    assert m.norm.training
    out = m(nf.randn(6, 3)).sum()
    out.backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m.norm.running_mean.dtype == np.float64
    assert m.norm.num_batches_tracked.dtype == np.int64
    assert m(nf.randn(6, 3, dtype=np.float64)).dtype == np.float64
    m.requires_grad_(False)
    assert m.num_parameters(trainable_only=True) == 0


def test_forward_hooks_and_containers():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seen = []
    handle = m[0].register_forward_hook(lambda mod, inputs, out: seen.append(out.shape))
    m(nf.randn(4, 2))
    handle.remove()
    m(nf.randn(4, 2))
    assert seen == [(4, 3)]
    d = nn.ModuleDict({"a": nn.Linear(1, 1)})
    d["b"] = nn.Linear(1, 2)
    assert list(d) == ["a", "b"] and len(d) == 2 and d.num_parameters() == 2 + 4
    lst = nn.ModuleList([nn.Linear(1, 1)]).append(nn.Linear(1, 1))
    assert len(lst) == 2 and [n for n, _ in lst.named_parameters()][2] == "1.weight"
    clone = copy.deepcopy(lst)
    assert clone[0].weight is not lst[0].weight
    np.testing.assert_array_equal(clone[0].weight.numpy(), lst[0].weight.numpy())


def test_default_initialisations_follow_torch_bounds():
    nf.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    assert np.abs(lin.weight.numpy()).max() <= bound and np.abs(lin.weight.numpy()).max() > 0.9 * bound
    assert np.abs(lin.bias.numpy()).max() <= bound
    emb = nn.Embedding(1000, 64, padding_idx=0)
    assert abs(emb.weight.numpy()[1:].std() - 1.0) < 0.02 and not np.any(emb.weight.numpy()[0])
    mha = nn.MultiheadAttention(64, 4, batch_first=True)
    xavier = np.sqrt(6 / (64 + 192))
    assert np.abs(mha.in_proj_weight.numpy()).max() <= xavier and not np.any(mha.in_proj_bias.numpy())
    assert nn.LayerNorm(5).weight.numpy().tolist() == [1.0] * 5


def test_seed_encoder_parameter_count():
    """Seed section 5: d_model=32, 4 heads, d_ff=64, 2 layers.

    The seed's formula per layer: attention 3 * H * d * (d / H) + d * d = 4096 and feed-forward
    d * d_ff + d_ff + d_ff * d + d = 4192, so 8288 per layer and 16,576 for two. numformer's
    layers (PyTorch's) also carry two LayerNorms (2 * 2 * d = 128 per layer) and attention
    biases (in_proj_bias 3d + out_proj.bias d = 128 per layer), which the seed leaves out.
    """
    d, h, d_ff, layers = 32, 4, 64, 2
    seed_formula = layers * ((h * (d * (d // h)) * 3 + d * d) + (d * d_ff + d_ff + d_ff * d + d))
    assert seed_formula == 16_576
    layer_norm_params = layers * 2 * (2 * d)
    attention_biases = layers * (3 * d + d)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, h, d_ff, norm_first=True, batch_first=True), layers)
    assert enc.num_parameters() == seed_formula + layer_norm_params + attention_biases == 17_088


# --- bad input -------------------------------------------------------------------------------


def test_configuration_and_input_errors():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(3\)"):
        nn.MultiheadAttention(10, 3, batch_first=True)
    with pytest.raises(ValueError, match=r"Linear: input must have 4 features .* got shape \(2, 5\)"):
        nn.Linear(4, 2)(nf.randn(2, 5))
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = nf.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"query must have 8 features .* got shape \(2, 3, 6\)"):
        m(nf.randn(2, 3, 6), x, x)
    with pytest.raises(
        ValueError,
        match=r"key_padding_mask must have shape \(N, S\) = \(2, 3\), "
        r"got \(2, 4\)",
    ):
        m(x, x, x, key_padding_mask=np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(L, S\) = \(3, 3\)"):
        m(x, x, x, attn_mask=np.zeros((4, 4), dtype=bool))
    with pytest.raises(TypeError, match=r"attn_mask must be bool or floating, got dtype int64"):
        m(x, x, x, attn_mask=np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"BatchNorm1d: input must be \(N, 4\)"):
        nn.BatchNorm1d(4)(nf.randn(3, 5))
    with pytest.raises(ValueError, match=r"LSTM: input must be \(N, L, 3\)"):
        nn.LSTM(3, 4, batch_first=True)(nf.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"activation must be one of"):
        nn.TransformerEncoderLayer(8, 2, activation="swish", batch_first=True)


def test_a_state_dict_that_does_not_fit_raises_pytorchs_error_kind():
    """PyTorch raises RuntimeError (what its programs catch); numformer's error is one, and a
    ValueError too (what numformer's own callers catch), listing every problem."""
    import torch

    model = nf.nn.Linear(2, 3)
    with pytest.raises(RuntimeError):
        torch.nn.Linear(2, 3).load_state_dict({"weight": torch.zeros(2, 2)})
    with pytest.raises(RuntimeError, match=r"2 problem\(s\):\n  weight: expected shape \(3, 2\), got \(2, 2\)") as err:
        model.load_state_dict({"weight": np.zeros((2, 2), np.float32)})
    assert isinstance(err.value, ValueError) and "missing key bias" in str(err.value)


def test_hook_handles_stay_apart_when_one_function_is_registered_again():
    """A handle removes its own registration only: the same function registered twice runs
    twice, and a removed handle's second remove leaves a later registration alone."""
    m, calls = nf.nn.Identity(), []

    def hook(module, inputs, output):
        calls.append(1)

    first, _ = m.register_forward_hook(hook), m.register_forward_hook(hook)
    first.remove()
    m.register_forward_hook(hook)
    m(nf.ones(1))
    assert len(calls) == 2
    calls.clear()
    other = nf.nn.Identity()
    handle = other.register_forward_hook(hook)
    handle.remove()
    other.register_forward_hook(hook)
    handle.remove()
    other(nf.ones(1))
    assert len(calls) == 1
