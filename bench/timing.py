"""Timing helpers with no side effects (common.py adds the thread and BLAS set-up).

Every timed block starts after ``PAUSE`` seconds of idleness (``NUMFORMER_BENCH_PAUSE``) and one
untimed call that wakes the framework's own threads; then consecutive calls are timed, as a
user's loop runs them (common.py's docstring says why).
"""

from __future__ import annotations

import os
import statistics
import time

PAUSE = float(os.environ.get("NUMFORMER_BENCH_PAUSE", "0.3"))


def timed(fn, calls: int = 1) -> float:
    """Seconds per call of ``fn`` in steady state: after ``PAUSE`` s idle (see the module doc),
    one untimed call wakes this framework's threads, then ``calls`` consecutive calls are timed.
    """
    time.sleep(PAUSE)
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def compare(name: str, nf_fn, torch_fn, repeats: int = 15, warmup: int = 3, calls: int = 2) -> dict:
    """Time both callables alternately (blocks of ``calls`` after a pause and a wake-up call);
    return medians over ``repeats`` blocks and the ratio numformer / PyTorch."""
    for _ in range(warmup):
        nf_fn()
        torch_fn()
    nf_times, torch_times = [], []
    for _ in range(repeats):
        nf_times.append(timed(nf_fn, calls))
        torch_times.append(timed(torch_fn, calls))
    ratios = [a / b for a, b in zip(nf_times, torch_times)]
    row = {
        "name": name,
        "numformer_ms": 1e3 * statistics.median(nf_times),
        "torch_ms": 1e3 * statistics.median(torch_times),
        "ratio": statistics.median(nf_times) / statistics.median(torch_times),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }
    return row


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo (empty elsewhere)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    return _cpuinfo().get("model name", "unknown")


def machine(**extra) -> dict:
    """What every saved result names: the CPU (model name, and family and model numbers, which
    tell generations apart where the name does not: AMD family 25 is Zen 3/4, 26 Zen 5), cores,
    Python, NumPy and the OpenBLAS kernels it runs, numformer and its kernel threads, and
    PyTorch and its threads when the bench imported it; ``extra`` adds the bench's own."""
    import platform
    import sys

    import numpy as np

    import numformer as nf
    from numformer.blas import blas_core

    info = _cpuinfo()
    out = {
        "cpu": info.get("model name", "unknown"),
        "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "openblas_core": blas_core(),
        "numformer": nf.__version__,
        "numformer_kernel_threads": nf.get_num_threads(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        out.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    out.update(extra)
    return out
