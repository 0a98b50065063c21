"""Every layer against its PyTorch counterpart with weights copied through the state dict:
forward values, input gradients and parameter gradients, in float32 and float64."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from helpers import LOOSE, randn
from numformer import nn

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([np.float32, np.float64])
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def copy_weights(nf_module, torch_module):
    """numformer -> PyTorch through the state dict; keys and shapes must match exactly."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in nf_module.state_dict().items()}
    torch_module.load_state_dict(state, strict=True)
    return torch_module


def compare_modules(nf_m, t_m, arrays, dtype, call=None, t_call=None, seed=0, grad=True, tol=None):
    """Run both modules on the same inputs; compare outputs, input and parameter gradients.

    In float32, where the two differ by more than ``tol``, both run again in float64 from the
    same weights and inputs: numformer's float64 value must match PyTorch's (float64
    tolerance), and numformer's float32 value be at least as close to it as PyTorch's (within
    ``tol``). A deep stack (a whole Transformer) can round PyTorch's float32 gradient further
    from the exact one than the tolerance (measured: 2.3e-5 against numformer's 5.0e-6)."""
    tol = tol or LOOSE[dtype]
    nf_m.to(dtype)
    t_m.to(TORCH_DTYPE[dtype])
    copy_weights(nf_m, t_m)
    exact = (copy.deepcopy(nf_m).to(np.float64), copy.deepcopy(t_m).to(torch.float64)) if dtype == np.float32 else None
    call = call or (lambda m, *xs: m(*xs))
    t_call = t_call or call
    nf_in = [nf.Tensor(a.astype(dtype), requires_grad=grad) for a in arrays]
    t_in = [torch.tensor(a.astype(dtype), requires_grad=grad) for a in arrays]
    out, t_out = call(nf_m, *nf_in), t_call(t_m, *t_in)
    out, t_out = (out[0], t_out[0]) if isinstance(out, tuple) else (out, t_out)
    assert out.dtype == dtype
    g = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
    reference = {}

    def run64(module, make, run):
        ins = [make(a.astype(dtype).astype(np.float64)) for a in arrays]
        o = run(module, *ins)
        o = o[0] if isinstance(o, tuple) else o
        found = {"out": np.asarray(o.detach().numpy(), dtype=np.float64)}
        if grad:
            o.backward(torch.from_numpy(g.astype(np.float64)) if isinstance(o, torch.Tensor) else g.astype(np.float64))
            found.update({("input", i): np.asarray(a.grad, dtype=np.float64) for i, a in enumerate(ins)})
            found.update(
                {
                    ("param", n): np.asarray(p.grad, dtype=np.float64)
                    for n, p in module.named_parameters()
                    if p.grad is not None
                }
            )
        return found

    def close(ours, theirs, key, message=""):
        try:
            np.testing.assert_allclose(ours, theirs, **tol, err_msg=message)
        except AssertionError:
            if exact is None:
                raise
            if not reference:  # both in float64 on the same values, once
                reference["nf"] = run64(exact[0], lambda a: nf.Tensor(a, requires_grad=grad), call)
                reference["torch"] = run64(exact[1], lambda a: torch.tensor(a, requires_grad=grad), t_call)
            ref = reference["nf"][key]
            np.testing.assert_allclose(
                ref, reference["torch"][key], **LOOSE[np.float64], err_msg=f"{message} (float64)"
            )
            ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
            bound = np.abs(theirs - ref) + tol["atol"] + tol["rtol"] * np.abs(ref)
            assert np.all(np.abs(ours - ref) <= bound), f"{message}: further from float64 than PyTorch"

    close(out.numpy(), t_out.detach().numpy(), "out")
    if not grad:
        return
    out.backward(g)
    t_out.backward(torch.from_numpy(g))
    for i, (a, b) in enumerate(zip(nf_in, t_in)):
        close(a.grad, b.grad.numpy(), ("input", i), f"input {i}")
    t_params = dict(t_m.named_parameters())
    for name, p in nf_m.named_parameters():
        tg = t_params[name].grad
        if tg is None:
            assert p.grad is None or not np.any(p.grad), name
            continue
        assert p.grad is not None and p.grad.dtype == dtype, name
        close(p.grad, tg.numpy(), ("param", name), name)


# --- basic layers ----------------------------------------------------------------------------


@given(seed=SEEDS, dtype=DTYPES, bias=st.booleans(), lead=st.sampled_from([(), (3,), (2, 3)]))
def test_linear(seed, dtype, bias, lead):
    nf.manual_seed(seed % 1000)
    compare_modules(nn.Linear(4, 5, bias=bias), torch.nn.Linear(4, 5, bias=bias), [randn(seed, lead + (4,))], dtype)


