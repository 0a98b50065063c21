"""`numformer sections` end to end: every section prints, with the numbers the seed claims."""

from __future__ import annotations

import subprocess
import sys

import pytest

from numformer.cli import main


def test_demo_prints_every_section(capsys):
    assert main(["sections", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for title in ("2. Self-attention", "3. Multi-head attention", "4. Positional encoding",
                  "5. Transformer encoder"):  # fmt: skip
        assert title in out
    assert "numformer 17,088; the seed's formula 16,576" in out
    assert "Strongest attention" in out and "head 4" in out


def test_help_and_unknown_flag():
    ok = subprocess.run([sys.executable, "-m", "numformer.cli", "sections", "--help"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0 and "example: numformer sections" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "numformer.cli", "sections", "--bogus"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", [0, 7])
def test_demo_is_reproducible(capsys, seed):
    main(["sections", "--seed", str(seed)])
    first = capsys.readouterr().out
    main(["sections", "--seed", str(seed)])
    assert capsys.readouterr().out == first
