"""``numformer.onnx.export`` itself: every primitive has a mapping or a reason it has none, errors
name the primitive and the module, sizes computed from the inputs stay dynamic, and nothing the
traced graph could get wrong at another size is exported silently."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest
from ort_compare import export_and_compare, ort

import numformer as nf
import numformer.onnx as nfo
import numformer.ops
from numformer import nn
from numformer.autograd import Function
from numformer.models.bert import BertConfig, BertModel
from numformer.nn import functional as F
from numformer.onnx.mapping import TABLE, NotExportable
from numformer.ops.recurrent import LSTMLayer

R = np.random.default_rng(0)
NL = {0: "batch", 1: "length"}


def _primitives(package) -> set:
    """Every Function subclass defined in ``package``'s modules (ops: numformer.ops.*)."""
    import importlib
    import pkgutil

    found = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Function) and cls.__module__ == module.__name__ and not cls.__name__.startswith("_"):
                found.add(cls)
    return found


def test_every_primitive_has_a_mapping_or_a_reason():
    """A primitive added to numformer.ops without an entry in TABLE fails this test."""
    primitives = _primitives(numformer.ops)
    assert len(primitives) > 40
    missing = sorted(cls.__name__ for cls in primitives if cls not in TABLE)
    assert not missing, f"no ONNX mapping and no NotExportable reason: {missing}"
    for cls, entry in TABLE.items():
        assert callable(entry) or (isinstance(entry, NotExportable) and entry.reason), cls


def test_the_coverage_table_names_every_primitive():
    """The docstring's table names in its left column exactly the primitives of TABLE."""
    doc = inspect.getdoc(nfo)
    rows = doc[doc.index("Coverage") : doc.index("Models:")].splitlines()
    top, bottom = [i for i, row in enumerate(rows) if row.startswith("===")]
    width = rows[top].index(" ")
    named = {name.strip() for row in rows[top + 1 : bottom] for name in row[:width].split(",") if name.strip()}
    assert named == {cls.__name__ for cls in TABLE}


class _Unmapped(Function):
    def forward(self, a):
        return a * 2


class Doubler(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        """Shape: ``(N, 4)`` -> ``(N, 4)``."""
        return _Unmapped.apply(self.linear(x))


def test_a_primitive_without_mapping_is_named_with_its_module():
    with pytest.raises(nfo.UnsupportedOperatorError, match=r"_Unmapped \(in module Doubler\).*no ONNX mapping"):
        nfo.export(Doubler(), (nf.randn(2, 4),), io.BytesIO())


class Inner(nn.Module):
    def forward(self, x):
        """Shape: ``(N, L)`` -> ``(N, L)``: dropout even in eval mode, and a loss."""
        return F.dropout(x, 0.5, training=True)


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Tanh(), Inner())

    def forward(self, x):
        """Shape: ``(N, L)`` -> ``(N, L)``."""
        return self.block(x)


class Loss(nn.Module):
    def forward(self, logits, target):
        """Shape: ``(N, C)``, ``(N,)`` -> ``()``."""
        return F.cross_entropy(logits, target)


def test_primitives_with_no_onnx_form_say_why():
    with pytest.raises(nfo.UnsupportedOperatorError, match=r"Dropout \(in module block\.1 \(Inner\)\).*eval mode"):
        nfo.export(Outer(), (nf.randn(2, 3),), io.BytesIO())
    with pytest.raises(nfo.UnsupportedOperatorError, match=r"CrossEntropy \(in module Loss\).*training loss"):
        nfo.export(Loss(), (nf.randn(2, 3), np.array([0, 2])), io.BytesIO())


class ArangeOutside(nn.Module):
    def forward(self, x):
        """Shape: ``(N, L)`` -> ``(N, L)``: adds 0 .. L-1 computed with NumPy (not exportable)."""
        return x + nf.Tensor(np.arange(x.shape[1], dtype=np.float32))


class ShapeBranch(nn.Module):
    def forward(self, x):
        """Shape: ``(N, L)`` -> ``(N, L)``: a path chosen by the length."""
        return x.tanh() if x.shape[1] > 5 else x.relu()


