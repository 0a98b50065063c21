"""``numformer export onnx MODEL_FOLDER OUT.onnx`` end to end on a tiny GPT folder (the demo's
format), its one-line errors (exit 2), and ``numformer.onnx`` imported as a ported PyTorch
program imports ``torch.onnx``. (The sentence-transformers folder's export through the command
is ``test_onnx_minilm``'s.)"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from ort_compare import ort

import numformer as nf
from numformer.cli import main
from numformer.models.gpt import GPT, GPTConfig
from numformer.onnx.folders import GPTLogits

R = np.random.default_rng(0)


@pytest.fixture(scope="module")
def gpt_folder(tmp_path_factory):
    nf.manual_seed(0)
    folder = tmp_path_factory.mktemp("demo") / "model"
    GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=16)).save(folder)
    return folder


def test_a_gpt_folder_exports_and_runs_as_numformer(gpt_folder, tmp_path, capsys):
    """Logits at batch 1 over the whole context and at batch 4 over 3 tokens equal numformer's;
    --overwrite replaces the file."""
    out = tmp_path / "gpt.onnx"
    assert main(["export", "onnx", str(gpt_folder), str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"{out}: GPT (2 layers, d_model 16, context 16, vocab 11)",
        "  inputs: input_ids: (batch, sequence)",
        "  outputs: logits: (batch, sequence, 11)",
    ]
    model, _, _ = GPT.load(gpt_folder)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in ((1, 16), (4, 3)):
        idx = R.integers(0, 11, shape)
        with nf.no_grad():
            expected = GPTLogits(model).eval()(idx).numpy()
        np.testing.assert_allclose(session.run(None, {"input_ids": idx})[0], expected, atol=1e-5, rtol=0)
    out.write_bytes(b"stale")
    assert main(["export", "onnx", str(gpt_folder), str(out), "--overwrite", "--opset", "20"]) == 0
    assert out.read_bytes() != b"stale"


def test_a_bad_request_is_one_line_and_exit_2(gpt_folder, tmp_path, capsys, monkeypatch):
    (tmp_path / "taken.onnx").write_bytes(b"mine")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.txt").write_text("x")
    cases = [
        ([str(tmp_path / "nothing"), "x.onnx"], "nothing does not exist"),
        ([str(tmp_path / "a.txt"), "x.onnx"], "a.txt is a file, not a model folder"),
        ([str(gpt_folder), str(tmp_path / "taken.onnx")], "taken.onnx exists; pass --overwrite"),
        ([str(gpt_folder), str(tmp_path / "no" / "x.onnx")], "no such folder for x.onnx"),
        ([str(gpt_folder), str(tmp_path)], "is a folder; name the .onnx file"),
        ([str(gpt_folder), str(tmp_path / "x.pt")], "OUT must name a .onnx file"),
        ([str(tmp_path / "empty"), str(tmp_path / "x.onnx")], "is neither a numformer GPT folder"),
        ([str(gpt_folder), str(tmp_path / "x.onnx"), "--opset", "13"], r"opset_version must be in \[17,"),
        ([str(tmp_path / "app" / "model"), str(tmp_path / "x.onnx")], "holds a trained vit: numformer app vit export"),
    ]
    (tmp_path / "app" / "model").mkdir(parents=True)  # an application's folder and its model folder
    (tmp_path / "app" / "train.json").write_text('{"app": "vit"}')
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "app" / "model" / name).write_text("{}")
    for argv, message in cases:
        assert main(["export", "onnx", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ")
        assert re.search(message, err), (message, err)
    assert (tmp_path / "taken.onnx").read_bytes() == b"mine"
    assert not (tmp_path / "x.onnx").exists()
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    assert main(["export", "onnx", str(gpt_folder), str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err == (
        "error: numformer export onnx: numformer.onnx needs the onnx package: pip install 'numformer[onnx]'\n"
    )


def test_a_ported_pytorch_program_imports_numformer_onnx_as_torch_onnx(tmp_path):
    """``import torch.onnx`` becomes ``import numformer.onnx``; importing numformer (its models,
    apps and command line too) never imports it, and it imports onnx only when an export runs."""
    program = f"""
import sys
import numformer as torch, numformer.nn, numformer.models, numformer.apps, numformer.cli
assert not {{"onnx", "onnxruntime", "numformer.onnx"}} & set(sys.modules), sorted(sys.modules)
import numformer.onnx
assert not {{"onnx", "onnxruntime"}} & set(sys.modules)
model = torch.nn.Linear(4, 2)
torch.onnx.export(model, (torch.randn(3, 4),), {str(tmp_path / "linear.onnx")!r}, input_names=["x"],
                  output_names=["y"], dynamic_axes={{"x": {{0: "batch"}}, "y": {{0: "batch"}}}})
assert "onnx" in sys.modules and "onnxruntime" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", program], check=True)
    session = ort.InferenceSession(str(tmp_path / "linear.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((5, 4), np.float32)})[0].shape == (5, 2)


def test_a_run_folder_exports_its_model(gpt_folder, tmp_path, capsys):
    """``numformer generate`` and ``info`` take a run folder (its model in model/); so does export."""
    out = tmp_path / "gpt.onnx"
    assert main(["export", "onnx", str(gpt_folder.parent), str(out)]) == 0
    assert out.is_file() and "GPT (2 layers" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "name"), [(["", "x.onnx"], "MODEL_FOLDER"), (["all-MiniLM-L6-v2", ""], "OUT.onnx")])
def test_an_empty_model_or_out_is_named_not_read_as_the_current_folder(argv, name, tmp_path, capsys, monkeypatch):
    """``''`` read as ``.``: "error: . is neither a numformer GPT folder ..." (the breaking pass
    after issue 36)."""
    monkeypatch.chdir(tmp_path)
    assert main(["export", "onnx", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"error: numformer export onnx: {name} is empty\n" and not list(tmp_path.iterdir())