@given(seed=SEEDS, dtype=DTYPES, pad=st.sampled_from([None, 0, 3]))
def test_embedding(seed, dtype, pad):
    idx = np.random.default_rng(seed).integers(0, 6, (3, 4))
    m, t = nn.Embedding(6, 5, padding_idx=pad), torch.nn.Embedding(6, 5, padding_idx=pad)
    compare_modules(m, t, [], dtype, call=lambda mod: mod(idx), t_call=lambda mod: mod(torch.from_numpy(idx)))
    if pad is not None:
        assert not np.any(m.weight.grad.numpy()[pad])


@given(seed=SEEDS, dtype=DTYPES, affine=st.booleans())
def test_layer_norm(seed, dtype, affine):
    m, t = nn.LayerNorm(6, elementwise_affine=affine), torch.nn.LayerNorm(6, elementwise_affine=affine)
    if affine:
        m.weight.array[...] = randn(seed, (6,))
        m.bias.array[...] = randn(seed + 1, (6,))
    compare_modules(m, t, [randn(seed, (2, 3, 6)) * 3 + 1], dtype)


@given(seed=SEEDS, dtype=DTYPES, lead=st.sampled_from([(1,), (3,), (2, 5), (1, 40)]), bias=st.booleans())
def test_no_grad_path_gives_the_graph_paths_bits(seed, dtype, lead, bias):
    """Without a gradient to record, each layer's one ``forward`` runs its kernels' ``infer``:
    the same bits as the graph path, whatever the row count."""
    nf.manual_seed(seed % 1000)
    layers = [
        (nn.Linear(6, 7, bias=bias), 6),
        (nn.LayerNorm(6, bias=bias), 6),
        (nn.GELU(approximate="tanh"), 7),
        (nn.GELU(), 7),
    ]
    for m, features in layers:
        m.to(dtype)
        x = (randn(seed, lead + (features,)) * 3 + 1).astype(dtype)
        graph = m(nf.Tensor(x, requires_grad=True))
        assert graph.requires_grad
        with nf.no_grad():
            plain = m(nf.Tensor(x))
        assert plain.grad_fn is None and plain.dtype == dtype
        np.testing.assert_array_equal(plain.numpy(), graph.numpy(), err_msg=repr(m))
    emb = nn.Embedding(9, 4, padding_idx=0)
    idx = np.random.default_rng(seed).integers(0, 9, lead)
    graph = emb(idx)
    assert graph.requires_grad
    with nf.no_grad():
        np.testing.assert_array_equal(emb(idx).numpy(), graph.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 4), (5, 4, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_train_and_eval_over_several_steps(dtype, shape, momentum):
    m, t = nn.BatchNorm1d(4, momentum=momentum), torch.nn.BatchNorm1d(4, momentum=momentum)
    m.weight.array[...] = randn(9, (4,))
    m.to(dtype)
    t.to(TORCH_DTYPE[dtype])
    copy_weights(m, t)
    for step in range(4):
        x = randn(step, shape) * 2 + 3
        compare_modules(m, t, [x], dtype) if step == 0 else None
        if step:
            a, b = nf.Tensor(x.astype(dtype), requires_grad=True), torch.tensor(x.astype(dtype))
            np.testing.assert_allclose(m(a).numpy(), t(b).detach().numpy(), **LOOSE[dtype])
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            np.testing.assert_allclose(m.state_dict()[key], t.state_dict()[key].numpy(), **LOOSE[dtype], err_msg=key)
    m.eval()
    t.eval()
    compare_modules(m, t, [randn(7, shape)], dtype)


def test_dropout_module_statistics_and_eval_identity():
    d = nn.Dropout(0.2)
    x = nf.ones(100, 1000)
    y = d(x).numpy()
    assert abs((y == 0).mean() - 0.2) < 0.01 and abs(y.mean() - 1.0) < 0.01
    d.eval()
    assert d(x) is x


@pytest.mark.parametrize("name", ["ReLU", "GELU", "Tanh", "Identity"])
def test_activation_modules(name):
    compare_modules(getattr(nn, name)(), getattr(torch.nn, name)(), [randn(0, (3, 4))], np.float64)


def test_feed_forward_matches_torch_composition():
    ff = nn.FeedForward(8, 16, activation="gelu")
    t = torch.nn.Module()
    t.linear1, t.linear2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)
    compare_modules(
        ff, t, [randn(1, (2, 3, 8))], np.float64, t_call=lambda m, x: m.linear2(torch.nn.functional.gelu(m.linear1(x)))
    )


