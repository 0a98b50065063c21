"""Shared benchmark plumbing: equal thread counts, alternating runs, ratio of medians.

Import this before NumPy or torch: it pins BLAS threads (NumPy) and torch's intra-op threads
to the same number, ``NUMFORMER_BENCH_THREADS`` (default: all cores).

Both frameworks share one process, and each keeps a thread pool that busy-waits after its
work: OpenBLAS's threads spin for about 2^28 cycles (~0.1 s) after every GEMM, torch's OpenMP
threads for a shorter while. A call timed right after the other framework's call competes with
those spinning threads for the cores. Measured on this 2-core machine (encoder inference):
back to back, PyTorch slowed from 85 ms to 140-160 ms and the ratio read 0.74-0.87; with a
0.3 s pause before each timed call both ran at their standalone speed and the ratio read 1.30.
So every timed block here starts after ``PAUSE`` seconds of idleness (``NUMFORMER_BENCH_PAUSE``)
and one untimed call that wakes the framework's own threads (both sleep after the pause); then
consecutive calls are timed, as a user's loop runs them.

NumPy's OpenBLAS runs the kernel family ``numformer blas --best`` measures fastest here
(``numformer.blas``; on this Zen 4 machine its Haswell kernels instead of the SkylakeX ones it
picks, 6-8% faster GEMMs): a user's one-line ``export OPENBLAS_CORETYPE=...``, set here before
NumPy loads. PyTorch's GEMMs (MKL) do not use OpenBLAS. ``NUMFORMER_BENCH_BLAS_CORE=default``
measures with OpenBLAS's own pick; an ``OPENBLAS_CORETYPE`` already set is kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the PyTorch twins (torch_gpt)

from timing import PAUSE, compare, timed  # noqa: F401 - re-exported for the benches

THREADS = int(os.environ.get("NUMFORMER_BENCH_THREADS", str(os.cpu_count() or 1)))
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))

if "OPENBLAS_CORETYPE" not in os.environ and os.environ.get("NUMFORMER_BENCH_BLAS_CORE") != "default":
    _best = subprocess.run(
        [sys.executable, "-m", "numformer.cli", "blas", "--best"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if _best:
        os.environ["OPENBLAS_CORETYPE"] = _best

import torch  # noqa: E402

from numformer.backend import tune_allocator  # noqa: E402
from numformer.blas import blas_core  # noqa: E402
from numformer.ops._threads import set_num_threads  # noqa: E402

torch.set_num_threads(THREADS)
# Both frameworks run in this one process, so both get the tuned allocator (fair comparison).
# NUMFORMER_BENCH_DEFAULT_MALLOC=1 measures with glibc's defaults instead.
ALLOCATOR_TUNED = os.environ.get("NUMFORMER_BENCH_DEFAULT_MALLOC") is None and tune_allocator()
# numformer's kernels on THREADS threads with BLAS pinned to one per call, as the CLI runs them
# (numformer.ops._threads); NUMFORMER_BENCH_KERNEL_THREADS=1 measures the serial kernels instead.
KERNEL_THREADS = int(os.environ.get("NUMFORMER_BENCH_KERNEL_THREADS", str(THREADS)))
set_num_threads(KERNEL_THREADS)
BLAS_CORE = blas_core()  # the OpenBLAS kernels NumPy runs (None: not an OpenBLAS we can ask)


def print_table(rows: list[dict]) -> None:
    print(
        f"threads: torch = numformer kernels = {KERNEL_THREADS}; tuned allocator: {ALLOCATOR_TUNED}; "
        f"NumPy's OpenBLAS kernels: {BLAS_CORE}; "
        f"blocks of calls timed after a {PAUSE} s pause and a wake-up call"
    )
    print(f"{'workload':<44} {'numformer ms':>13} {'torch ms':>10} {'ratio':>7} {'min':>6} {'max':>6}")
    for r in rows:
        print(
            f"{r['name']:<44} {r['numformer_ms']:>13.3f} {r['torch_ms']:>10.3f} "
            f"{r['ratio']:>7.2f} {r['ratio_min']:>6.2f} {r['ratio_max']:>6.2f}"
        )
