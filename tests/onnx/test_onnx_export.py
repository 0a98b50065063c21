"""``numformer.onnx.export`` itself: every primitive has a mapping or a reason it has none, errors
name the primitive and the module, sizes computed from the inputs stay dynamic, and nothing the
traced graph could get wrong at another size is exported silently."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys

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
    doc = inspect.getdoc(nfo)
    table = doc[doc.index("Coverage") : doc.index("Models:")]
    assert not [cls.__name__ for cls in TABLE if cls.__name__ not in table]


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
        self.w_hh = nn.Parameter(np.zeros((8, 2), dtype=np.float32))

    def forward(self, x):
        """Shape: ``(N, L, 8)`` -> every step's cell states ``(N, L, 2)``."""
        zeros = nf.Tensor(np.zeros((x.shape[0], 2), dtype=np.float32))
        return LSTMLayer.apply(x, self.w_hh, zeros, zeros)[1]


def test_an_lstm_read_beyond_what_onnx_gives_is_an_error():
    with pytest.raises(nfo.UnsupportedOperatorError, match=r"reads 1 of the states of LSTMLayer"):
        nfo.export(ReadsCellStates(), (nf.randn(2, 5, 8),), io.BytesIO())


def test_arguments_as_torch_onnx_export_takes_them(tmp_path):
    """A trailing dict of keyword arguments, a file path, names from the forward's signature by
    default; each module's train/eval mode is as it was."""
    nf.manual_seed(0)
    model = nn.TransformerEncoderLayer(8, 2, 16)
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


def test_importing_numformer_never_imports_onnx():
    code = (
        "import sys, numformer, numformer.nn, numformer.models, numformer.apps, numformer.cli\n"
        "assert not {'onnx', 'onnxruntime', 'numformer.onnx'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