# --- multi-head attention --------------------------------------------------------------------


@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_multihead_attention(seed, dtype, data):
    E, H = data.draw(st.sampled_from([(8, 2), (12, 3), (4, 1)]))
    cross = data.draw(st.booleans())
    kdim = data.draw(st.sampled_from([None, 5])) if cross else None
    vdim = data.draw(st.sampled_from([None, 7])) if cross else None
    bias = data.draw(st.booleans())
    batched = data.draw(st.booleans())
    N, L = 2, data.draw(st.integers(1, 4))
    S = data.draw(st.integers(1, 4)) if cross else L
    rng = np.random.default_rng(seed)
    lead = (N,) if batched else ()
    q = randn(seed, lead + (L, E))
    k = randn(seed + 1, lead + (S, kdim or E)) if cross else q
    v = randn(seed + 2, lead + (S, vdim or E)) if cross else q
    kpm_kind = data.draw(st.sampled_from(["none", "bool", "float"]))
    am_kind = data.draw(st.sampled_from(["none", "bool", "bool3d", "float"]))
    kpm = am = None
    if kpm_kind != "none":
        kpm = rng.random(lead + (S,)) < 0.3
        kpm[..., 0] = False  # every query keeps one key (fully masked rows differ by design)
        kpm = kpm if kpm_kind == "bool" else np.where(kpm, -1e9, 0.0).astype(dtype)
    if am_kind == "bool":
        am = rng.random((L, S)) < 0.3
        am[:, 0] = False
    elif am_kind == "bool3d":
        am = rng.random(((N if batched else 1) * H, L, S)) < 0.3
        am[..., 0] = False
    elif am_kind == "float":
        am = rng.standard_normal((L, S)).astype(dtype)
    need = data.draw(st.booleans())
    avg = data.draw(st.booleans())
    m = nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)
    t = torch.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)
    kw = {"need_weights": need, "average_attn_weights": avg}
    t_kpm = None if kpm is None else torch.from_numpy(kpm)
    t_am = None if am is None else torch.from_numpy(am)
    arrays = [q] if not cross else [q, k, v]

    def call(mod, *xs):
        a, b, c = (xs * 3)[:3] if not cross else xs
        return mod(a, b, c, key_padding_mask=kpm, attn_mask=am, **kw)

    def t_call(mod, *xs):
        a, b, c = (xs * 3)[:3] if not cross else xs
        return mod(a, b, c, key_padding_mask=t_kpm, attn_mask=t_am, **kw)

    compare_modules(m, t, arrays, dtype, call=call, t_call=t_call)
    if need:
        _, w = call(m, *[nf.Tensor(a.astype(dtype)) for a in arrays])
        _, tw = t_call(t, *[torch.tensor(a.astype(dtype)) for a in arrays])
        np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), **LOOSE[dtype])


def test_multihead_attention_is_causal_builds_the_mask():
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = nf.randn(2, 5, 8)
    causal, _ = m(x, x, x, is_causal=True, need_weights=False)
    explicit, _ = m(x, x, x, attn_mask=~np.tri(5, dtype=bool), need_weights=False)
    np.testing.assert_allclose(causal.numpy(), explicit.numpy())


# --- transformer stacks ----------------------------------------------------------------------


def _stack_masks(rng, N, L, S=None):
    S = S or L
    kpm = rng.random((N, S)) < 0.3
    kpm[:, 0] = False
    return kpm


@given(
    seed=SEEDS,
    dtype=DTYPES,
    norm_first=st.booleans(),
    activation=st.sampled_from(["relu", "gelu"]),
    masks=st.booleans(),
    batched=st.booleans(),
)
def test_encoder_layer_and_stack(seed, dtype, norm_first, activation, masks, batched):
    nf.manual_seed(seed % 1000)
    kw = {"dim_feedforward": 16, "dropout": 0.0, "activation": activation, "norm_first": norm_first}
    layer = nn.TransformerEncoderLayer(8, 2, **kw, batch_first=True)
    t_layer = torch.nn.TransformerEncoderLayer(8, 2, batch_first=True, **kw)
    rng = np.random.default_rng(seed)
    x = randn(seed, (2, 4, 8) if batched else (4, 8))
    mask = torch_mask = kpm = t_kpm = None
    if masks:
        mask = nn.generate_square_subsequent_mask(4, dtype=dtype).numpy()
        torch_mask = torch.from_numpy(mask)
        if batched:
            kpm = _stack_masks(rng, 2, 4)
            t_kpm = torch.from_numpy(kpm)
    compare_modules(
        layer,
        t_layer,
        [x],
        dtype,
        call=lambda m, a: m(a, src_mask=mask, src_key_padding_mask=kpm),
        t_call=lambda m, a: m(a, src_mask=torch_mask, src_key_padding_mask=t_kpm),
    )
    enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8))
    t_enc = torch.nn.TransformerEncoder(t_layer, 2, norm=torch.nn.LayerNorm(8), enable_nested_tensor=False)
    compare_modules(
        enc,
        t_enc,
        [x],
        dtype,
        call=lambda m, a: m(a, mask=mask, src_key_padding_mask=kpm),
        t_call=lambda m, a: m(a, mask=torch_mask, src_key_padding_mask=t_kpm),
    )


