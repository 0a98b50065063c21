"""PyTorch programs run on numformer with only their import lines changed, in lockstep with
PyTorch: the scripts beside this file are written against ``torch``; each test runs one as
written and once more from a copy whose import lines alone are rewritten to numformer's, from
the same initial weights (saved by the PyTorch run with ``torch.save``, loaded by the numformer
run with ``numformer.load``) and the same NumPy-drawn batches, and compares the losses step by
step. float32 on both sides: the losses agree to round-off (measured, largest relative
difference per script: GPT 4e-8, LSTM and GRU 2e-7, Transformer encoder 3e-6, classifier 1e-7).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
RTOL = 1e-5  # float32 round-off over a few steps

# ``import torch`` -> ``import numformer as torch``; ``import torch.X as Y`` and
# ``from torch.X import Y`` -> numformer's; nothing else is touched.
_SWAPS = [
    (re.compile(r"^(\s*)import torch([ \t]*)$"), r"\1import numformer as torch\2"),
    (re.compile(r"^(\s*)import torch\.([\w.]+) as (\w+)"), r"\1import numformer.\2 as \3"),
    (re.compile(r"^(\s*)from torch(\.[\w.]+)? import "), r"\1from numformer\2 import "),
]


def numformer_copy(script: Path, folder: Path) -> Path:
    """``script`` with its import lines rewritten to numformer's, written into ``folder``; every
    other line is the same (checked)."""
    lines = script.read_text().splitlines(keepends=True)
    out = []
    for line in lines:
        for pattern, replacement in _SWAPS:
            line = pattern.sub(replacement, line)
        out.append(line)
    changed = [(a, b) for a, b in zip(lines, out) if a != b]
    assert changed and all(re.match(r"\s*(import|from) ", a) for a, _ in changed), changed
    target = folder / script.name
    target.write_text("".join(out))
    return target


def run(script: Path, folder: Path, *args: str) -> None:
    """Run ``script`` as ``__main__`` in this process (torch and numformer are imported once
    for the whole suite), in ``folder``, with ``args`` as its command line."""
    argv, cwd = sys.argv, os.getcwd()
    sys.argv = [str(script), *args]
    os.chdir(folder)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
        os.chdir(cwd)


def losses(path: Path) -> np.ndarray:
    return np.array([step["loss"] for step in json.loads(path.read_text())])


def assert_lockstep(theirs: np.ndarray, ours: np.ndarray, rtol: float = RTOL) -> None:
    assert theirs.shape == ours.shape and len(theirs) > 0
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """The GPT script run once by PyTorch for 8 steps (saving its initial weights and a
    checkpoint at step 4), and its numformer copy."""
    folder = tmp_path_factory.mktemp("gpt")
    script = HERE / "gpt_train.py"
    run(script, folder, "--save_init", "init.pt", "--out", "torch_out", "--log", "torch.json")
    return script, numformer_copy(script, folder), folder


@pytest.fixture
def gpt(gpt_run, tmp_path):
    """A fresh folder holding the PyTorch run's files."""
    script, ours, folder = gpt_run
    for name in ("init.pt", "torch.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "torch_out").mkdir()
    (tmp_path / "torch_out" / "ckpt.pt").write_bytes((folder / "torch_out" / "ckpt.pt").read_bytes())
    return script, numformer_copy(script, tmp_path), tmp_path


def test_gpt_script_trains_in_lockstep_with_pytorch(gpt):
    script, ours, folder = gpt
    run(ours, folder, "--load_init", "init.pt", "--out", "nf_out", "--log", "nf.json", "--compile")
    assert_lockstep(losses(folder / "torch.json"), losses(folder / "nf.json"))
    norms = [[step["norm"] for step in json.loads((folder / f).read_text())] for f in ("torch.json", "nf.json")]
    np.testing.assert_allclose(norms[1], norms[0], rtol=1e-4)


def test_gpt_checkpoints_resume_across_frameworks(gpt):
    """Each framework resumes from the other's checkpoint (model, AdamW state, step, config,
    the data generator's state) and takes the steps the uninterrupted PyTorch run took."""
    script, ours, folder = gpt
    straight = losses(folder / "torch.json")
    (folder / "nf_out").mkdir()
    (folder / "nf_out" / "ckpt.pt").write_bytes((folder / "torch_out" / "ckpt.pt").read_bytes())
    run(ours, folder, "--resume", "--out", "nf_out", "--log", "nf_resumed.json")
    resumed = losses(folder / "nf_resumed.json")
    assert 0 < len(resumed) < len(straight)
    assert_lockstep(straight[-len(resumed) :], resumed)
    # and the other way: a numformer run's checkpoint loads in PyTorch (weights_only=True, its default)
    run(ours, folder, "--load_init", "init.pt", "--out", "nf_own", "--log", "nf_full.json")
    (folder / "torch_again").mkdir()
    (folder / "torch_again" / "ckpt.pt").write_bytes((folder / "nf_own" / "ckpt.pt").read_bytes())
    run(script, folder, "--resume", "--out", "torch_again", "--log", "torch_resumed.json")
    assert_lockstep(straight[-len(resumed) :], losses(folder / "torch_resumed.json"))


def test_gpt_script_samples_greedily_as_pytorch(gpt):
    script, ours, folder = gpt
    run(script, folder, "--load_init", "init.pt", "--log", "t.json", "--sample", "6", "--top_k", "1")
    run(ours, folder, "--load_init", "init.pt", "--log", "n.json", "--sample", "6", "--top_k", "1")
    theirs, mine = (json.loads((folder / f).read_text()) for f in ("t.sample.json", "n.sample.json"))
    assert len(mine) == 3 + 6 and mine == theirs
    run(ours, folder, "--load_init", "init.pt", "--log", "k.json", "--sample", "6", "--top_k", "3")
    drawn = json.loads((folder / "k.sample.json").read_text())
    assert len(drawn) == 9 and all(0 <= t < 17 for t in drawn)


def test_gpt_script_under_mpiexec_equals_one_process(gpt, tmp_path):
    """``mpiexec -n 2`` (RANK and WORLD_SIZE from MPI, DistributedDataParallel, each rank half of
    every global batch) takes the steps one process takes at the same global batch."""
    script, ours, folder = gpt
    run(ours, folder, "--load_init", "init.pt", "--out", "one", "--log", "one.json")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    env = {**os.environ, "NUMFORMER_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [str(mpiexec), "-n", "2", sys.executable, str(ours), "--load_init", "init.pt", "--out", "two"]
    done = subprocess.run([*cmd, "--log", "two.json"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_lockstep(losses(folder / "one.json"), losses(folder / "two.json"))


@pytest.mark.parametrize("model", ["LSTM", "GRU", "Transformer"])
def test_word_language_model_trains_in_lockstep_with_pytorch(model, tmp_path):
    """Truncated BPTT with a hand-written SGD step, evaluation, and the whole model saved and
    loaded back (``torch.save(model)``; ``torch.load`` under ``safe_globals``): per-step
    training losses, each epoch's validation loss and the reloaded best model's loss agree."""
    script = HERE / "word_lm.py"
    tied = ["--tied"] if model == "GRU" else []
    run(script, tmp_path, "--model", model, "--save_init", "init.pt", "--log", "torch.json", "--save", "t.pt", *tied)
    ours = numformer_copy(script, tmp_path)
    run(ours, tmp_path, "--model", model, "--load_init", "init.pt", "--log", "nf.json", "--save", "n.pt", *tied)
    theirs, mine = (json.loads((tmp_path / f).read_text()) for f in ("torch.json", "nf.json"))
    assert [s.get("split") for s in mine] == [s.get("split") for s in theirs]
    assert_lockstep(np.array([s["loss"] for s in theirs]), np.array([s["loss"] for s in mine]))


def test_checkpoint_round_trip_resumes_exactly_and_across_frameworks(tmp_path):
    """Stopped after one epoch and resumed (model, SGD momentum, a SequentialLR schedule), a run
    takes the steps of an uninterrupted one: numformer from its own checkpoint exactly, and
    each framework from the other's to round-off; the learning rates are PyTorch's."""
    script = HERE / "checkpoint_roundtrip.py"
    ours = numformer_copy(script, tmp_path)
    run(script, tmp_path, "--save_init", "init.pt", "--log", "torch.json", "--ckpt", "t_full.pt")
    run(script, tmp_path, "--load_init", "init.pt", "--stop_at", "1", "--ckpt", "t_half.pt", "--log", "x.json")
    run(ours, tmp_path, "--load_init", "init.pt", "--log", "nf.json", "--ckpt", "n_full.pt")
    run(ours, tmp_path, "--load_init", "init.pt", "--stop_at", "1", "--ckpt", "n_half.pt", "--log", "x.json")
    for half, copy in (("t_half.pt", "t_for_nf.pt"), ("n_half.pt", "n_for_torch.pt")):  # a resumed run rewrites it
        (tmp_path / copy).write_bytes((tmp_path / half).read_bytes())
    run(ours, tmp_path, "--load_init", "init.pt", "--resume", "--ckpt", "n_half.pt", "--log", "nf_resumed.json")
    run(ours, tmp_path, "--resume", "--ckpt", "t_for_nf.pt", "--log", "nf_from_torch.json")
    run(script, tmp_path, "--resume", "--ckpt", "n_for_torch.pt", "--log", "torch_from_nf.json")

    def read(name):
        return json.loads((tmp_path / name).read_text())

    theirs = read("torch.json")
    assert len(theirs) == 18  # 3 epochs of 6 batches
    assert read("nf_resumed.json") == read("nf.json")  # numformer resumes its own run exactly
    for name in ("nf.json", "nf_from_torch.json", "torch_from_nf.json"):
        mine = read(name)
        assert_lockstep(np.array([s["loss"] for s in theirs]), np.array([s["loss"] for s in mine]))
        np.testing.assert_allclose([s["lr"] for s in mine], [s["lr"] for s in theirs], rtol=1e-12)