class Unused(nn.Module):
    def forward(self, x, y):
        """Shape: ``(N, L)`` twice -> ``(N, L)``: ignores ``y``."""
        return x * 2


class NumpyOut(nn.Module):
    def forward(self, x):
        """Shape: ``(N, L)`` -> a NumPy array."""
        return x.numpy() * 2


class FixedLength(nn.Module):
    def forward(self, x):
        """Shape: ``(N, 5)`` only."""
        if x.shape[1] != 5:
            raise ValueError("FixedLength: length must be 5")
        return x * 2


def test_what_one_graph_cannot_follow_is_an_error():
    x = nf.randn(2, 5)
    axes = {"x": NL}
    with pytest.raises(
        nfo.OnnxExporterError, match=r"input 1 of Add \(in module ArangeOutside\).*change with the size"
    ):
        nfo.export(ArangeOutside(), (x,), io.BytesIO(), input_names=["x"], dynamic_axes=axes)
    with pytest.raises(nfo.OnnxExporterError, match="different primitives at another size"):
        nfo.export(ShapeBranch(), (x,), io.BytesIO(), input_names=["x"], dynamic_axes=axes)
    with pytest.raises(nfo.OnnxExporterError, match=r"\['y'\] are not used"):
        nfo.export(Unused(), (x, nf.randn(2, 5)), io.BytesIO())
    with pytest.raises(nfo.OnnxExporterError, match="returned a ndarray where a Tensor was expected"):
        nfo.export(NumpyOut(), (x,), io.BytesIO())
    with pytest.raises(nfo.OnnxExporterError, match=r"fails at other sizes.*length 5 -> 7, 10.*length must be 5"):
        nfo.export(FixedLength(), (x,), io.BytesIO(), input_names=["x"], dynamic_axes=axes)
    with pytest.raises(ValueError, match=r"\['x', 'y'\] are one array"):
        nfo.export(Unused(), (x, x), io.BytesIO())
    with pytest.raises(ValueError, match=r"opset_version must be in \[17,"):
        nfo.export(Unused(), (x, nf.randn(2, 5)), io.BytesIO(), opset_version=13)


def test_an_example_that_skips_the_mask_still_exports_the_mask():
    """BertModel skips the attention mask when every token is real; traced (``is_tracing``) it
    takes the masked path, so a graph exported from an all-ones mask applies padded masks."""
    nf.manual_seed(0)
    config = BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )  # fmt: skip
    model = BertModel(config).eval()
    ids = R.integers(1, 30, (2, 6))
    padded = np.ones((3, 8), dtype=np.int64)
    padded[0, 3:] = 0
    export_and_compare(
        model,
        (ids, np.ones_like(ids)),
        ["input_ids", "attention_mask"],
        {"input_ids": NL, "attention_mask": NL},
        [(R.integers(1, 30, (3, 8)), padded)],
    )