@given(seed=SEEDS, dtype=DTYPES, norm_first=st.booleans(), masks=st.booleans())
def test_decoder_layer_and_full_transformer(seed, dtype, norm_first, masks):
    nf.manual_seed(seed % 1000)
    kw = {"dim_feedforward": 16, "dropout": 0.0, "norm_first": norm_first}
    rng = np.random.default_rng(seed)
    src, tgt = randn(seed, (2, 5, 8)), randn(seed + 1, (2, 3, 8))
    tgt_mask = t_tgt_mask = kpm = t_kpm = mkpm = t_mkpm = None
    if masks:
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=dtype).numpy()
        t_tgt_mask = torch.from_numpy(tgt_mask)
        kpm, mkpm = _stack_masks(rng, 2, 3), _stack_masks(rng, 2, 5)
        t_kpm, t_mkpm = torch.from_numpy(kpm), torch.from_numpy(mkpm)
    layer = nn.TransformerDecoderLayer(8, 2, **kw, batch_first=True)
    t_layer = torch.nn.TransformerDecoderLayer(8, 2, batch_first=True, **kw)
    compare_modules(
        layer,
        t_layer,
        [tgt, src],
        dtype,
        call=lambda m, a, b: m(a, b, tgt_mask=tgt_mask, tgt_key_padding_mask=kpm, memory_key_padding_mask=mkpm),
        t_call=lambda m, a, b: m(a, b, tgt_mask=t_tgt_mask, tgt_key_padding_mask=t_kpm, memory_key_padding_mask=t_mkpm),
    )
    model = nn.Transformer(8, 2, num_encoder_layers=2, num_decoder_layers=2, **kw, batch_first=True)
    t_model = torch.nn.Transformer(8, 2, num_encoder_layers=2, num_decoder_layers=2, batch_first=True, **kw)
    compare_modules(
        model,
        t_model,
        [src, tgt],
        dtype,
        call=lambda m, a, b: m(
            a, b, tgt_mask=tgt_mask, src_key_padding_mask=mkpm, tgt_key_padding_mask=kpm, memory_key_padding_mask=mkpm
        ),
        t_call=lambda m, a, b: m(
            a,
            b,
            tgt_mask=t_tgt_mask,
            src_key_padding_mask=t_mkpm,
            tgt_key_padding_mask=t_kpm,
            memory_key_padding_mask=t_mkpm,
        ),
    )


