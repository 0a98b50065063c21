"""``numformer.amp``: PyTorch's automatic mixed precision, as far as numformer has it.

``GradScaler`` scales the loss and unscales the gradients as PyTorch's does (the same scale, the
same skipped steps on inf/NaN gradients, the same growth and back-off), so a program written for
``torch.amp`` trains the same. ``autocast`` cannot lower precision: numformer computes every op in
the tensors' own dtype (float32 by default), so an enabled ``autocast`` warns once and runs the
block in full precision (results are then at least as accurate as PyTorch's, not equal to them).

Source: Micikevicius et al., "Mixed Precision Training" (2018); PyTorch's ``torch.amp``.
"""

from __future__ import annotations

import warnings

import numpy as np

from numformer.backend import Device, as_dtype, device_module
from numformer.tensor import Tensor

_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def _cuda_available() -> bool:
    try:
        device_module("cuda")
    except RuntimeError:
        return False
    return True


class autocast:  # noqa: N801 - PyTorch's name
    """``with autocast(device_type, dtype=None, enabled=True, cache_enabled=None):`` (PyTorch's
    ``torch.autocast``), also a decorator. numformer runs the block in the tensors' own dtype:
    enabled on an available device it warns once that no op is lowered; for ``"cuda"`` without a
    GPU it warns and disables itself, as PyTorch does.

    Args:
        device_type: ``"cpu"`` or ``"cuda"``.
        dtype: the lower precision asked for (``float16`` or ``bfloat16``); checked, not used.
        enabled: ``False`` makes the block run as it is, without a warning.
        cache_enabled: accepted.

    Raises:
        ValueError: a device type other than ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, device_type: str = "cuda", dtype=None, enabled: bool = True, cache_enabled=None):
        if not isinstance(device_type, str) or device_type.partition(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"autocast: device_type must be 'cpu' or 'cuda', got {device_type!r}")
        self.device_type = device_type.partition(":")[0]
        self.fast_dtype = as_dtype(dtype) if dtype is not None and not isinstance(dtype, str) else dtype
        self.enabled = bool(enabled)
        if self.enabled and self.device_type == "cuda" and not _cuda_available():
            _warn_once(
                "autocast-cuda",
                "autocast: device_type 'cuda' was given but CUDA is not available; disabling autocast",
            )
            self.enabled = False
        elif self.enabled:
            _warn_once(
                "autocast",
                "autocast: numformer computes in the tensors' own dtype (float32); "
                "the block runs in full precision, no op is lowered",
            )

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def __call__(self, fn):
        def wrapped(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        wrapped.__name__, wrapped.__doc__ = getattr(fn, "__name__", "wrapped"), fn.__doc__
        return wrapped


def is_autocast_available(device_type: str) -> bool:
    """Whether ``autocast`` takes ``device_type`` (it runs in full precision on both)."""
    return device_type in ("cpu", "cuda")


class GradScaler:
    """PyTorch's loss scaler (``torch.amp.GradScaler``): ``scale(loss)`` multiplies the loss by
    the scale, ``unscale_(optimizer)`` divides the gradients by it and records whether any is
    inf or NaN, ``step(optimizer)`` skips the step when one was, and ``update()`` halves the scale
    after a skipped step (``backoff_factor``) and doubles it after ``growth_interval`` clean
    steps (``growth_factor``).

    Args:
        device: ``"cuda"`` (PyTorch's default) or ``"cpu"``; ``"cuda"`` without a GPU warns and
            disables the scaler, as PyTorch does.
        init_scale, growth_factor, backoff_factor, growth_interval: PyTorch's, same defaults.
        enabled: ``False`` makes every method pass through (``scale(loss)`` is ``loss``).

    Raises:
        ValueError: a growth factor not above 1 or a back-off factor outside (0, 1).
    """

    def __init__(
        self,
        device: str = "cuda",
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ):
        if growth_factor <= 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor}")
        self.device = Device(device).type
        self._enabled = bool(enabled)
        if self._enabled and self.device == "cuda" and not _cuda_available():
            _warn_once(
                "scaler-cuda",
                "GradScaler is enabled, but CUDA is not available; disabling it "
                "(pass device='cpu' to scale on the CPU)",
            )
            self._enabled = False
        self._scale = float(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval, self._growth_tracker = int(growth_interval), 0
        self._found_inf: dict = {}  # id(optimizer) -> whether its unscaled gradients hold inf/NaN
        self._unscaled: set = set()

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        return self._scale if self._enabled else 1.0

    def scale(self, outputs):
        """``outputs`` (a tensor, or a list/tuple of them) times the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if not isinstance(outputs, Tensor):
            raise TypeError(f"GradScaler.scale: expected a tensor, got {type(outputs).__name__}")
        return outputs * self._scale

    def unscale_(self, optimizer) -> None:
        """Divide ``optimizer``'s gradients by the scale, in place, once per step.

        Raises:
            RuntimeError: a second ``unscale_`` of the same optimizer before ``update()``."""
        if not self._enabled:
            return
        if id(optimizer) in self._unscaled:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update()")
        inverse, found = 1.0 / self._scale, False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.array
                g *= np.asarray(inverse, dtype=g.dtype)
                found = found or not bool(np.isfinite(g).all())
        self._found_inf[id(optimizer)] = found
        self._unscaled.add(id(optimizer))

    def step(self, optimizer, *args, **kwargs):
        """Unscale (when not yet done) and take ``optimizer.step()`` unless a gradient was inf or
        NaN; returns what ``step`` returned, or None when skipped."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if id(optimizer) not in self._unscaled:
            self.unscale_(optimizer)
        if self._found_inf[id(optimizer)]:
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None) -> None:
        """Adjust the scale for the next step (or set it to ``new_scale``)."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale.item() if isinstance(new_scale, Tensor) else new_scale)
        elif any(self._found_inf.values()):
            self._scale *= self._backoff_factor
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self._growth_interval:
                self._scale *= self._growth_factor
                self._growth_tracker = 0
        self._found_inf.clear()
        self._unscaled.clear()

    def state_dict(self) -> dict:
        if not self._enabled:
            return {}
        return {
            "scale": self._scale,
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state dict is empty (saved from a disabled scaler)")
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])
