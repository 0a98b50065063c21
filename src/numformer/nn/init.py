"""Weight initialisation, as ``torch.nn.init`` (in place, drawing from numformer's generator).

Fan-in and fan-out follow PyTorch: for a weight ``(out, in, *k)``, fan_in = in * prod(k) and
fan_out = out * prod(k).

Inside ``numformer.nn.utils.skip_init`` every initialiser leaves its tensor as it is (zeros, as
the layers allocate them), so a model whose weights will be loaded is built without drawing
them first.
"""

from __future__ import annotations

import math

from numformer import backend
from numformer.tensor import Tensor

SKIPPING = [False]  # set inside nn.utils.skip_init: initialisers do nothing


def _fill(t: Tensor, values) -> Tensor:
    """``values`` (drawn on the host, so ``manual_seed`` gives the same weights on every
    device) copied into ``t`` on its own device."""
    if SKIPPING[0]:
        return t
    if hasattr(values, "shape"):
        values = backend.to_device(values, backend.device_of(t.array))
    t.array[...] = values
    return t


def calculate_fan_in_and_fan_out(t: Tensor) -> tuple[int, int]:
    """The fan-in and fan-out of a weight: ``(in, out)`` features times the receptive field.

    Args:
        t: a weight of at least 2 dims, ``(out, in, *kernel)``.

    Returns:
        ``(fan_in, fan_out)``.

    Raises:
        ValueError: fewer than 2 dims."""
    if t.ndim < 2:
        raise ValueError(f"init: fan in/out need a tensor with at least 2 dims, got shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table: 1 for linear and sigmoid,
    5/3 for tanh, sqrt(2) for ReLU, sqrt(2 / (1 + slope^2)) for leaky ReLU, 3/4 for SELU).

    Args:
        nonlinearity: ``"linear"``, ``"conv1d"``, ``"conv2d"``, ``"conv3d"``, ``"sigmoid"``,
            ``"tanh"``, ``"relu"``, ``"leaky_relu"`` or ``"selu"``.
        param: leaky ReLU's negative slope (default 0.01).

    Returns:
        The gain.

    Raises:
        ValueError: an unsupported nonlinearity."""
    if nonlinearity in ("linear", "sigmoid", "conv1d", "conv2d", "conv3d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with draws from U(a, b) (numformer's generator).

    Args:
        t: the tensor, changed in place (outside the graph).
        a: the lower bound.
        b: the upper bound.

    Returns:
        ``t``."""
    if SKIPPING[0]:
        return t
    return _fill(t, backend.generator().uniform(a, b, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with draws from N(mean, std^2) (numformer's generator).

    Args:
        t: the tensor, changed in place (outside the graph).
        mean: the mean.
        std: the standard deviation.

    Returns:
        ``t``."""
    if SKIPPING[0]:
        return t
    return _fill(t, backend.generator().normal(mean, std, t.shape))


def constant_(t: Tensor, value: float) -> Tensor:
    """Fill with ``value``.

    Args:
        t: the tensor, changed in place (outside the graph).
        value: the value.

    Returns:
        ``t``.

    Shape:
        ``t`` of any shape, kept."""
    return _fill(t, value)


def zeros_(t: Tensor) -> Tensor:
    """Fill with zeros.

    Args:
        t: the tensor, changed in place (outside the graph).

    Returns:
        ``t``."""
    return _fill(t, 0)


def ones_(t: Tensor) -> Tensor:
    """Fill with ones.

    Args:
        t: the tensor, changed in place (outside the graph).

    Returns:
        ``t``."""
    return _fill(t, 1)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot and Bengio, 2010: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).

    Args:
        t: the tensor, changed in place (outside the graph).
        gain: the scale (``calculate_gain``).

    Returns:
        ``t``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot and Bengio, 2010: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).

    Args:
        t: the tensor, changed in place (outside the graph).
        gain: the scale (``calculate_gain``).

    Returns:
        ``t``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(t, a, mode, nonlinearity):
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """He et al., 2015: U(-b, b) with b = gain * sqrt(3 / fan), gain from ``nonlinearity`` and ``a``.

    Args:
        t: the tensor, changed in place (outside the graph).
        a: leaky ReLU's negative slope (for the gain).
        mode: ``"fan_in"`` (preserves the forward pass's variance) or ``"fan_out"`` (the backward's).
        nonlinearity: the activation that follows (``calculate_gain``).

    Returns:
        ``t``."""
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity)
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """He et al., 2015: N(0, std^2) with std = gain / sqrt(fan), gain from ``nonlinearity`` and ``a``.

    Args:
        t: the tensor, changed in place (outside the graph).
        a: leaky ReLU's negative slope (for the gain).
        mode: ``"fan_in"`` or ``"fan_out"``.
        nonlinearity: the activation that follows (``calculate_gain``).

    Returns:
        ``t``."""
    return normal_(t, 0.0, _kaiming_std(t, a, mode, nonlinearity))
