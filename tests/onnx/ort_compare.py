"""Shared by the ONNX tests: export a module, check the file with ONNX's checker, run it in ONNX
Runtime at the example's sizes and at others, and compare with numformer's own forward."""

from __future__ import annotations

import io

import numpy as np
import pytest

import numformer as nf

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import numformer.onnx as nfo  # noqa: E402 - after the skip: it needs onnx
from numformer.onnx.tracer import flatten_outputs  # noqa: E402

# The largest difference from numformer's forward an exported model may show (float32 throughout;
# measured at most 8.3e-7 over every module and model here).
TOLERANCE = 1e-5


def _feed(value) -> np.ndarray:
    return np.asarray(value.array if isinstance(value, nf.Tensor) else value)


def export_and_compare(model, args, names, axes, other_args=(), output_names=None, opset_version=None):
    """Export ``model(*args)`` with ``dynamic_axes=axes``; check it; run it in ONNX Runtime on
    ``args`` and each of ``other_args`` (other sizes); every output must have numformer's shape
    and be within ``TOLERANCE``. Returns ``(proto, largest difference)``."""
    model.eval()
    buffer = io.BytesIO()
    proto = nfo.export(
        model,
        args,
        buffer,
        input_names=names,
        output_names=output_names,
        dynamic_axes=axes,
        opset_version=opset_version,
    )
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    largest = 0.0
    for run in (args, *other_args):
        with nf.no_grad():
            expected = flatten_outputs(model(*run))
        got = session.run(None, {name: _feed(v) for name, v in zip(names, run)})
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, e.shape, g.dtype, e.dtype)
            largest = max(largest, float(np.abs(g - e.numpy()).max()) if g.size else 0.0)
    assert largest <= TOLERANCE, largest
    return proto, largest
