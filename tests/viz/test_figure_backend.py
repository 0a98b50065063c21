"""numformer's plots leave the caller's matplotlib backend alone: a notebook that trains a model
(the trainer writes metrics.png) still shows its own figures inline afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

PROGRAM = """
import matplotlib
matplotlib.use("svg")
import numpy as np
from numformer.viz import figures, plots
import numformer.train
figures.lines({"a": ([0, 1], [1, 0])}, "lines.png", "t", "x", "y")
plots.plot_attention(np.eye(3), ["a", "b", "c"], "attention.png")
print(matplotlib.get_backend())
"""


def test_writing_figures_keeps_the_callers_backend(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # this numformer, from the temporary folder
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"
    for name in ("lines.png", "attention.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
