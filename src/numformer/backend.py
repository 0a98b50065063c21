"""The array backend: the one place numformer chooses the array library.

Every array call in the engine, the kernels, the layers and the models goes through ``xp``
(``from numformer.backend import xp``): NumPy by default, or any module with NumPy's API
(CuPy's) after ``set_array_module``. ``xp`` is one namespace object whose contents are swapped,
so every module that imported it sees the change, and an attribute look-up on it costs what one
on a module does. NumPy itself is still used for what is not an array call: dtypes
(``np.float32``, ``np.dtype``), shape arithmetic (``np.broadcast_shapes``) and host-side data
(tokens, random seeds). ``numformer.testing.stand_in_arrays`` is a stand-in array module whose
arrays are a distinct type that refuses NumPy's functions: the tests run a model under it to
prove that no path bypasses ``xp``.

The module also owns the two pieces of global numeric state numformer has: the default floating
dtype and the random generator behind every draw (``manual_seed``).
"""

from __future__ import annotations

import contextlib
import types

import numpy as np


class _ArrayNamespace(types.SimpleNamespace):
    """The array module's names as attributes; ``set_array_module`` swaps them in place."""

    def __repr__(self) -> str:
        return f"<numformer array namespace: {self.__name__}>"


xp = _ArrayNamespace()
_array_module = np


def set_array_module(module) -> None:
    """Route every array call through ``module`` (NumPy's API: ``numpy``, ``cupy``, or the test
    stand-in). Arrays made under one module must not meet another's."""
    global _array_module
    names = {name: getattr(module, name) for name in dir(module) if not name.startswith("__")}
    names["__name__"] = getattr(module, "__name__", type(module).__name__)
    xp.__dict__.clear()
    xp.__dict__.update(names)
    _array_module = module
    _active_type[0] = _ndarray_type(module)


def _ndarray_type(module):
    return getattr(module, "ndarray", None)


_active_type = [np.ndarray]  # the array type of the module behind xp (Function.apply checks inputs against it)


def get_array_module():
    """The module behind ``xp`` (``numpy`` unless ``set_array_module`` changed it)."""
    return _array_module


@contextlib.contextmanager
def use_array_module(module):
    """``set_array_module(module)`` inside a ``with`` block, then the previous module again."""
    before = _array_module
    set_array_module(module)
    try:
        yield module
    finally:
        set_array_module(before)


def to_numpy(a) -> np.ndarray:
    """A NumPy array of ``a``'s values: ``a`` itself if it is one, else ``a.get()`` (CuPy's
    device-to-host copy, which the stand-in mimics).

    Args:
        a: a NumPy or CuPy array.

    Returns:
        A NumPy array."""
    return a if isinstance(a, np.ndarray) else a.get()


set_array_module(np)


# --- devices -----------------------------------------------------------------------------------
# A device is where a tensor's array lives: "cpu" (NumPy) or "cuda" (CuPy, NVIDIA GPUs; the
# ``gpu`` extra). xp is one namespace, so numformer computes on one device at a time: each op
# checks that its inputs share a device and, when they are not on the one xp serves, switches
# xp to theirs (``Function.apply``). A model and its inputs moved to "cuda" therefore run there
# with no other call; tensors of two devices in one op are an error naming both.
_DEVICE_MODULES: dict = {"cpu": np}


class Device:
    """``Device("cpu")``, ``Device("cuda")`` or ``Device("cuda:0")`` (PyTorch's spelling).

    Args:
        spec: ``"cpu"``, ``"cuda"``, ``"cuda:0"``, or another ``Device``.

    Raises:
        TypeError: a spec that is not a string.
        ValueError: an unknown device, or a CUDA index other than 0 (numformer uses one GPU).
    """

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {type(spec).__name__} {spec!r}")
        kind, _, index = spec.partition(":")
        if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        if index and int(index) != 0:
            raise ValueError(f"device: numformer runs on one GPU, cuda:0; got {spec!r}")
        self.type, self.index = kind, (0 if kind == "cuda" else None)

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other) -> bool:
        try:
            other = Device(other)
        except (TypeError, ValueError):
            return NotImplemented
        return self.type == other.type

    def __hash__(self) -> int:
        return hash(self.type)


def register_device(kind: str, module) -> None:
    """Use ``module`` (NumPy's API) for device ``kind`` ("cuda"): CuPy by default; the tests
    register the stand-in array module to exercise device logic without a GPU."""
    if kind not in ("cuda",):
        raise ValueError(f"register_device: only 'cuda' can be registered, got {kind!r}")
    _DEVICE_MODULES[kind] = module


def device_module(device):
    """The array module of ``device``.

    Raises:
        RuntimeError: "cuda" without CuPy (with the pip command) or without a usable GPU."""
    d = Device(device)
    if d.type not in _DEVICE_MODULES:
        try:
            import cupy
        except ImportError:
            raise RuntimeError("device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'numformer[gpu]'") from None
        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception as err:  # noqa: BLE001 - CuPy raises its own CUDARuntimeError
            raise RuntimeError(f"device 'cuda': CuPy finds no usable GPU ({err})") from None
        _DEVICE_MODULES[d.type] = _cupy_for_numformer(cupy)
    return _DEVICE_MODULES[d.type]


