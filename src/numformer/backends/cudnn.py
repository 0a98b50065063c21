"""``numformer.backends.cudnn``: the switches PyTorch's programs set (``benchmark``,
``deterministic``, ``allow_tf32``, ``enabled``), accepted and recorded; numformer does not call
cuDNN, and its kernels are deterministic."""

from __future__ import annotations

enabled = True
benchmark = False
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    return False


def version():
    return None
