"""``numformer app NAME export`` (``numformer.onnx.export_app`` over ``App.onnx_models``): every
application's trained models (``train --fast --steps 1``; classify's fine-tuned MiniLM replaced
by a tiny classifier, as training it costs seconds) written as ONNX files that ONNX Runtime runs
as numformer does, at the example's sizes and with every dynamic axis 3 longer; the verb's
one-line errors (exit 2)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ort_compare import TOLERANCE, onnx, ort

import numformer as nf
from numformer import apps
from numformer.apps import App
from numformer.cli import main
from numformer.models.bert import BertConfig, BertForSequenceClassification, BertModel
from numformer.onnx import export_app
from numformer.onnx.tracer import flatten_outputs

STEMS = {
    "translate-numbers": ["encoder", "decoder"],
    "vit": ["model"],
    "forecast": ["co2-transformer", "co2-lstm", "elec_equip-transformer", "elec_equip-lstm"],
    "anomaly": ["model"],
    "sasrec": ["sasrec", "lstm"],
}


def _grown(value, axes: dict) -> np.ndarray:
    """``value`` with every dynamic axis 3 longer (its entries repeated)."""
    array = np.asarray(value.array if isinstance(value, nf.Tensor) else value)
    for axis in axes:
        array = np.take(array, np.arange(array.shape[axis] + 3) % array.shape[axis], axis=axis)
    return array


@pytest.mark.parametrize("name", list(STEMS))
def test_app_export_writes_what_onnx_runtime_runs_as_numformer(name, tmp_path, capsys):
    assert main(["app", name, "train", "--fast", "--steps", "1", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["app", name, "export", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    models = apps.get(name).onnx_models(tmp_path)
    assert [m.stem for m in models] == STEMS[name]
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(f"{s}.onnx" for s in STEMS[name])
    for m in models:
        path = tmp_path / "onnx" / f"{m.stem}.onnx"
        assert f"{path}: {name}: " in printed
        runs_as_numformer(path, m)


def runs_as_numformer(path, m) -> None:
    """The ONNX file at ``path`` is valid and gives ``m.module``'s outputs on ``m``'s example
    and on it grown along every dynamic axis."""
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == m.input_names
    m.module.eval()
    grown = tuple(_grown(a, m.dynamic_axes.get(n, {})) for a, n in zip(m.example_args, m.input_names))
    for inputs in (m.example_args, grown):
        with nf.no_grad():
            expected = flatten_outputs(m.module(*inputs))
        feed = {n: np.asarray(a.array if isinstance(a, nf.Tensor) else a) for n, a in zip(m.input_names, inputs)}
        got = session.run(None, feed)
        assert len(got) == len(expected) == len(m.output_names), m.stem
        for g, e in zip(got, expected):
            assert g.shape == e.shape, m.stem
            assert np.abs(g - e.numpy()).max() <= TOLERANCE, m.stem


def test_classify_exports_the_model_its_loader_reads(tmp_path, monkeypatch):
    """Classify's ``onnx_models`` on what ``Classify._model`` reads from ``out/model`` (a tiny
    classifier here; the loader itself is the app tests')."""
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    tiny = BertForSequenceClassification(BertModel(config), 3, pooling="mean")
    app = apps.get("classify")
    read = []
    monkeypatch.setattr(type(app), "_model", lambda self, folder: read.append(folder) or tiny.eval())
    (written,) = export_app("classify", tmp_path)
    assert read == [tmp_path / "model"] and written.path == tmp_path / "onnx" / "model.onnx"
    assert written.inputs == ["input_ids: (batch, sequence)", "attention_mask: (batch, sequence)"]
    assert written.outputs == ["logits: (batch, 3)"]
    (m,) = app.onnx_models(tmp_path)
    runs_as_numformer(written.path, m)


def test_onnx_out_names_the_folder_and_an_export_again_replaces_the_files(tmp_path, capsys):
    run, deployed = str(tmp_path / "run"), str(tmp_path / "deployed")
    assert main(["app", "anomaly", "train", "--fast", "--steps", "1", "--out", run]) == 0
    written = export_app("anomaly", run, deployed)
    assert [e.path for e in written] == [tmp_path / "deployed" / "model.onnx"]
    assert written[0].inputs == ["windows: (batch, 32, 4)"] and written[0].outputs == ["reconstruction: (batch, 32)"]
    (tmp_path / "deployed" / "model.onnx").write_bytes(b"stale")
    assert main(["app", "anomaly", "export", "--out", run, "--onnx-out", deployed]) == 0
    onnx.checker.check_model(str(tmp_path / "deployed" / "model.onnx"))
    assert not (tmp_path / "run" / "onnx").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["vit", "export", "--out", "{tmp}/nothing"], r"no trained vit in .*nothing.*numformer app vit train"),
        (["vit", "export", "--out", "{tmp}", "picture.npy"], "export takes no inputs"),
        (["vit", "export", "--out", "{tmp}", "--fast"], "--fast goes with train, not export"),
        (["vit", "export", "--out", "{tmp}", "--json"], "--json goes with eval, not export"),
        (["vit", "predict", "--out", "{tmp}", "--onnx-out", "{tmp}/x", "test:0"], "--onnx-out goes with export"),
        (["list", "--onnx-out", "{tmp}/x"], "--onnx-out goes with export, not list"),
        (["vit", "export", "--out", "{tmp}", "--onnx-out", "{tmp}/file"], "--onnx-out .*file is a file"),
        (["vit", "export", "--out", "{tmp}", "--onnx-out", "{tmp}/no/onnx"], "no such folder for it"),
        (["chess", "export"], "no application 'chess'"),
    ],
)
def test_a_bad_export_request_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    import re

    (tmp_path / "file").write_text("x")
    assert main(["app", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = "".join(line for line in capsys.readouterr().err.splitlines(True) if not line.startswith("warning: "))
    assert err.count("\n") == 1 and re.search(message, err), err


def test_export_without_onnx_says_what_to_install_before_reading_the_models(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    assert main(["app", "vit", "export", "--out", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == (
        "error: numformer app export: numformer.onnx needs the onnx package: pip install 'numformer[onnx]'\n"
    )


def test_an_app_without_onnx_models_is_one_line(tmp_path, capsys, monkeypatch):
    class Bare(App):
        name = "bare"

    with pytest.raises(NotImplementedError, match="bare: no model to export to ONNX"):
        Bare().onnx_models(tmp_path)
    monkeypatch.setattr(apps, "registry", lambda: {"bare": Bare()})
    assert main(["app", "bare", "export", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: numformer app: bare: no model to export to ONNX")
