"""Arrays in safetensors files (the ``train`` extra's ``safetensors``; never pickle).

``save_arrays`` writes a ``{name: array}`` mapping atomically; ``load_arrays`` reads one back
as NumPy arrays; ``read_shapes`` reads only the header; ``save_model`` and ``load_model`` move a
module's weights (safetensors' own ``save_model``/``load_model`` for numformer modules). This
module is the only place numformer imports the safetensors library, and the only place that
reads such files.

Checkpoints written by other programs (Hugging Face's model folders, float16 and bfloat16
weights, shards listed by ``model.safetensors.index.json``) are read by ``Checkpoint`` without
the library: the format is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the bytes. ``Checkpoint`` lists every tensor from the
headers alone and maps the files into memory, so a model's weights are read when they are used
and a float32 file is never copied (its pages stay the file's, copy-on-write).
"""

from __future__ import annotations

import json
import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numformer.serialization.files import atomic_write, read_json


def _host(value) -> np.ndarray:
    """A NumPy array of a numformer Tensor, a CuPy or CPU torch array, or an array-like."""
    value = getattr(value, "array", value)  # a numformer Tensor: its array
    if hasattr(value, "detach"):  # a torch tensor (bfloat16 has no NumPy dtype: float32)
        value = value.detach().cpu()
        value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
    if not isinstance(value, np.ndarray) and hasattr(value, "get"):  # a GPU array: to the host
        value = value.get()
    return np.ascontiguousarray(value)


def save_arrays(arrays: dict, path, metadata: dict | None = None) -> Path:
    """Write arrays to a safetensors file at ``path``, atomically.

    Args:
        arrays: name -> array (a NumPy array, a numformer Tensor, a GPU array, an array-like).
        path: the ``.safetensors`` file to write.
        metadata: string pairs kept in the file's header.

    Returns:
        ``path``.

    Raises:
        FileNotFoundError: the folder does not exist. ValueError: an array safetensors refuses."""
    from safetensors.numpy import save_file

    contiguous = {name: _host(a) for name, a in arrays.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()} or None
    return atomic_write(path, lambda tmp: save_file(contiguous, str(tmp), metadata=meta))


def load_arrays(path) -> dict:
    """The arrays of a safetensors file, ``{name: np.ndarray}``.

    Raises:
        FileNotFoundError: no such file. ValueError: a folder, or not a safetensors file (or
        truncated), naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is truncated or not a safetensors file ({err})") from None


def read_metadata(path) -> dict | None:
    """The string metadata in a safetensors file's header ({} when it has none; None when the
    file cannot be read as safetensors)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return None


