"""``numformer.backends``: PyTorch's ``torch.backends`` switches, for programs that set them.

numformer computes float32 matmuls in float32 on every device (no TF32, no reduced-precision
BLAS), so ``allow_tf32`` and the cuDNN switches are accepted and recorded but change nothing;
``float32_matmul_precision`` reads back what was set. MPS (Apple's GPU) is never available.
"""

from __future__ import annotations

from numformer.backends import cuda, cudnn, mps

__all__ = ["cuda", "cudnn", "mps", "get_float32_matmul_precision", "set_float32_matmul_precision"]

_PRECISIONS = ("highest", "high", "medium")
_precision = ["highest"]


def set_float32_matmul_precision(precision: str) -> None:
    """PyTorch's ``torch.set_float32_matmul_precision``: recorded; numformer's float32 matmuls
    always run at "highest" precision.

    Args:
        precision: ``"highest"``, ``"high"`` or ``"medium"``.

    Raises:
        ValueError: a precision other than "highest", "high" or "medium"."""
    if precision not in _PRECISIONS:
        raise ValueError(f"set_float32_matmul_precision: expected one of {_PRECISIONS}, got {precision!r}")
    _precision[0] = precision


def get_float32_matmul_precision() -> str:
    """The precision last set with ``set_float32_matmul_precision`` (``"highest"`` at first).

    Returns:
        ``"highest"``, ``"high"`` or ``"medium"`` (numformer computes at "highest" whatever it says)."""
    return _precision[0]
