"""``numformer.backends.cuda``: ``matmul.allow_tf32`` and ``matmul.allow_fp16_reduced_precision_reduction``
are accepted and recorded; numformer's float32 matmuls run in float32."""

from __future__ import annotations

import types

matmul = types.SimpleNamespace(
    allow_tf32=False, allow_fp16_reduced_precision_reduction=True, allow_bf16_reduced_precision_reduction=True
)


def is_built() -> bool:
    """Whether numformer can use CUDA at all (through CuPy, installed separately)."""
    import importlib.util

    return importlib.util.find_spec("cupy") is not None
