"""Every ``nn`` module exported to ONNX, checked, and run in ONNX Runtime at three sizes (the
example's and two others, batch and length both changed) against numformer's forward.

Largest difference measured: 8.3e-7 (float32, nn.Transformer); the tests hold each to ``TOLERANCE``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from ort_compare import export_and_compare as check

import numformer as nf
from numformer import nn

R = np.random.default_rng(0)
SIZES = [(2, 5), (3, 8), (1, 3)]  # (batch, length): the example's, then two others
NL = {0: "batch", 1: "length"}


def f32(*shape):
    return nf.Tensor(R.standard_normal(shape).astype(np.float32))


def ids(shape, high, low=0):
    return R.integers(low, high, shape)


def padding(n, s):
    """True at padding: the first row's last two keys, the rest real."""
    mask = np.zeros((n, s), dtype=bool)
    mask[0, s - 2 :] = True
    return mask


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, key_padding_mask):
        """Shape: ``(N, L, 8)``, ``(N, L)`` -> ``(N, L, 8)`` and weights ``(N, L, L)``."""
        return self.attn(x, x, x, key_padding_mask=key_padding_mask)


class Maths(nn.Module):
    """The tensor API's newer primitives in one forward: einsum, erf, prod."""

    def forward(self, x):
        """Shape: ``(N, L, 4)`` -> ``(N, L, L)``."""
        scores = nf.einsum("nld,nkd->nlk", x, x) / 2
        return scores.erf() + nf.einsum("...d->...", x.tanh()).prod(-1, keepdim=True).unsqueeze(-1)


class CrossAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, kdim=5, vdim=3, batch_first=True)

    def forward(self, q, k, v, attn_mask):
        """Shape: ``(N, L, 8)``, ``(N, S, 5)``, ``(N, S, 3)``, float ``(L, S)`` -> ``(N, L, 8)``
        and per-head weights ``(N, 2, L, S)``."""
        return self.attn(q, k, v, attn_mask=attn_mask, average_attn_weights=False)


class Encoder(nn.Module):
    def __init__(self, norm_first):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, 0.1, activation="gelu", norm_first=norm_first, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, nn.LayerNorm(8))

    def forward(self, x, pad):
        """Shape: ``(N, L, 8)``, ``(N, L)`` -> ``(N, L, 8)``, causal and padded."""
        return self.encoder(x, src_key_padding_mask=pad, is_causal=True)


class EncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, 0.1, batch_first=True)

    def forward(self, x, pad):
        """Shape: ``(N, L, 8)``, ``(N, L)`` -> ``(N, L, 8)``."""
        return self.layer(x, src_key_padding_mask=pad)


class Decoder(nn.Module):
    def __init__(self, layers):
        super().__init__()
        layer = nn.TransformerDecoderLayer(8, 2, 16, 0.1, batch_first=True)
        self.decoder = layer if layers == 0 else nn.TransformerDecoder(layer, layers)

    def forward(self, tgt, memory, pad):
        """Shape: ``(N, T, 8)``, ``(N, S, 8)``, ``(N, S)`` -> ``(N, T, 8)``."""
        return self.decoder(tgt, memory, memory_key_padding_mask=pad, tgt_is_causal=True)


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = nn.Transformer(8, 2, 1, 2, 16, 0.1, batch_first=True)

    def forward(self, src, tgt, pad):
        """Shape: ``(N, S, 8)``, ``(N, T, 8)``, ``(N, S)`` -> ``(N, T, 8)``."""
        return self.transformer(src, tgt, src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True)


class LSTMWithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, num_layers=2, batch_first=False)

    def forward(self, x, h, c):
        """Shape: ``(L, N, 4)``, ``(2, N, 6)`` twice -> ``(L, N, 6)`` and ``(h_n, c_n)``."""
        return self.lstm(x, (h, c))


