"""Shared benchmark plumbing: equal thread counts, alternating runs, ratio of medians.

Import this before NumPy or torch: it pins BLAS threads (NumPy) and torch's intra-op threads
to the same number, ``NUMFORMER_BENCH_THREADS`` (default: all cores).
"""

from __future__ import annotations

import os
import statistics
import time

THREADS = int(os.environ.get("NUMFORMER_BENCH_THREADS", str(os.cpu_count() or 1)))
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))

import torch  # noqa: E402

from numformer.backend import tune_allocator  # noqa: E402

torch.set_num_threads(THREADS)
# Both frameworks run in this one process, so both get the tuned allocator (fair comparison).
# NUMFORMER_BENCH_DEFAULT_MALLOC=1 measures with glibc's defaults instead.
ALLOCATOR_TUNED = os.environ.get("NUMFORMER_BENCH_DEFAULT_MALLOC") is None and tune_allocator()


def compare(name: str, nf_fn, torch_fn, repeats: int = 15, warmup: int = 3) -> dict:
    """Time both callables alternately after warm-up; return medians and the ratio nf/torch."""
    for _ in range(warmup):
        nf_fn()
        torch_fn()
    nf_times, torch_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        nf_fn()
        t1 = time.perf_counter()
        torch_fn()
        t2 = time.perf_counter()
        nf_times.append(t1 - t0)
        torch_times.append(t2 - t1)
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


def print_table(rows: list[dict]) -> None:
    print(f"threads: numpy BLAS = torch = {THREADS}; tuned allocator: {ALLOCATOR_TUNED}")
    print(f"{'workload':<44} {'numformer ms':>13} {'torch ms':>10} {'ratio':>7} {'min':>6} {'max':>6}")
    for r in rows:
        print(f"{r['name']:<44} {r['numformer_ms']:>13.3f} {r['torch_ms']:>10.3f} "
              f"{r['ratio']:>7.2f} {r['ratio_min']:>6.2f} {r['ratio_max']:>6.2f}")  # fmt: skip