def test_weights_move_from_torch_to_numformer():
    torch.manual_seed(0)
    t = torch.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True)
    m = nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True)
    result = m.load_state_dict(t.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    src, tgt = randn(0, (2, 4, 8)).astype(np.float32), randn(1, (2, 3, 8)).astype(np.float32)
    out = m(nf.Tensor(src), nf.Tensor(tgt)).numpy()
    ref = t(torch.from_numpy(src), torch.from_numpy(tgt)).detach().numpy()
    np.testing.assert_allclose(out, ref, **LOOSE[np.float32])


# --- recurrent -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@settings(max_examples=25)
@given(
    seed=SEEDS,
    dtype=DTYPES,
    layers=st.integers(1, 2),
    batched=st.booleans(),
    with_state=st.booleans(),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
)
def test_recurrent(cls, seed, dtype, layers, batched, with_state, bidirectional, batch_first):
    """Every layer kind, one or two layers, one or two directions, batch-first or not, batched
    or not, with or without initial states: output and every gradient against PyTorch."""
    nf.manual_seed(seed % 1000)
    kw = {"num_layers": layers, "batch_first": batch_first, "bidirectional": bidirectional}
    m, t = getattr(nn, cls)(3, 4, **kw), getattr(torch.nn, cls)(3, 4, **kw)
    x = randn(seed, ((2, 5, 3) if batch_first else (5, 2, 3)) if batched else (5, 3))
    D = 2 if bidirectional else 1
    state_shape = (D * layers, 2, 4) if batched else (D * layers, 4)
    h0 = randn(seed + 1, state_shape).astype(dtype)
    c0 = randn(seed + 2, state_shape).astype(dtype)
    if not with_state:
        call = t_call = None
    elif cls != "LSTM":
        call = lambda mod, a: mod(a, nf.Tensor(h0))  # noqa: E731
        t_call = lambda mod, a: mod(a, torch.from_numpy(h0))  # noqa: E731
    else:
        call = lambda mod, a: mod(a, (nf.Tensor(h0), nf.Tensor(c0)))  # noqa: E731
        t_call = lambda mod, a: mod(a, (torch.from_numpy(h0), torch.from_numpy(c0)))  # noqa: E731
    compare_modules(m, t, [x], dtype, call=call, t_call=t_call)


@pytest.mark.parametrize("kind", ["LSTM", "RNN-tanh", "RNN-relu", "GRU"])
@settings(max_examples=25)
@given(
    seed=SEEDS,
    dtype=DTYPES,
    layers=st.integers(1, 2),
    bias=st.booleans(),
    length=st.integers(1, 6),
    bidirectional=st.booleans(),
)
def test_recurrent_final_states_carry_gradients_as_pytorchs(kind, seed, dtype, layers, bias, length, bidirectional):
    """A loss on the output, h_n and (LSTM) c_n at once: the gradients reaching the input, the
    initial states and every weight equal PyTorch's (the carries through time, both ways, and
    both directions)."""
    cls, act = (kind.split("-") + ["tanh"])[:2]
    extra = {"nonlinearity": act} if cls == "RNN" else {}
    extra["bidirectional"] = bidirectional
    nf.manual_seed(seed % 1000)
    m = getattr(nn, cls)(3, 4, num_layers=layers, bias=bias, **extra, batch_first=True).to(dtype)
    t = getattr(torch.nn, cls)(3, 4, num_layers=layers, bias=bias, batch_first=True, **extra).to(TORCH_DTYPE[dtype])
    copy_weights(m, t)
    D = 2 if bidirectional else 1
    arrays = [randn(seed, (2, length, 3)), randn(seed + 1, (D * layers, 2, 4)), randn(seed + 2, (D * layers, 2, 4))]
    weights = [randn(seed + 3, (2, length, 4 * D)), randn(seed + 4, (D * layers, 2, 4))]
    weights.append(randn(seed + 5, (D * layers, 2, 4)))
    nf_in = [nf.Tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]

    def loss(outputs, w, tensor):
        out, states = outputs
        states = states if cls == "LSTM" else (states,)
        return sum((o * tensor(x.astype(dtype))).sum() for o, x in zip((out, *states), w))

    state = (nf_in[1], nf_in[2]) if cls == "LSTM" else nf_in[1]
    t_state = (t_in[1], t_in[2]) if cls == "LSTM" else t_in[1]
    loss(m(nf_in[0], state), weights, nf.Tensor).backward()
    loss(t(t_in[0], t_state), weights, torch.from_numpy).backward()
    for i, (a, b) in enumerate(zip(nf_in[: 3 if cls == "LSTM" else 2], t_in)):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), **LOOSE[dtype], err_msg=f"input {i}")
    t_params = dict(t.named_parameters())
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[name].grad.numpy(), **LOOSE[dtype], err_msg=name)


def recurrent_inputs(kind, seed, n, length, features, hidden, bias, dtype=np.float64):
    """Arrays for a layer primitive of ``ops.recurrent``: x, W_ih, W_hh, the initial states and,
    with ``bias``, b_ih and b_hh."""
    gates = {"LSTM": 4, "GRU": 3}.get(kind, 1)
    shapes = [(n, length, features), (gates * hidden, features), (gates * hidden, hidden), (n, hidden)]
    shapes += [(n, hidden)] if kind == "LSTM" else []
    shapes += [(gates * hidden,)] * 2 if bias else []
    return [randn(seed + k, shape).astype(dtype) for k, shape in enumerate(shapes)]


