"""``numformer.accelerator``: PyTorch's ``torch.accelerator`` (the device-neutral queries of
PyTorch 2.6+), answered by ``numformer.cuda``: numformer's one accelerator is an NVIDIA GPU
through CuPy. Without one, ``is_available()`` is False and ``current_accelerator()`` None, as
PyTorch's on a CPU-only machine, so ``device = torch.accelerator.current_accelerator() if
torch.accelerator.is_available() else torch.device("cpu")`` picks the CPU.
"""

from __future__ import annotations

from numformer import cuda
from numformer.backend import Device

__all__ = [
    "current_accelerator",
    "current_device_index",
    "device_count",
    "empty_cache",
    "is_available",
    "set_device_index",
    "synchronize",
]


def is_available() -> bool:
    """Whether an accelerator (a GPU numformer can use) is here."""
    return cuda.is_available()


def current_accelerator(check_available: bool = False) -> Device | None:
    """``device("cuda")`` where numformer has a GPU, else None (with or without ``check_available``:
    numformer knows no accelerator it could not use)."""
    return Device("cuda") if cuda.is_available() else None


def device_count() -> int:
    """Accelerators this process may use (0 or 1: numformer runs on one GPU per process)."""
    return cuda.device_count()


def current_device_index() -> int:
    """0: numformer's one GPU.

    Raises:
        RuntimeError: no accelerator (PyTorch's error on a CPU-only machine)."""
    if not cuda.is_available():
        raise RuntimeError("Cannot access accelerator device when none is available.")
    return 0


def set_device_index(device) -> None:
    """Accepts 0, ``"cuda"`` or ``"cuda:0"`` (numformer's one GPU).

    Raises:
        ValueError: another device index. RuntimeError: no GPU."""
    cuda.set_device(device)


def synchronize(device=None) -> None:
    """Wait for the accelerator's queued work (nothing to wait for without one)."""
    cuda.synchronize(device)


def empty_cache() -> None:
    """Return the accelerator's cached memory blocks to it."""
    cuda.empty_cache()
