"""`numformer sections` end to end: the alias of `numformer tour 2 3 4 5` prints every section."""

from __future__ import annotations

import subprocess
import sys

import pytest

from numformer.cli import main


def test_sections_prints_every_section(capsys, tmp_path):
    assert main(["sections", "--seed", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for title in (
        "2. Self-attention",
        "3. Multi-head attention",
        "4. Positional encoding",
        "5. The Transformer encoder",
    ):
        assert title in out
    assert "1. Sequential" not in out and "6. Regularisation" not in out
    # the encoder's parameter count: the seed's formula, then numformer's module, which adds
    # LayerNorm and the attention biases (2 layers, d 32, 4 heads, d_ff 64)
    assert "16576" in out and "17088" in out
    assert "Strongest attention" in out and "head 4" in out


def test_help_and_unknown_flag():
    ok = subprocess.run([sys.executable, "-m", "numformer.cli", "sections", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "example: numformer sections" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "numformer.cli", "sections", "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", [0, 7])
def test_sections_are_reproducible(capsys, tmp_path, seed):
    main(["sections", "--seed", str(seed), "--out", str(tmp_path)])
    first = capsys.readouterr().out
    main(["sections", "--seed", str(seed), "--out", str(tmp_path)])
    assert capsys.readouterr().out == first
    main(["sections", "--seed", str(seed + 1), "--out", str(tmp_path)])
    assert capsys.readouterr().out != first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tour", "2", "--seed", "-5"], "numformer tour: --seed must be >= 0, got -5"),
        (["sections", "--out", "FILE"], "numformer sections: --out FILE is a file"),
        (["tour", "2", "--out", "FILE/figures"], "lies under FILE, which is a file"),
    ],
)
def test_a_bad_seed_or_out_names_the_flag(argv, message, tmp_path, capsys, monkeypatch):
    """NumPy's 'expected non-negative integer' and 'File exists' named neither flag."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("mine")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert (tmp_path / "FILE").read_text() == "mine"