class Activations(nn.Module):
    """Every activation module on the same input, side by side."""

    def __init__(self):
        super().__init__()
        self.acts = nn.ModuleList(
            [
                nn.Sigmoid(),
                nn.LeakyReLU(0.1),
                nn.ELU(0.7),
                nn.CELU(0.5),
                nn.SELU(),
                nn.Hardtanh(-2.0, 1.5),
                nn.ReLU6(),
                nn.Softplus(2.0, 3.0),
                nn.LogSigmoid(),
                nn.Hardsigmoid(),
                nn.Hardswish(),
                nn.Mish(),
                nn.Softsign(),
                nn.GLU(),
                nn.Softmax(-1),
                nn.LogSoftmax(dim=-1),
                nn.Softmin(-1),
            ]
        )

    def forward(self, x):
        """Shape: ``(N, L, 4)`` -> ``(N, L, 66)``: each activation's output (GLU's halved)."""
        return nf.cat([act(x * 3) for act in self.acts], dim=-1)


def cnn():
    """The seed's kind of CNN, every convolution and pooling option on the way."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout2d(0.2),
        nn.Conv2d(4, 4, 3, padding="same", groups=2, padding_mode="reflect"),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Conv2d(4, 6, (2, 1), dilation=(1, 2), padding=(1, 2), padding_mode="circular"),
        nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        nn.Conv2d(6, 8, 2, stride=2, bias=False),  # stride = kernel: a patch embedding
        nn.AdaptiveAvgPool2d((1, 2)),
        nn.Flatten(),
        nn.Unflatten(1, (2, 8)),
    )
    model[1].running_mean.array[:] = R.standard_normal(4)
    model[1].running_var.array[:] = R.random(4) + 0.5
    return model


class Cosine(nn.Module):
    def __init__(self):
        super().__init__()
        self.cos = nn.CosineSimilarity(dim=-1)

    def forward(self, a, b):
        """Shape: ``(N, L, 4)`` twice -> ``(N, L)``."""
        return self.cos(a, b)


def batch_norm():
    module = nn.BatchNorm1d(4)
    module.running_mean.array[:] = R.standard_normal(4)
    module.running_var.array[:] = R.random(4) + 0.5
    return module


def x_only(width):
    return lambda n, l: (f32(n, l, width),)


class GatedFeedForward(nn.Module):
    """Llama's MLP: down(swiglu(gate(x), up(x)))."""

    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(8, 4)

    def forward(self, x):
        """Shape: ``(N, L, 4)`` -> ``(N, L, 4)``."""
        return self.down(nn.functional.swiglu(self.gate(x), self.up(x)))


class Rotated(nn.Module):
    """Queries rotated by fixed angles (the Llama models' rotary kernel): six positions."""

    def __init__(self):
        super().__init__()
        angles = np.arange(6)[:, None] * 10000.0 ** (-np.arange(0, 4, 2) / 4)
        angles = np.concatenate([angles, angles], axis=-1).astype(np.float32)
        self.cos, self.sin = np.cos(angles), np.sin(angles)

    def forward(self, x):
        """Shape: ``(N, 2, 6, 4)`` -> the same."""
        return nn.functional.apply_rotary_emb(x, self.cos, self.sin)