class Sizes(nn.Module):
    def forward(self, x):
        """Shape: ``(N, L, E)`` -> ``(N, L - 1, E)``: reshapes through ``(N * L, E)`` and
        ``(N, 2, L, E / 2)``, slices to ``L - 1``."""
        N, L, E = x.shape
        flat = x.reshape(N * L, E).tanh().reshape(N, L, 2, E // 2).permute(0, 2, 1, 3)
        return flat.permute(0, 2, 1, 3).reshape(N, L, E)[:, : L - 1]


def test_sizes_computed_from_the_inputs_stay_dynamic():
    """Products of two dynamic axes and an axis minus one are computed from the inputs' shapes;
    the named axes are the graph's symbolic dims."""
    proto, _ = export_and_compare(
        Sizes(),
        (nf.randn(2, 5, 4),),
        ["x"],
        {"x": NL, "y": {0: "batch", 1: "shorter"}},
        [(nf.randn(3, 7, 4),), (nf.randn(1, 2, 4),)],
        output_names=["y"],
    )
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(proto.graph.input[0]) == ["batch", "length", 4]
    assert dims(proto.graph.output[0]) == ["batch", "shorter", 4]


class ReadsCellStates(nn.Module):
    def __init__(self):
        super().__init__()
        self.w_ih = nn.Parameter(np.zeros((8, 8), dtype=np.float32))
        self.w_hh = nn.Parameter(np.zeros((8, 2), dtype=np.float32))

    def forward(self, x):
        """Shape: ``(N, L, 8)`` -> every step's cell states ``(N, L, 2)``."""
        zeros = nf.Tensor(np.zeros((x.shape[0], 2), dtype=np.float32))
        return LSTMLayer.apply(x, self.w_ih, self.w_hh, zeros, zeros)[1]


def test_an_lstm_read_beyond_what_onnx_gives_is_an_error():
    with pytest.raises(nfo.UnsupportedOperatorError, match=r"reads 1 of the states of LSTMLayer"):
        nfo.export(ReadsCellStates(), (nf.randn(2, 5, 8),), io.BytesIO())


def test_arguments_as_torch_onnx_export_takes_them(tmp_path):
    """A trailing dict of keyword arguments, a file path, names from the forward's signature by
    default; each module's train/eval mode is as it was."""
    nf.manual_seed(0)
    model = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    model.self_attn.eval()  # a mode of its own, kept
    x, pad = nf.randn(2, 5, 8), np.zeros((2, 5), dtype=bool)
    proto = nfo.export(model, (x, {"src_key_padding_mask": pad}), tmp_path / "layer.onnx")
    assert [i.name for i in proto.graph.input] == ["src", "src_key_padding_mask"]
    assert [o.name for o in proto.graph.output] == ["output_0"]
    assert model.training and model.linear1.training and not model.self_attn.training
    session = ort.InferenceSession(str(tmp_path / "layer.onnx"), providers=["CPUExecutionProvider"])
    with nf.no_grad():
        expected = model.eval()(x, src_key_padding_mask=pad).numpy()
    got = session.run(None, {"src": x.numpy(), "src_key_padding_mask": pad})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


class GroupedQuery(nn.Module):
    """Grouped-query attention: 4 query heads over 2 key/value heads (``enable_gqa``)."""

    def __init__(self):
        super().__init__()
        self.q, self.kv = nn.Linear(8, 16), nn.Linear(8, 16)

    def forward(self, x, keep=None):
        """Shape: ``(N, L, 8)`` (causal) -> ``(N, 4, L, 4)``; with a boolean ``keep`` ``(N, 4, L, L)``
        (per query head) or ``(N, 1, L, L)`` (all heads) -> that and the weights ``(N, 4, L, L)``."""
        N, L, _ = x.shape
        q = self.q(x).reshape(N, L, 4, 4).permute(0, 2, 1, 3)
        k, v = self.kv(x).reshape(N, L, 2, 2, 4).permute(2, 0, 3, 1, 4)
        if keep is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return F.scaled_dot_product_attention_with_weights(q, k, v, attn_mask=keep, enable_gqa=True)


def _gqa_inputs(masked: bool, heads: int = 4):
    def inputs(n, l):
        """x, and keep masks (per head, or ``heads=1``: one for all heads) where query 0 of the
        last head in the first row sees no key."""
        if not masked:
            return (nf.randn(n, l, 8),)
        keep = R.random((n, heads, l, l)) < 0.7
        keep[..., 0] = True
        keep[0, heads - 1, 0] = False
        return nf.randn(n, l, 8), keep

    return inputs


@pytest.mark.parametrize(
    ("masked", "heads"), [(False, 4), (True, 4), (True, 1)], ids=["causal", "mask and weights", "one-head mask"]
)
def test_grouped_query_attention_broadcasts_in_onnx(masked, heads):
    """enable_gqa's 5-D queries against unsqueezed keys broadcast in MatMul; the mask, per
    head or one for all heads, reshaped with NumPy to (N, Hkv, G, L, S) or (N, 1, 1, L, S), is
    computed from the graph's input (a Reshape), never baked in; the weights are the attention
    node's second output."""
    nf.manual_seed(0)
    inputs = _gqa_inputs(masked, heads)
    axes = {"x": NL, "keep": {0: "batch", 2: "length", 3: "length"}}
    names = ["x", "keep"][: 1 + masked]
    proto, _ = export_and_compare(
        GroupedQuery(), inputs(2, 5), names, {n: axes[n] for n in names}, [inputs(3, 7), inputs(1, 2)]
    )
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Softmax") == 1 and ops.count("MatMul") == 4  # two Linear, two in attention
    if masked:
        assert [n.op_type for n in proto.graph.node if "keep" in n.input] == ["Reshape"]


class OnlyWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        """Shape: ``(N, L, 8)`` -> the averaged weights ``(N, L, L)`` alone (the node's second output)."""
        return self.attn(x, x, x)[1]


def test_a_second_output_read_alone():
    nf.manual_seed(0)
    proto, _ = export_and_compare(OnlyWeights(), (nf.randn(2, 5, 8),), ["x"], {"x": NL}, [(nf.randn(3, 7, 8),)])
    assert "Softmax" in [n.op_type for n in proto.graph.node]


class Indexing(nn.Module):
    def forward(self, x, rows):
        """Shape: ``(N, L, 4)``, integer ``rows`` ``(K,)`` -> basic ``(N, 1, L - 2, 2)`` and
        advanced ``(K, L, 4)``, ``(N, K)``."""
        return x[..., None, 1:-1, ::2], x[rows], x[:, rows, 0]


def test_basic_and_advanced_indexing_both_export():
    """GetItem (ints, slices, None, Ellipsis: a view) and Index (an integer array: a copy)."""
    rows = np.array([1, 0, 1])
    export_and_compare(
        Indexing(),
        (nf.randn(2, 5, 4), rows),
        ["x", "rows"],
        {"x": NL, "rows": {0: "picked"}},
        [(nf.randn(3, 7, 4), np.array([2, 2, 0, 1]))],
    )


class BooleanIndex(nn.Module):
    def forward(self, x):
        """Shape: ``(N, L)`` -> the positive entries, 1-D (a size that depends on the values)."""
        return x[(x > 0).array]


class TwoArrays(nn.Module):
    def forward(self, x, a, b):
        """Shape: ``(N, L)``, two integer ``(K,)`` -> ``(K,)``."""
        return x[a, b]


def test_advanced_indexing_onnx_cannot_express_is_named():
    with pytest.raises(nfo.UnsupportedOperatorError, match=r"Index \(in module BooleanIndex\).*boolean mask"):
        nfo.export(BooleanIndex(), (nf.randn(2, 5),), io.BytesIO())
    with pytest.raises(nfo.UnsupportedOperatorError, match=r"Index \(in module TwoArrays\).*several integer arrays"):
        nfo.export(TwoArrays(), (nf.randn(2, 5), np.array([0, 1]), np.array([2, 3])), io.BytesIO())


class ShortContext(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True)

    def forward(self, x):
        """Shape: ``(N, L, 8)`` -> ``(N, L, 8)``, L at most 8 (the traces then shrink L)."""
        if x.shape[1] > 8:
            raise ValueError("ShortContext: at most 8 positions")
        return self.layer(x)


@pytest.mark.parametrize(
    ("threshold", "example", "other"),
    [(500, (2, 3), (3, 5)), (900, (2, 8), (3, 6))],
    ids=["plain then blocked", "blocked then plain"],
)
def test_the_attention_kernel_may_change_with_the_size(threshold, example, other):
    """ "auto" picks the plain or the blocked kernel by the scores' bytes, so the traces at other
    sizes may run the other one, with options of its own (block sizes): one attention in the
    graph either way. Scores of (2, 2, 3, 3) float32 are 144 bytes, (3, 2, 5, 5) 600 (the traces
    grow the example); (2, 2, 8, 8) 1,024, (3, 2, 6, 6) 864 (they shrink L, as the forward refuses
    a larger one)."""
    nf.manual_seed(0)
    with F.attention_kernel("auto", threshold_bytes=threshold):
        export_and_compare(ShortContext(), (nf.randn(*example, 8),), ["x"], {"x": NL}, [(nf.randn(*other, 8),)])
