"""Arrays in safetensors files (the ``train`` extra's ``safetensors``; never pickle).

``save_arrays`` writes a ``{name: array}`` mapping atomically; ``load_arrays`` reads one back
as NumPy arrays; ``read_shapes`` reads only the header. This module is the only place numformer
imports the safetensors library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numformer.serialization.files import atomic_write


def save_arrays(arrays: dict, path, metadata: dict | None = None) -> Path:
    """Write NumPy arrays to a safetensors file at ``path``, atomically.

    Args:
        arrays: name -> array (anything ``np.ascontiguousarray`` takes).
        path: the ``.safetensors`` file to write.
        metadata: string pairs kept in the file's header.

    Returns:
        ``path``.

    Raises:
        FileNotFoundError: the folder does not exist. ValueError: an array safetensors refuses."""
    from safetensors.numpy import save_file

    contiguous = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
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
    """The string metadata in a safetensors file's header (None when it has none or cannot be read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata()
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
