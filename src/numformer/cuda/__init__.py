"""``numformer.cuda``: PyTorch's ``torch.cuda`` queries, answered for numformer's one GPU.

numformer computes on an NVIDIA GPU through CuPy (``pip install 'numformer[gpu]'``), one device
per process (``cuda:0``). Without CuPy or a GPU, ``is_available()`` is False and ``device_count()``
0, as PyTorch's on a machine without CUDA; calls that need a GPU then raise.
"""

from __future__ import annotations

from numformer import backend
from numformer.cuda import amp

__all__ = [
    "amp",
    "current_device",
    "device_count",
    "empty_cache",
    "get_device_name",
    "is_available",
    "is_bf16_supported",
    "manual_seed",
    "manual_seed_all",
    "mem_get_info",
    "set_device",
    "synchronize",
]


def is_available() -> bool:
    """Whether numformer can compute on a GPU here (CuPy installed and a device found)."""
    try:
        backend.device_module("cuda")
    except RuntimeError:
        return False
    return True


def device_count() -> int:
    """1 where a GPU is usable (numformer uses one per process), else 0."""
    return int(is_available())


def _require(name: str) -> None:
    if not is_available():
        raise RuntimeError(f"numformer.cuda.{name}: no GPU is available (install CuPy with 'numformer[gpu]')")


def current_device() -> int:
    _require("current_device")
    return 0


def set_device(device) -> None:
    """Accepts ``0``, ``"cuda"`` or ``"cuda:0"``: numformer runs on one GPU.

    Raises:
        ValueError: another device index."""
    index = device if isinstance(device, int) else backend.Device(device).index
    if index not in (0, None):
        raise ValueError(f"numformer.cuda.set_device: numformer runs on one GPU, cuda:0; got {device!r}")
    _require("set_device")


def get_device_name(device=None) -> str:
    _require("get_device_name")
    import cupy

    return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()


def synchronize(device=None) -> None:
    """Wait for the GPU's queued work (nothing to wait for without one)."""
    if is_available():
        import cupy

        cupy.cuda.Stream.null.synchronize()


def empty_cache() -> None:
    """Return CuPy's cached blocks to the GPU."""
    if is_available():
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


def mem_get_info(device=None) -> tuple[int, int]:
    """``(free, total)`` bytes of the GPU's memory (PyTorch's ``torch.cuda.mem_get_info``); the
    blocks CuPy's pool keeps for reuse count as used.

    Raises:
        RuntimeError: no GPU is available, or the device's array module cannot tell (a
        stand-in registered with ``backend.register_device``)."""
    _require("mem_get_info")
    runtime = getattr(getattr(backend.device_module("cuda"), "cuda", None), "runtime", None)
    if runtime is None:
        raise RuntimeError("numformer.cuda.mem_get_info: the 'cuda' device's array module cannot report its memory")
    free, total = runtime.memGetInfo()
    return int(free), int(total)


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """False: numformer has no bfloat16 kernels (programs then choose float16, as nanoGPT's do)."""
    return False


def manual_seed(seed: int) -> None:
    """Seed the one generator (numformer draws GPU randomness on the host, so CPU and GPU runs
    draw alike)."""
    backend.manual_seed(seed)


manual_seed_all = manual_seed