@pytest.mark.parametrize("kind", ["LSTM", "RNN-tanh", "RNN-relu", "GRU"])
@given(
    seed=SEEDS,
    n=st.integers(1, 3),
    length=st.integers(1, 4),
    features=st.integers(1, 3),
    hidden=st.integers(1, 3),
    bias=st.booleans(),
    time_major=st.booleans(),
)
def test_recurrent_layer_kernels_pass_gradcheck(kind, seed, n, length, features, hidden, bias, time_major):
    """The one-layer time loops (``ops.recurrent``) against central differences, float64, every
    input: x (batch-first memory, or a transposed view of time-major memory, which the kernel
    reads in place), both weight matrices, the initial states and both biases."""
    from numformer.ops.recurrent import GRULayer, LSTMLayer, RNNLayer
    from numformer.testing import gradcheck

    arrays = recurrent_inputs(kind, seed, n, length, features, hidden, bias)
    if time_major:
        arrays[0] = np.ascontiguousarray(arrays[0].swapaxes(0, 1)).swapaxes(0, 1)
    inputs = [nf.Tensor(a, requires_grad=True) for a in arrays]
    if kind == "LSTM":
        assert gradcheck(lambda *xs: LSTMLayer.apply(*xs), inputs)
    elif kind == "GRU":
        assert gradcheck(lambda *xs: GRULayer.apply(*xs), inputs)
    else:
        assert gradcheck(lambda *xs: RNNLayer.apply(*xs, relu=kind == "RNN-relu"), inputs)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@settings(max_examples=20)
