"""Arrays in safetensors files (the ``train`` extra's ``safetensors``; never pickle).

``save_arrays`` writes a ``{name: array}`` mapping atomically; ``load_arrays`` reads one back
as NumPy arrays; ``read_shapes`` reads only the header; ``save_model`` and ``load_model`` move a
module's weights (safetensors' own ``save_model``/``load_model`` for numformer modules). This
module is the only place numformer imports the safetensors library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numformer.serialization.files import atomic_write


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