def module_of(array):
    """The array module that made ``array``: NumPy, the accelerator's module (CuPy, or what
    ``register_device`` set), or the module xp serves now (``use_array_module``'s, which is then
    the accelerator).

    Raises:
        TypeError: an array of none of them."""
    if isinstance(array, np.ndarray):
        return np
    accelerator = _DEVICE_MODULES.get("cuda")
    if accelerator is not None and isinstance(array, _ndarray_type(accelerator)):
        return accelerator
    if _array_module is not np and isinstance(array, _active_type[0]):
        return _array_module
    raise TypeError(f"not an array of a known device: {type(array).__name__}")


def _cupy_for_numformer(cupy):
    """CuPy's namespace with the two NumPy names numformer's kernels use and CuPy lacks:
    ``errstate`` (CuPy never warns on floating-point errors: a no-op) and ``broadcast_shapes``
    (shape arithmetic: NumPy's). Random bits for dropout come from the host (see
    ``ops._threads.dropout_mask``), so masks equal the CPU's."""
    module = types.ModuleType("cupy")
    module.__dict__.update({name: getattr(cupy, name) for name in dir(cupy) if not name.startswith("__")})
    module.errstate = lambda **kwargs: contextlib.nullcontext()
    if not hasattr(cupy, "broadcast_shapes"):
        module.broadcast_shapes = np.broadcast_shapes
    return module


def device_of(array) -> Device:
    """The device an array lives on: the CPU for NumPy's arrays, "cuda" for the accelerator's.

    Args:
        array: a NumPy or CuPy array.

    Returns:
        A ``Device``."""
    return Device("cpu" if module_of(array) is np else "cuda")


def to_device(array, device):
    """``array``'s values on ``device`` (``array`` itself when it is there already).

    Args:
        array: a NumPy or CuPy array.
        device: ``"cpu"``, ``"cuda"`` or a ``Device``.

    Returns:
        An array of that device's module."""
    d = Device(device)
    if device_of(array) == d:
        return array
    host = to_numpy(array)
    if d.type == "cpu":
        return host
    return _accelerator(d).asarray(host)


def use_device(device) -> None:
    """Make xp compute on ``device`` (what ``Module.to`` does after moving a model)."""
    d = Device(device)
    module = np if d.type == "cpu" else _accelerator(d)
    if module is not _array_module:
        set_array_module(module)


def _accelerator(d: Device):
    """The accelerator's module: the registered one, else the one xp serves (when not NumPy),
    else CuPy."""
    return _DEVICE_MODULES.get("cuda") or (_array_module if _array_module is not np else device_module(d))


def enter_device(arrays) -> None:
    """Make xp serve the device of ``arrays`` (they must share one).

    Raises:
        RuntimeError: arrays of two devices (both named)."""
    modules = {id(module_of(a)): module_of(a) for a in arrays}
    if len(modules) > 1:
        names = " and ".join(sorted({str(device_of(a)) for a in arrays}))
        raise RuntimeError(
            f"expected every tensor of an op on one device, got tensors on {names}; move them with .to()"
        )
    module = next(iter(modules.values()))
    if module is not _array_module:
        set_array_module(module)


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_default_dtype = np.dtype(np.float32)
_generator = np.random.default_rng()


def contiguous(a):
    """``a`` itself if C-contiguous, else a C-contiguous copy (0-d stays 0-d, unlike NumPy's
    ``ascontiguousarray``)."""
    return a if a.flags.c_contiguous else a.copy()


class MissingDtype:
    """A dtype numformer can name but not compute in without an optional package (``bfloat16``
    without ``ml_dtypes``): naming it never fails (``{"bfloat16": numformer.bfloat16}``); making
    a tensor of it raises, with the pip command."""

    def __init__(self, name: str, install: str):
        self.name, self.install = name, install

    def __repr__(self) -> str:
        return f"numformer.{self.name}"

    def __eq__(self, other) -> bool:
        return (other.name if isinstance(other, MissingDtype) else other) == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def _bfloat16():
    """``ml_dtypes.bfloat16``'s NumPy dtype where the package is installed, else a ``MissingDtype``."""
    try:
        import ml_dtypes
    except ImportError:
        return MissingDtype("bfloat16", "pip install 'numformer[bf16]' (the ml_dtypes package)")
    return np.dtype(ml_dtypes.bfloat16)


bfloat16 = _bfloat16()


def as_dtype(dtype) -> np.dtype:
    """Normalise ``dtype`` (a NumPy dtype, type or name such as ``"float32"``) to ``np.dtype``.

    Raises:
        TypeError: not a dtype, or one that needs a package that is not installed (its name
        and the pip command)."""
    named = isinstance(dtype, str) and dtype.removeprefix("numformer.").removeprefix("torch.") == "bfloat16"
    if isinstance(dtype, MissingDtype) or named and isinstance(bfloat16, MissingDtype):
        raise TypeError(f"dtype {dtype}: tensors of it need {bfloat16.install}")
    if named:
        return bfloat16
    try:
        return np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype: expected a NumPy dtype or its name, got {dtype!r}") from err


