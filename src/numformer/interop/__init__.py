"""Bridges to PyTorch: weights move by name.

numformer's state-dict names and layouts are PyTorch's, so a state dict goes to a ``torch.nn``
module built the same way and back unchanged. PyTorch is imported only inside the functions
that need it, only when they are called; nothing here uses pickle. (Files of weights are
``numformer.serialization``'s: ``save_model``, ``load_model``.)

- ``to_torch_state_dict(module_or_state)`` -> ``{name: torch.Tensor}`` (copies, CPU)
- ``from_torch_state_dict(state)`` -> ``{name: np.ndarray}``
- ``load_torch_state_dict(module, state, strict=True)``: a PyTorch state dict into a module
"""

from __future__ import annotations

import numpy as np

from numformer.backend import to_numpy
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

    Args:
        module_or_state: a numformer ``Module``, or a mapping of names to tensors or arrays.

    Returns:
        ``{name: torch.Tensor}``, ready for ``torch_module.load_state_dict``.

    Raises:
        ImportError: PyTorch is not installed.
        TypeError: neither a module nor a state dict.

    Examples:
        >>> import numformer as nf
        >>> from numformer.interop import to_torch_state_dict
        >>> state = to_torch_state_dict(nf.nn.Linear(3, 2))  # doctest: +SKIP
        >>> import torch; torch.nn.Linear(3, 2).load_state_dict(state)  # doctest: +SKIP
        <All keys matched successfully>"""
    import torch

    return {
        name: torch.from_numpy(np.ascontiguousarray(_numpy(name, v))) for name, v in _state_of(module_or_state).items()
    }


def from_torch_state_dict(state) -> dict:
    """A PyTorch state dict (or any mapping of tensors) as NumPy arrays, same names; bfloat16
    tensors become float32 (NumPy has no bfloat16).

    Args:
        state: a ``torch.nn.Module``'s ``state_dict()``, or any mapping of names to tensors.

    Returns:
        ``{name: numpy.ndarray}`` (copies).

    Raises:
        TypeError: neither a module nor a state dict."""
    return {name: _numpy(name, v) for name, v in _state_of(state).items()}


def load_torch_state_dict(module, state, strict: bool = True):
    """Load a PyTorch state dict into a numformer module (``Module.load_state_dict``'s checks:
    every missing, unexpected or mis-shaped key in one ValueError).

    Args:
        module: the numformer module, built with the same arguments as the PyTorch one.
        state: the PyTorch state dict (or any mapping of tensors).
        strict: require exactly the module's keys.

    Returns:
        ``load_state_dict``'s result (the missing and unexpected keys).

    Raises:
        ValueError: missing, unexpected or mis-shaped keys (all of them, in one message)."""
    return module.load_state_dict(from_torch_state_dict(state), strict=strict)
