"""The exporter's errors (``torch.onnx.errors``' names)."""

from __future__ import annotations


class OnnxExporterError(RuntimeError):
    """A model, or an input, that cannot become an ONNX graph with the forward's meaning."""


class UnsupportedOperatorError(OnnxExporterError):
    """A primitive with no ONNX mapping (or a use of one that ONNX cannot express), naming the
    primitive and the module it ran in."""
