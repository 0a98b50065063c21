"""NumPy's BLAS: which OpenBLAS kernels it runs, and which are fastest on this CPU.

NumPy's wheels ship OpenBLAS built for many CPUs; when it loads, it picks one family of kernels
(its "core") from the CPU it detects. That pick is not always the fastest: on an AMD EPYC with
AVX-512 (Zen 4) OpenBLAS 0.3.31 picks its ``SkylakeX`` kernels, and its ``Haswell`` (AVX2)
kernels, which it also runs when asked for ``Zen``, do transformer-shaped float32 GEMMs 6-8%
faster there (``fastest_blas_core``'s one-thread probe; 2-16% shape by shape). The environment
variable ``OPENBLAS_CORETYPE`` overrides the pick, but only before OpenBLAS loads (at ``import
numpy``), so numformer can measure and suggest it, not switch it in a running process:
``numformer blas`` prints the line to export.

Linux only (the library is found through ``/proc/self/maps``); elsewhere, and where NumPy
uses another BLAS, ``blas_core`` is None and there is nothing to choose.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys

# Kernel families worth trying on x86-64 (OpenBLAS's names for OPENBLAS_CORETYPE). A family
# the CPU cannot run is harmless to try: each is measured in its own process, and OpenBLAS
# falls back to the detected core for one it does not know or the CPU lacks.
X86_CORES = ("Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids")

# (rows, inner, columns) of x @ W^T products from the encoder and GPT benches (d 256 and 384,
# 1024 rows), one with a long inner dimension (as a weight gradient's) and one attention-sized.
_PROBE_SHAPES = (
    (1024, 256, 768),
    (1024, 256, 1024),
    (1024, 1024, 256),
    (1024, 384, 1536),
    (256, 1024, 256),
    (128, 64, 128),
)

_PROBE = """
import json, statistics, sys, time
sys.path.insert(0, {package_parent!r})
import numpy as np
from numformer.blas import blas_core
rng = np.random.default_rng(0)
flops = seconds = 0.0
for m, k, n in {shapes}:
    a = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    reps = max(1, int(2e7 / (m * k * n)))
    for _ in range(3):
        a @ w.T
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(reps):
            a @ w.T
        times.append((time.perf_counter() - start) / reps)
    flops += 2 * m * k * n
    seconds += statistics.median(times)
print(json.dumps({{"core": blas_core(), "gflops": flops / seconds / 1e9}}))
"""


_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the probe imports this


def openblas():
    """``(library, prefix, suffix)`` of the OpenBLAS NumPy has loaded (its exported names are
    ``prefix + "_get_corename" + suffix`` and so on), or None (not OpenBLAS, or not Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (
            ("scipy_openblas", "64_"),
            ("scipy_openblas", ""),
            ("openblas", "64_"),
            ("openblas", ""),
        ):
            if getattr(lib, f"{prefix}_set_num_threads{suffix}", None) is not None:
                return lib, prefix, suffix
    return None


def blas_core() -> str | None:
    """The name of the OpenBLAS kernel family NumPy runs (``"SkylakeX"``, ``"Zen"``, ...), or
    None where NumPy's BLAS is not an OpenBLAS this can ask."""
    found = openblas()
    if found is None:
        return None
    lib, prefix, suffix = found
    getter = getattr(lib, f"{prefix}_get_corename{suffix}", None)
    if getter is None:
        return None
    getter.restype = ctypes.c_char_p
    name = getter()
    return name.decode() if name else None


def _measure(core: str | None, timeout: float) -> dict | None:
    """One-thread GEMM rate in a fresh interpreter with ``OPENBLAS_CORETYPE=core`` (None: as
    OpenBLAS picks); None if that process fails (a kernel this CPU cannot run)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env.pop("OPENBLAS_CORETYPE", None)
    if core is not None:
        env["OPENBLAS_CORETYPE"] = core
    try:
        script = _PROBE.format(shapes=_PROBE_SHAPES, package_parent=_PACKAGE_PARENT)
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
        result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
        return None
    return result if result and result.get("core") else None


def pick_core(rates: dict[str, float], default: str, margin: float = 0.02) -> str:
    """The core of highest rate, kept only if it beats ``default``'s by more than ``margin``
    (a fraction: timing noise must not move the choice); otherwise ``default``."""
    if default not in rates:
        raise ValueError(f"pick_core: default {default!r} must be one of the measured cores {sorted(rates)}")
    best = max(rates, key=rates.__getitem__)
    return best if rates[best] > rates[default] * (1 + margin) else default


def fastest_blas_core(candidates=None, timeout: float = 60.0) -> tuple[str | None, str | None, dict[str, float]]:
    """Measure OpenBLAS's kernel families on transformer-shaped float32 GEMMs, one thread each.

    Each family runs in a fresh interpreter (OpenBLAS picks its kernels once, when it loads):
    first the one OpenBLAS picks by itself, then each of ``candidates`` (default: ``X86_CORES``
    on x86-64, none elsewhere). Families that resolve to the same kernels are measured once.
    Returns ``(default, best, rates)``: the core OpenBLAS picks, the one to set
    ``OPENBLAS_CORETYPE`` to (``default`` unless another is more than 2% faster), and GFLOP/s
    per core; ``(None, None, {})`` where NumPy does not run an OpenBLAS this can ask. Takes
    under a second per family (six families, 2.8 s here).
    """
    if candidates is None:
        candidates = X86_CORES if platform.machine().lower() in ("x86_64", "amd64") else ()
    if isinstance(candidates, str) or not all(isinstance(c, str) and c.isalnum() for c in candidates):
        raise ValueError(
            f"fastest_blas_core: candidates must be a sequence of OpenBLAS core names "
            f"(letters and digits), got {candidates!r}"
        )
    first = _measure(None, timeout)
    if first is None:
        return None, None, {}
    default, rates = first["core"], {first["core"]: first["gflops"]}
    for core in candidates:
        measured = _measure(core, timeout)
        if measured is not None and measured["core"] not in rates:
            rates[measured["core"]] = measured["gflops"]
    return default, pick_core(rates, default), rates