def set_default_dtype(dtype) -> None:
    """Set the floating dtype for new floating tensors and parameters (float32 or float64).

    Args:
        dtype: ``numformer.float32`` or ``numformer.float64`` (or their NumPy names).

    Raises:
        TypeError: any other dtype."""
    global _default_dtype
    d = as_dtype(dtype)
    if d not in _FLOAT_DTYPES:
        raise TypeError(f"set_default_dtype: expected float32 or float64, got {d}")
    _default_dtype = d


def get_default_dtype() -> np.dtype:
    """The floating dtype new tensors get when none is given (float32 unless changed)."""
    return _default_dtype


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f"  # what np.issubdtype(dtype, np.floating) says, ~10x faster


class Generator:
    """A random generator of its own (PyTorch's ``torch.Generator``), for ``generator=``
    arguments: ``manual_seed(seed)`` seeds it, ``rng`` is its NumPy generator.

    Args:
        device: "cpu" (numformer draws on the host on every device)."""

    def __init__(self, device="cpu"):
        self.device = Device(device)
        self._seed = int(np.random.SeedSequence().entropy % 2**63)
        self.rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed: int) -> Generator:
        _check_seed(seed)
        self._seed, self.rng = int(seed), np.random.default_rng(int(seed))
        return self

    def seed(self) -> int:
        """Reseed from fresh entropy; returns the seed."""
        return self.manual_seed(int(np.random.SeedSequence().entropy % 2**63))._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        self.rng.bit_generator.state = state
        return self


def _check_seed(seed) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")


_default = Generator.__new__(Generator)  # the global generator behind every draw (manual_seed)
_default.device, _default._seed, _default.rng = Device("cpu"), 0, _generator


def manual_seed(seed: int) -> Generator:
    """Seed the generator behind every random draw in numformer (init, randn, dropout,
    sampling); returns it (PyTorch's ``torch.manual_seed``). The draws repeat for a seed, but
    are not PyTorch's for the same seed: the generator is NumPy's (PCG64), not PyTorch's
    (Mersenne Twister). To start both frameworks from the same weights, copy the state dict.

    Args:
        seed: the seed (an int).

    Returns:
        The global ``Generator``.

    Raises:
        TypeError: a seed that is not an int."""
    global _generator
    _check_seed(seed)
    _generator = np.random.default_rng(int(seed))
    _default.rng, _default._seed = _generator, int(seed)
    return _default


def generator() -> np.random.Generator:
    """The current global generator (reseeded by ``manual_seed``)."""
    return _generator


def rng_of(generator) -> np.random.Generator:
    """The NumPy generator behind a ``generator=`` argument: numformer's global one for None,
    a ``Generator``'s own, or (numformer's extension) a ``numpy.random.Generator`` as it is.
    Every function that takes ``generator=`` resolves it here.

    Raises:
        TypeError: anything else, naming what was given."""
    if generator is None:
        return _generator
    if isinstance(generator, Generator):
        return generator.rng
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a numformer.Generator (or None), got {type(generator).__name__}")


def default_generator() -> Generator:
    """The global generator as a ``Generator`` (PyTorch's ``torch.default_generator``)."""
    return _default


def initial_seed() -> int:
    """The seed the default generator was last seeded with (PyTorch's ``torch.initial_seed``).

    Returns:
        The seed, an int."""
    return _default._seed


def get_rng_state() -> dict:
    """The generator's state as a JSON-serialisable dict (for checkpoints)."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by ``get_rng_state``.

    Args:
        state: the dict ``get_rng_state`` returned (from a checkpoint, say)."""
    _generator.bit_generator.state = state


def tune_allocator() -> bool:
    """Keep freed arrays in the process heap instead of returning them to the OS (glibc).

    NumPy code allocates and frees many multi-megabyte temporaries per training step; by
    default glibc serves each from a fresh ``mmap`` (page faults on first touch, ``munmap`` on
    free). Raising the mmap threshold to its 32 MB maximum and the trim threshold to 1 GB keeps
    that memory for reuse (``make bench`` measures the gain), and the process keeps its
    peak memory. One arena for every thread (``M_ARENA_MAX`` 1): what one of numformer's
    kernel threads frees, the others reuse, where glibc's arena per thread would keep each
    thread's freed memory apart (80 MB more peak RSS in ``make bench``'s large training row);
    that holds for threads that have not allocated yet, so import numformer calls it before
    starting its kernel threads.
    Process-wide; ``import numformer`` calls it unless ``NUMFORMER_TUNE_ALLOCATOR=0``. Returns
    False where it does not apply (not glibc).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    return bool(
        libc.mallopt(m_mmap_threshold, 32 << 20)
        and libc.mallopt(m_trim_threshold, 1 << 30)
        and libc.mallopt(m_arena_max, 1)
    )