@given(seed=SEEDS, n=st.integers(1, 3), length=st.integers(1, 9), hidden=st.integers(1, 4), span=st.integers(1, 4))
def test_recurrent_layers_in_blocks_of_steps_equal_them_in_one_block(kind, seed, n, length, hidden, span):
    """The loops run a block of steps at a time (``TIME_TILE``: each block's input projections,
    and the LSTM's backward factors and input gradients): any block length, ragged last block
    included, gives the one-block outputs and gradients, to round-off: a GEMM over fewer rows may
    order its sums differently."""
    from numformer.ops import recurrent

    layer = getattr(recurrent, f"{kind}Layer")
    gates = {"LSTM": 4, "GRU": 3}.get(kind, 1)
    arrays = recurrent_inputs(kind, seed, n, length, 3, hidden, bias=True, dtype=np.float32)

    def run(tile):
        saved, recurrent.TIME_TILE = recurrent.TIME_TILE, tile
        try:
            inputs = [nf.Tensor(a, requires_grad=True) for a in arrays]
            out = layer.apply(*inputs)
            out.backward(randn(seed + 9, out.shape).astype(np.float32))
            return [out.numpy()] + [t.grad for t in inputs]
        finally:
            recurrent.TIME_TILE = saved

    for a, b in zip(run(1 << 30), run(span * n * gates * hidden), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@given(seed=SEEDS, dtype=DTYPES, frozen=st.booleans())
def test_recurrent_time_major_inference_and_frozen_weights(cls, seed, dtype, frozen):
    """batch_first=False against PyTorch; with weights frozen only the input gets a gradient,
    still PyTorch's; the no-grad output equals the recorded one bit for bit."""
    nf.manual_seed(seed % 1000)
    m = getattr(nn, cls)(3, 4, num_layers=2, batch_first=False)
    t = getattr(torch.nn, cls)(3, 4, num_layers=2)
    if frozen:
        for p in (*m.parameters(), *t.parameters()):
            p.requires_grad = False
    compare_modules(m, t, [randn(seed, (5, 2, 3))], dtype)
    x = nf.Tensor(randn(seed, (5, 2, 3)).astype(dtype), requires_grad=True)
    recorded = m(x)[0].numpy()
    with nf.no_grad():
        np.testing.assert_array_equal(m(x)[0].numpy(), recorded)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_input_changed_in_place_is_an_error_only_where_a_gradient_reads_it(cls):
    """As a Linear's: the input is kept for W_ih's gradient only, so with frozen weights a
    later in-place change of it is no error (PyTorch's too); with trainable ones it is, and a
    weight changed in place always is (every gradient runs the loop back through W_hh)."""
    for frozen in (True, False):
        m = getattr(nn, cls)(3, 4, dtype=np.float64)
        for p in m.parameters():
            p.requires_grad = not frozen
        x = nf.Tensor(randn(0, (5, 2, 3)), requires_grad=True)
        y = x * 1.0
        out, _ = m(y)
        y.add_(1.0)
        if frozen:
            out.sum().backward()
            assert x.grad is not None
        else:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                out.sum().backward()
    out, _ = m(nf.Tensor(randn(1, (5, 2, 3)), requires_grad=True))
    with nf.no_grad():
        m.weight_hh_l0.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_refuses_an_empty_sequence_and_a_state_of_another_dtype(cls):
    m = getattr(nn, cls)(3, 4, batch_first=True)
    with pytest.raises(ValueError, match="at least one step, got shape"):
        m(nf.zeros(2, 0, 3))
    h = nf.Tensor(np.zeros((1, 2, 4)))  # float64 against float32 input
    with pytest.raises(TypeError, match="initial state (hx|h_0) must be float32 like the input, got float64"):
        m(nf.zeros(2, 5, 3), (h, h) if cls == "LSTM" else h)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_bad_arguments_get_one_clear_error(cls):
    """Each names the argument and what it got, never an IndexError or ZeroDivisionError from
    deep inside, nor a silent plain layer for LSTM's proj_size."""
    make = getattr(nn, cls)
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0"):
        make(3, 0)
    with pytest.raises(TypeError, match="input_size must be an integer, got float 2.5"):  # PyTorch: TypeError
        make(2.5, 4)
    for dropout in (1.5, -0.1, "0.5", None, True):
        with pytest.raises(ValueError, match=f"dropout must be a number in \\[0, 1\\], got {re.escape(repr(dropout))}"):
            make(3, 4, dropout=dropout)
    with pytest.raises(TypeError, match="bidirectional must be True or False, got 'yes'"):
        make(3, 4, bidirectional="yes")
    if cls == "LSTM":
        with pytest.raises(ValueError, match="proj_size is not supported, got 2"):
            make(3, 4, proj_size=2)
    assert make(3, 4).bidirectional is False and make(3, 4).proj_size == 0  # PyTorch's attributes
    with pytest.raises(TypeError, match="batch_first must be True or False, got 'no'"):
        make(3, 4, batch_first="no")
    assert "batch_first=False" in repr(make(3, 4))  # PyTorch's default
    with pytest.raises(TypeError, match="input must be a numformer Tensor, got torch.Tensor"):
        make(3, 4)(torch.zeros(2, 5, 3))
    with pytest.raises(TypeError, match="input must be float32 like the weights, got float64"):
        make(3, 4)(nf.Tensor(np.zeros((2, 5, 3))))
    # a sequence-first input to a batch-first layer: the state's N says which dim is N
    state = nf.zeros(1, 2, 4)
    with pytest.raises(RuntimeError, match=r"got \(1, 2, 4\) \(N = 6 is the input's dim 0: batch_first=True\)"):
        make(3, 4, batch_first=True)(nf.zeros(6, 2, 3), (state, state) if cls == "LSTM" else state)
    m = make(3, 4)
    with pytest.raises(TypeError, match="input must be a numformer Tensor, got numpy.ndarray"):
        m(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(RuntimeError, match=r"input must be \(L, N, 3\)"):  # PyTorch: RuntimeError
        make(3, 4, batch_first=False)(nf.zeros(5, 2, 7))
    with pytest.raises(ValueError, match=r"input must be \(L, N, 3\) or \(L, 3\), got shape \(1, 5, 2, 3\)"):
        make(3, 4, batch_first=False)(nf.zeros(1, 5, 2, 3))  # PyTorch: ValueError for the dims
    with pytest.warns(UserWarning, match="dropout=0.5 with num_layers=1 drops nothing"):  # as PyTorch warns
        make(3, 4, dropout=0.5)
    with pytest.raises(ValueError, match=r"at least one step, got shape \(0, 2, 3\)"):  # sequence-first: L is dim 0
        make(3, 4, batch_first=False)(nf.zeros(0, 2, 3))
    with pytest.raises(ValueError, match=r"at least one step, got shape \(0, 3\)"):  # unbatched
        m(nf.zeros(0, 3))
    with pytest.raises(TypeError, match=f"{cls}.__init__\\(\\) got an unexpected keyword argument 'colour'"):
        make(3, 4, colour=1)
    h = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(TypeError, match="initial state (hx|h_0) must be a numformer Tensor, got numpy.ndarray"):
        m(nf.zeros(2, 5, 3), (h, h) if cls == "LSTM" else h)
    if cls == "LSTM":
        with pytest.raises(TypeError, match=r"hx must be a \(h_0, c_0\) pair of Tensors, got Tensor"):
            m(nf.zeros(2, 5, 3), nf.zeros(1, 2, 4))
        with pytest.raises(TypeError, match=r"pair of Tensors, got \(Tensor, NoneType\)"):  # as PyTorch: no half state
            m(nf.zeros(2, 5, 3), (nf.zeros(1, 2, 4), None))
        with pytest.raises(RuntimeError, match=r"initial state c_0 must have shape \(1, 5, 4\), got \(1, 5, 6\)"):
            m(nf.zeros(2, 5, 3), (nf.zeros(1, 5, 4), nf.zeros(1, 5, 6)))  # which of the two is wrong
    else:
        with pytest.raises(TypeError, match="initial state hx must be a numformer Tensor, got tuple"):
            m(nf.zeros(2, 5, 3), (nf.zeros(1, 2, 4), nf.zeros(1, 2, 4)))


# --- positions (seed section 4) --------------------------------------------------------------


def _seed_positional_encoding(max_len, d_model):
    """The seed's formula, transcribed (section 4)."""
    pe = np.zeros((max_len, d_model))
    position = np.arange(max_len).reshape(-1, 1)
    div_term = np.exp(np.arange(0, d_model, 2) * -(np.log(10000.0) / d_model))
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)
    return pe


def test_sinusoidal_encoding_equals_seed_formula_and_module_adds_it():
    pe = nn.functional.sinusoidal_positional_encoding(50, 16, dtype=np.float64)
    np.testing.assert_allclose(pe, _seed_positional_encoding(50, 16), atol=1e-15)
    m = nn.SinusoidalPositionalEncoding(16, max_len=50)
    assert m.pe.shape == (50, 16) and "pe" in m.state_dict() and m.num_parameters() == 0
    x = nf.zeros(2, 7, 16)
    np.testing.assert_allclose(m(x).numpy()[1], pe[:7], atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 17])