def read_shapes(path) -> dict:
    """``{name: shape}`` of the tensors in a safetensors file, from its header alone (nothing
    loaded), so a config can be checked against a file before a model of its size is built.

    Raises:
        FileNotFoundError: no such file. ValueError: a folder, or a damaged file (naming it).
        OSError: the file cannot be read."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path} is damaged ({err})") from None


def save_model(module, path) -> Path:
    """A module's state dict to a safetensors file, atomically (safetensors' ``save_model``).

    Returns:
        ``path``."""
    return save_arrays(module.state_dict(), path)


def load_model(module, path, strict: bool = True):
    """A safetensors file's arrays into a module by name (``load_state_dict``'s checks).

    Returns:
        ``load_state_dict``'s ``(missing_keys, unexpected_keys)``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a safetensors file, or weights that do not
        fit the module (every problem listed, naming ``path``)."""
    state = load_arrays(path)
    try:
        return module.load_state_dict(state, strict=strict)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


# --- checkpoints of other programs: headers, memory maps, float16 / bfloat16, shards ----------

# safetensors' dtype names -> NumPy dtypes (bfloat16 arrives as its 16 bits, decoded below)
DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
FLOATING = ("F64", "F32", "F16", "BF16")
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_MAX_HEADER = 100 << 20  # the format's own limit on the JSON header


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies: its file, safetensors dtype name (``"BF16"``), shape, and byte
    range ``[start, end)`` from the file's beginning."""

    name: str
    dtype: str
    shape: tuple
    path: Path
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path) -> tuple[dict, dict]:
    """The tensors and metadata of one safetensors file, from its header alone.

    Args:
        path: a ``.safetensors`` file.

    Returns:
        ``({name: TensorInfo}, {metadata key: value})``.

    Raises:
        FileNotFoundError: no such file. ValueError: a truncated or damaged file: a header
        that is not JSON, an unknown dtype, or a byte range that does not fit its shape or the
        file (naming the file and the tensor).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= min(_MAX_HEADER, size - 8):
            raise ValueError(
                f"{path} is truncated or not a safetensors file (header length {length}, file {size} bytes)"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is damaged: its header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is damaged: its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    base, tensors = 8 + length, {}
    for name, entry in header.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(int(n) for n in entry["shape"]), entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"{path} is damaged: tensor {name!r} has no dtype, shape and data_offsets") from None
        if dtype not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}, which numformer does not read")
        nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
        if not (isinstance(start, int) and isinstance(end, int)) or end - start != nbytes or base + end > size:
            raise ValueError(
                f"{path} is truncated or damaged: tensor {name!r} ({dtype} {list(shape)}) should hold {nbytes} bytes "
                f"at [{start}, {end}) of {size - base}"
            )
        tensors[name] = TensorInfo(name, dtype, shape, path, base + start, base + end)
    return tensors, metadata


def decode_bfloat16(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 numbers given as their 16 bits (``uint16``): exact, since a
    bfloat16 is the upper half of a float32. Uses ``ml_dtypes`` when it is installed (the
    ``bf16`` extra); otherwise shifts the bits into place, with the same result.

    Shape: ``(*)`` uint16 -> ``(*)`` float32."""
    try:
        import ml_dtypes
    except ImportError:
        return bfloat16_bits_to_float32(bits)
    return bits.view(ml_dtypes.bfloat16).astype(np.float32)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 from bfloat16 bits without ``ml_dtypes``: the 16 bits become the float32's upper
    half (``bits << 16``), the lower half zero.

    Shape: ``(*)`` uint16 -> ``(*)`` float32."""
    wide = np.empty(bits.shape, dtype=np.uint32)
    np.left_shift(bits, 16, out=wide, dtype=np.uint32)
    return wide.view(np.float32)


def available_memory() -> int | None:
    """Bytes of memory this machine can give without swapping: ``MemAvailable`` of
    ``/proc/meminfo`` (Linux), else the free physical pages (``os.sysconf``); None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class Checkpoint:
    """The tensors of a model folder's safetensors files, listed from their headers and read
    through memory maps: ``model.safetensors``, or the shards ``model.safetensors.index.json``
    names (Hugging Face's layout).

    ``shapes()`` and ``dtypes()`` need no tensor data; ``array(name)`` maps the tensor's bytes:
    float32 tensors come back as views of the file, mapped copy-on-write (writable, the file
    never changes, no memory of their own until written), float16 and bfloat16 ones decoded to
    float32 (``decode_bfloat16``) in arrays of their own.

    Args:
        tensors: name -> ``TensorInfo``.
        files: the safetensors files, in order.
    """

    def __init__(self, tensors: dict, files: list):
        self.tensors, self.files = tensors, list(files)
        self._maps: dict = {}

    @classmethod
    def open(cls, folder) -> Checkpoint:
        """The checkpoint of a model folder: its ``model.safetensors.index.json`` (shards) if it
        has one, else its ``model.safetensors``.

        Raises:
            FileNotFoundError: neither file (naming what the folder holds instead, such as a
            PyTorch pickle numformer does not read). ValueError: a damaged index or file, or an
            index naming tensors its shards lack.
        """
        folder = Path(folder)
        index = folder / INDEX
        if index.is_file():
            data = read_json(index)
            weight_map = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError(f"{index}: expected an object with a 'weight_map' of tensor name -> file name")
            files = [folder / Path(name).name for name in dict.fromkeys(weight_map.values())]
            tensors = {}
            for path in files:
                tensors.update(read_header(path)[0])
            absent = sorted(name for name in weight_map if name not in tensors)
            if absent:
                shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
                raise ValueError(f"{index} names tensors its shards do not hold: {shown}")
            return cls(tensors, files)
        single = folder / SINGLE
        if single.is_file():
            return cls(read_header(single)[0], [single])
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        hint = ""
        if any(name.endswith((".bin", ".pt", ".pth")) for name in present):
            hint = " (it holds PyTorch pickles, which numformer never loads: convert them to safetensors)"
        held = ", ".join(present) or "nothing"
        raise FileNotFoundError(f"{folder} has no {SINGLE} or {INDEX}{hint}; it holds: {held}")

    def shapes(self) -> dict:
        """``{name: shape}`` of every tensor, from the headers."""
        return {name: info.shape for name, info in self.tensors.items()}

    def dtypes(self) -> dict:
        """``{safetensors dtype name: number of tensors}`` (``{"BF16": 272}``)."""
        counts: dict = {}
        for info in self.tensors.values():
            counts[info.dtype] = counts.get(info.dtype, 0) + 1
        return counts

    def file_bytes(self) -> int:
        """The tensors' bytes in the files (their stored dtypes)."""
        return sum(info.end - info.start for info in self.tensors.values())

    def _map(self, path: Path):
        if path not in self._maps:
            with open(path, "rb") as f:
                self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        return self._maps[path]

    def array(self, name: str, dtype=np.float32) -> np.ndarray:
        """Tensor ``name`` as an array of ``dtype`` (floating tensors only).

        A tensor stored in ``dtype`` comes back as a writable copy-on-write view of the mapped
        file (no copy); another floating dtype is converted into a new array (bfloat16 through
        ``decode_bfloat16``).

        Shape: -> the tensor's shape.

        Raises:
            KeyError: no such tensor. TypeError: an integer or boolean tensor.
        """
        info = self.tensors[name]
        if info.dtype not in FLOATING:
            raise TypeError(f"{info.path}: tensor {name!r} is {info.dtype}, not a floating tensor")
        stored = np.dtype(DTYPES[info.dtype])
        if info.numel == 0:
            return np.zeros(info.shape, dtype=dtype)
        raw = np.frombuffer(self._map(info.path), dtype=stored, count=info.numel, offset=info.start)
        raw = raw.reshape(info.shape)
        if info.dtype == "BF16":
            values = decode_bfloat16(raw)
            return values if values.dtype == np.dtype(dtype) else values.astype(dtype)
        return raw if stored == np.dtype(dtype) else raw.astype(dtype)

    def close(self) -> None:
        """Forget the memory maps (arrays already handed out keep theirs alive)."""
        self._maps.clear()