# name -> (module factory, inputs at (batch, length), input names, dynamic axes)
CASES = {
    "Linear": (lambda: nn.Linear(4, 6), x_only(4), ["x"], {"x": NL}),
    "Embedding": (lambda: nn.Embedding(10, 4, padding_idx=0), lambda n, l: (ids((n, l), 10),), ["ids"], {"ids": NL}),
    "LayerNorm": (lambda: nn.LayerNorm(4), x_only(4), ["x"], {"x": NL}),
    "LayerNorm no bias": (lambda: nn.LayerNorm(4, bias=False), x_only(4), ["x"], {"x": NL}),
    "BatchNorm1d": (batch_norm, lambda n, l: (f32(n, 4, l),), ["x"], {"x": {0: "batch", 2: "length"}}),
    "Dropout": (lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), x_only(4), ["x"], {"x": NL}),
    "ReLU": (lambda: nn.ReLU(), x_only(4), ["x"], {"x": NL}),
    "RMSNorm": (lambda: nn.RMSNorm(4, eps=1e-6), x_only(4), ["x"], {"x": NL}),
    "SiLU": (lambda: nn.SiLU(), x_only(4), ["x"], {"x": NL}),
    "SwiGLU feed-forward": (GatedFeedForward, x_only(4), ["x"], {"x": NL}),
    "rotary kernel": (Rotated, lambda n, l: (f32(n, 2, 6, 4),), ["x"], {"x": {0: "batch"}}),
    "GELU": (lambda: nn.GELU(), x_only(4), ["x"], {"x": NL}),
    "GELU tanh": (lambda: nn.GELU(approximate="tanh"), x_only(4), ["x"], {"x": NL}),
    "Tanh": (lambda: nn.Tanh(), x_only(4), ["x"], {"x": NL}),
    "Identity": (lambda: nn.Sequential(nn.Identity(), nn.Tanh()), x_only(4), ["x"], {"x": NL}),
    "FeedForward": (lambda: nn.FeedForward(4, 8, "relu"), x_only(4), ["x"], {"x": NL}),
    "MultiheadAttention self, padding": (
        SelfAttention,
        lambda n, l: (f32(n, l, 8), padding(n, l)),
        ["x", "key_padding_mask"],
        {"x": NL, "key_padding_mask": NL},
    ),
    "MultiheadAttention cross, float mask": (
        CrossAttention,
        lambda n, l: (f32(n, l, 8), f32(n, l + 2, 5), f32(n, l + 2, 3), f32(l, l + 2).array),
        ["q", "k", "v", "attn_mask"],
        {"q": NL, "k": {0: "batch", 1: "keys"}, "v": {0: "batch", 1: "keys"}, "attn_mask": {0: "length", 1: "keys"}},
    ),
    "SinusoidalPositionalEncoding": (lambda: nn.SinusoidalPositionalEncoding(4, 16), x_only(4), ["x"], {"x": NL}),
    "LearnedPositionalEmbedding": (lambda: nn.LearnedPositionalEmbedding(16, 4), x_only(4), ["x"], {"x": NL}),
    "RotaryEmbedding": (
        lambda: nn.RotaryEmbedding(4, 16),
        lambda n, l: (f32(n, 2, l, 4),),
        ["x"],
        {"x": {0: "batch", 2: "length"}},
    ),
    "TransformerEncoderLayer": (
        EncoderLayer,
        lambda n, l: (f32(n, l, 8), padding(n, l)),
        ["x", "pad"],
        {"x": NL, "pad": NL},
    ),
    "TransformerEncoder pre-LN, causal": (
        lambda: Encoder(True),
        lambda n, l: (f32(n, l, 8), padding(n, l)),
        ["x", "pad"],
        {"x": NL, "pad": NL},
    ),
    "TransformerDecoderLayer": (
        lambda: Decoder(0),
        lambda n, l: (f32(n, l, 8), f32(n, l + 1, 8), padding(n, l + 1)),
        ["tgt", "memory", "pad"],
        {"tgt": NL, "memory": {0: "batch", 1: "source"}, "pad": {0: "batch", 1: "source"}},
    ),
    "TransformerDecoder": (
        lambda: Decoder(2),
        lambda n, l: (f32(n, l, 8), f32(n, l + 1, 8), padding(n, l + 1)),
        ["tgt", "memory", "pad"],
        {"tgt": NL, "memory": {0: "batch", 1: "source"}, "pad": {0: "batch", 1: "source"}},
    ),
    "Transformer": (
        Transformer,
        lambda n, l: (f32(n, l + 1, 8), f32(n, l, 8), padding(n, l + 1)),
        ["src", "tgt", "pad"],
        {"src": {0: "batch", 1: "source"}, "tgt": NL, "pad": {0: "batch", 1: "source"}},
    ),
    "einsum, erf and prod (functions, not a module)": (Maths, x_only(4), ["x"], {"x": NL}),
    "RNN": (lambda: nn.RNN(4, 6, num_layers=2, batch_first=True), x_only(4), ["x"], {"x": NL}),
    "RNN relu, no bias": (
        lambda: nn.RNN(4, 6, nonlinearity="relu", bias=False, batch_first=True),
        x_only(4),
        ["x"],
        {"x": NL},
    ),
    "LSTM": (lambda: nn.LSTM(4, 6, num_layers=2, batch_first=True), x_only(4), ["x"], {"x": NL}),
    "GRU": (lambda: nn.GRU(4, 6, num_layers=2, batch_first=True), x_only(4), ["x"], {"x": NL}),
    "GRU bidirectional, no bias": (
        lambda: nn.GRU(4, 6, bias=False, batch_first=True, bidirectional=True),
        x_only(4),
        ["x"],
        {"x": NL},
    ),
    "LSTM bidirectional": (
        lambda: nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True),
        x_only(4),
        ["x"],
        {"x": NL},
    ),
    "Activations": (Activations, x_only(4), ["x"], {"x": NL}),
    "CNN": (cnn, lambda n, l: (f32(n, 3, 12, 12),), ["x"], {"x": {0: "batch"}}),
    "Conv1d and pooling over length": (
        lambda: nn.Sequential(
            nn.Conv1d(4, 6, 3, padding="same", dilation=2),
            nn.Dropout1d(0.3),
            nn.MaxPool1d(2, ceil_mode=True),
            nn.Conv1d(6, 6, 2, padding=1, groups=3, padding_mode="replicate"),
            nn.AvgPool1d(2, padding=1),
        ),
        lambda n, l: (f32(n, 4, l + 4),),
        ["x"],
        {"x": {0: "batch", 2: "length"}},
    ),
    "AdaptiveAvgPool1d": (lambda: nn.AdaptiveAvgPool1d(3), lambda n, l: (f32(n, 4, 7),), ["x"], {"x": {0: "batch"}}),
    "CosineSimilarity": (Cosine, lambda n, l: (f32(n, l, 4), f32(n, l, 4)), ["a", "b"], {"a": NL, "b": NL}),
    "LSTM with states, sequence first": (
        LSTMWithState,
        lambda n, l: (f32(l, n, 4), f32(2, n, 6), f32(2, n, 6)),
        ["x", "h0", "c0"],
        {"x": {0: "length", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_module_runs_in_onnx_runtime_as_in_numformer(name):
    make, inputs, names, axes = CASES[name]
    nf.manual_seed(0)
    model = make()
    check(model, inputs(*SIZES[0]), names, axes, [inputs(*s) for s in SIZES[1:]])


def test_every_nn_module_has_a_case():
    """A module added to numformer.nn without an ONNX case here fails this test."""
    exported = {
        name
        for name in nn.__all__
        if inspect.isclass(getattr(nn, name))
        and issubclass(getattr(nn, name), nn.Module)
        and getattr(nn, name).forward is not nn.Module.forward
    }
    covered = set()
    for make, *_ in CASES.values():
        nf.manual_seed(0)
        covered |= {type(m).__name__ for m in make().modules()}
    containers = {"Sequential"}  # runs its children: covered by the cases that use it
    # training losses: their targets are no input of a deployed model (NotExportable, but MSELoss)
    losses = {name for name in exported if issubclass(getattr(nn, name), nn.modules.loss._Loss)}
    assert exported - covered - containers - losses == set()


def test_lstm_and_rnn_become_onnx_recurrent_operators():
    """ONNX's own LSTM (gates reordered from PyTorch's i, f, g, o) and RNN, no unrolled loop;
    the last states equal numformer's."""
    nf.manual_seed(0)
    proto, _ = check(
        nn.LSTM(4, 6, num_layers=2, batch_first=True), (f32(2, 5, 4),), ["x"], {"x": NL}, [(f32(3, 9, 4),)]
    )
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and not {"Loop", "Scan"} & set(ops)
    proto, _ = check(nn.RNN(4, 6, batch_first=True), (f32(2, 5, 4),), ["x"], {"x": NL}, [(f32(3, 9, 4),)])
    assert [n.op_type for n in proto.graph.node].count("RNN") == 1


def test_a_query_with_every_key_masked_gives_numformers_zeros():
    """A batch row that is all padding: numformer gives its queries zero attention (not NaN), and
    so does the graph."""

    def inputs(n, l):
        pad = padding(n, l)
        pad[-1] = True
        return f32(n, l, 8), pad

    nf.manual_seed(0)
    check(SelfAttention(), inputs(2, 5), ["x", "key_padding_mask"], {"x": NL, "key_padding_mask": NL}, [inputs(3, 7)])


def test_opset_20_uses_onnx_gelu():
    nf.manual_seed(0)
    proto, _ = check(nn.GELU(), x_only(4)(2, 5), ["x"], {"x": NL}, [x_only(4)(3, 7)], opset_version=20)
    assert [n.op_type for n in proto.graph.node] == ["Gelu", "Identity"]
    assert proto.opset_import[0].version == 20
