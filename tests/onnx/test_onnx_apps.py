"""``export_app``: an application's trained models (``numformer app NAME train --fast``) to ONNX
files that ONNX Runtime runs as numformer does, at the example's sizes and at larger ones. The
translation (encoder and decoding step) and recommendation (SASRec and its LSTM) apps here; the
others' exports are the model tests' (ViT, time series; classify's is BERT's)."""

from __future__ import annotations

import numpy as np
import pytest
from ort_compare import TOLERANCE, onnx, ort

import numformer as nf
import numformer.onnx as nfo
from numformer.apps import AppError
from numformer.cli import main
from numformer.onnx.folders import APP_MODELS


def _grown(value, axes: dict):
    """``value`` with every dynamic axis 3 longer (its entries repeated)."""
    array = np.asarray(value.array if isinstance(value, nf.Tensor) else value)
    for axis in axes:
        array = np.take(array, np.arange(array.shape[axis] + 3) % array.shape[axis], axis=axis)
    return array


@pytest.mark.parametrize("name", ["translate-numbers", "sasrec"])
def test_an_apps_models_run_in_onnx_runtime_as_in_numformer(name, tmp_path):
    assert main(["app", name, "train", "--fast", "--steps", "2", "--out", str(tmp_path)]) == 0
    written = nfo.export_app(name, tmp_path)
    stems = {"translate-numbers": ["encoder", "decoder"], "sasrec": ["sasrec", "lstm"]}[name]
    assert [e.path.name for e in written] == [f"{s}.onnx" for s in stems]
    assert all(e.path.parent == tmp_path / "onnx" for e in written)
    for exported, (stem, module, args, names, _, axes) in zip(written, APP_MODELS[name](tmp_path)):
        onnx.checker.check_model(str(exported.path))
        session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
        module.eval()
        for inputs in (args, tuple(_grown(a, axes.get(n, {})) for a, n in zip(args, names))):
            with nf.no_grad():
                expected = module(*inputs).numpy()
            feed = {n: np.asarray(a.array if isinstance(a, nf.Tensor) else a) for n, a in zip(names, inputs)}
            got = session.run(None, feed)[0]
            assert got.shape == expected.shape, stem
            assert np.abs(got - expected).max() <= TOLERANCE, stem


def test_export_app_without_a_trained_model_says_how_to_train_one(tmp_path):
    with pytest.raises(AppError, match=r"numformer app vit train"):
        nfo.export_app("vit", tmp_path / "nothing")
    with pytest.raises(ValueError, match="no exportable application 'chess'"):
        nfo.export_app("chess", tmp_path)