def test_shift_by_k_is_one_fixed_block_rotation_for_every_position(k):
    d = 16
    pe = nn.functional.sinusoidal_positional_encoding(200, d, dtype=np.float64)
    rotation = np.zeros((d, d))
    for i in range(d // 2):
        w = 1.0 / 10000 ** (2 * i / d)
        c, s = np.cos(w * k), np.sin(w * k)
        # (sin(a + b), cos(a + b)) = [[cos b, sin b], [-sin b, cos b]] (sin a, cos a)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, s], [-s, c]]
    shifted = pe[:-k] @ rotation.T
    assert np.abs(shifted - pe[k:]).max() < 1e-9


def test_cosine_similarity_falls_with_small_distances():
    pe = nn.functional.sinusoidal_positional_encoding(100, 64, dtype=np.float64)
    unit = pe / np.linalg.norm(pe, axis=1, keepdims=True)
    sims = [unit[10] @ unit[10 + d] for d in range(0, 6)]
    assert all(a > b for a, b in zip(sims, sims[1:]))


def test_learned_positions_and_max_len_error():
    m = nn.LearnedPositionalEmbedding(8, 4)
    x = nf.zeros(2, 5, 4)
    np.testing.assert_allclose(m(x).numpy()[0], m.weight.numpy()[:5])
    with pytest.raises(ValueError, match=r"length 9 at offset 0 exceeds max_len 8"):
        m(nf.zeros(1, 9, 4))
    with pytest.raises(ValueError, match=r"exceeds max_len 50"):
        nn.SinusoidalPositionalEncoding(16, max_len=50)(nf.zeros(51, 16))


def test_rotary_embedding_matches_reference_and_is_relative():
    dim, L = 8, 6
    rope = nn.RotaryEmbedding(dim, max_len=32).double()
    x = randn(0, (2, L, dim))
    # Reference rotate-half RoPE in torch.
    inv = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    ang = torch.arange(L, dtype=torch.float64)[:, None] * inv[None]
    ang = torch.cat([ang, ang], -1)

    def reference(t):
        rotated = torch.cat([-t[..., dim // 2 :], t[..., : dim // 2]], -1)
        return t * ang.cos() + rotated * ang.sin()

    compare_modules(rope, torch.nn.Module(), [x], np.float64, call=lambda m, a: m(a), t_call=lambda m, a: reference(a))
    # q_p . k_s depends only on p - s.
    q, k = nf.Tensor(randn(1, (1, dim))), nf.Tensor(randn(2, (1, dim)))
    dots = [float((rope(q, offset=p) * rope(k, offset=p - 2)).sum().item()) for p in (2, 5, 9)]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-12)
    assert "cos" not in rope.state_dict()  # tables are rebuilt, not saved


def test_encoder_feed_forward_runs_relu_inside_the_gemm_and_keeps_hooks_working():
    """The encoder layer's ReLU rides in linear1's GEMM (``nn.layers.linear_then``), giving exactly
    the values of the separate modules; a hook on linear1 or on the activation makes the layer
    call them one by one, and the hook sees what it would see then."""
    nf.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    x = nf.Tensor(randn(0, (3, 16, 16), dtype=np.float32))  # 48 rows: the GEMM's wide path
    fused = layer(x).numpy()
    seen = []
    for module in (layer.linear1, layer.activation):
        handle = module.register_forward_hook(lambda m, args, out: seen.append(out.numpy().copy()))
        np.testing.assert_array_equal(layer(x).numpy(), fused)
        handle.remove()
    pre, post = seen
    assert (pre < 0).any() and (post >= 0).all()
    np.testing.assert_array_equal(np.maximum(pre, 0), post)
