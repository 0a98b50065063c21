"""The documentation site, built once for the docs tests: ``mkdocs build --strict`` into a
temporary folder, executing every tutorial notebook (never from a cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The built site's folder; the build's output is in ``site.log`` beside it."""
    out = tmp_path_factory.mktemp("site") / "site"
    env = {
        **os.environ,
        "NUMFORMER_DOCS_CACHE": "0",  # every notebook really runs
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join(sys.path),  # this numformer, in the notebooks' kernels too
    }
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - start
    (out.parent / "site.log").write_text(f"{done.stdout}\n{done.stderr}\nbuilt in {seconds:.1f} s\n")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    return out
