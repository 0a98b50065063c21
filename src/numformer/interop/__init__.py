"""Bridges to other frameworks and file formats (the only place numformer may import them).

Weights move by name: numformer's state-dict names and layouts are PyTorch's, so a state dict
goes to a ``torch.nn`` module built the same way and back unchanged. PyTorch is imported only
inside the functions that need it, only when they are called; safetensors (the ``train``
extra) the same way. Nothing here uses pickle.

- ``to_torch_state_dict(module_or_state)`` -> ``{name: torch.Tensor}`` (copies, CPU)
- ``from_torch_state_dict(state)`` -> ``{name: np.ndarray}``
- ``load_torch_state_dict(module, state, strict=True)``: a PyTorch state dict into a module
- ``save_file(state, path, metadata=None)`` / ``load_file(path)``: safetensors on NumPy arrays
- ``save_model(module, path)`` / ``load_model(module, path, strict=True)``: a module's weights
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from numformer.backend import to_numpy
from numformer.fileio import replace_atomic
from numformer.tensor import Tensor


def _state_of(module_or_state) -> dict:
    state = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else module_or_state
    if not isinstance(state, dict):
        raise TypeError(f"expected a module or a state dict, got {type(module_or_state).__name__}")
    return state


def _numpy(name, value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; NumPy has no bfloat16, so those become float32
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy().copy()
    data = value.array if isinstance(value, Tensor) else value
    try:
        return np.array(to_numpy(data))
    except Exception as err:  # noqa: BLE001 - report which entry cannot be converted
        raise TypeError(f"state dict entry {name!r}: cannot convert {type(value).__name__} to an array") from err


def to_torch_state_dict(module_or_state) -> dict:
    """A numformer module's (or state dict's) arrays as CPU ``torch.Tensor`` copies, same names.

    Raises:
        ImportError: PyTorch is not installed."""
    import torch

    return {
        name: torch.from_numpy(np.ascontiguousarray(_numpy(name, v))) for name, v in _state_of(module_or_state).items()
    }


def from_torch_state_dict(state) -> dict:
    """A PyTorch state dict (or any mapping of tensors) as NumPy arrays, same names."""
    return {name: _numpy(name, v) for name, v in _state_of(state).items()}


def load_torch_state_dict(module, state, strict: bool = True):
    """Load a PyTorch state dict into a numformer module (``Module.load_state_dict``'s checks:
    every missing, unexpected or mis-shaped key in one ValueError)."""
    return module.load_state_dict(from_torch_state_dict(state), strict=strict)


def save_file(state, path, metadata: dict | None = None) -> Path:
    """Write arrays to a safetensors file, atomically (a temporary file renamed into place).

    Raises:
        ValueError: a shared or non-contiguous tensor safetensors refuses (it names it)."""
    from safetensors.numpy import save_file as _save

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no such folder for {path}: {path.parent}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file name")
    arrays = {name: np.ascontiguousarray(_numpy(name, v)) for name, v in _state_of(state).items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _save(arrays, str(tmp), metadata={str(k): str(v) for k, v in (metadata or {}).items()} or None)
        replace_atomic(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_file(path) -> dict:
    """Arrays of a safetensors file as ``{name: np.ndarray}``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a safetensors file (or truncated)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as _load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return _load(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is truncated or not a safetensors file ({err})") from None


def save_model(module, path) -> Path:
    """A module's state dict to a safetensors file (``safetensors.torch.save_model``'s role)."""
    return save_file(module.state_dict(), path)


def load_model(module, path, strict: bool = True):
    """Load a safetensors file into a module by name; problems as ``load_state_dict`` reports."""
    state = load_file(path)
    try:
        return module.load_state_dict(state, strict=strict)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
