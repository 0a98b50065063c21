"""Activation modules with PyTorch's names, arguments and defaults, each calling its
``nn.functional`` function (``ReLU``, ``GELU``, ``Tanh`` and ``Identity`` are in ``layers``).

``inplace=True`` is accepted where PyTorch takes it and means what it means there: the result
is written into the input (a leaf that requires grad refuses, as in PyTorch).
"""

from __future__ import annotations

from numformer.nn import functional as F
from numformer.nn.module import Module


class Sigmoid(Module):
    """1 / (1 + exp(-input)), elementwise."""

    def forward(self, input):  # noqa: A002 - PyTorch's argument name
        """1 / (1 + exp(-input)) elementwise.

        Shape: ``(*)`` -> ``(*)``, dtype kept."""
        return F.sigmoid(input)


class _Dim(Module):
    """A softmax-like module over ``dim`` (None: PyTorch's deprecated implicit choice)."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_Dim):
    """Softmax along ``dim``: exp(x_i) / sum_j exp(x_j), entries summing to 1.

    Args:
        dim: the dimension whose entries sum to 1 (None: PyTorch's legacy choice, with a warning).
    """

    def forward(self, input):  # noqa: A002
        """Softmax along ``dim``, one fused kernel (``F.softmax``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept.

        Raises:
            TypeError: integer input. ValueError: ``dim`` out of range."""
        return F.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(_Dim):
    """log(softmax(input)) along ``dim``, computed stably.

    Args:
        dim: the dimension normalised (None: PyTorch's legacy choice, with a warning).
    """

    def forward(self, input):  # noqa: A002
        """log(softmax(input)) along ``dim`` (``F.log_softmax``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept.

        Raises:
            TypeError: integer input. ValueError: ``dim`` out of range."""
        return F.log_softmax(input, self.dim, _stacklevel=5)


class Softmin(_Dim):
    """softmax(-input) along ``dim``.

    Args:
        dim: the dimension whose entries sum to 1 (None: PyTorch's legacy choice, with a warning).
    """

    def forward(self, input):  # noqa: A002
        """softmax(-input) along ``dim`` (``F.softmin``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept.

        Raises:
            TypeError: integer input. ValueError: ``dim`` out of range."""
        return F.softmin(input, self.dim, _stacklevel=5)


class _InPlace(Module):
    """An activation with PyTorch's ``inplace`` flag."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(_InPlace):
    """input where positive, else ``negative_slope * input`` (Maas et al., 2013).

    Args:
        negative_slope: the slope for negative inputs.
        inplace: write the result into the input.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, input):  # noqa: A002
        """``F.leaky_relu``.

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(_InPlace):
    """input where positive, else alpha (exp(input) - 1) (Clevert et al., 2015).

    Args:
        alpha: the negative side's saturation value.
        inplace: write the result into the input.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, input):  # noqa: A002
        """``F.elu``.

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    """input where positive, else alpha (exp(input / alpha) - 1) (Barron, 2017).

    Args:
        alpha: the negative side's saturation value (and scale of its input).
        inplace: write the result into the input.
    """

    def forward(self, input):  # noqa: A002
        """``F.celu``.

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.celu(input, self.alpha, self.inplace)


class SELU(_InPlace):
    """Self-normalising ELU (Klambauer et al., 2017).

    Args:
        inplace: write the result into the input.
    """

    def forward(self, input):  # noqa: A002
        """``F.selu``.

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.selu(input, self.inplace)


class Hardtanh(_InPlace):
    """input clipped to [min_val, max_val]. ``min_value``/``max_value`` are PyTorch's
    deprecated spellings of the bounds.

    Args:
        min_val: the lower bound.
        max_val: the upper bound.
        inplace: write the result into the input.
        min_value: PyTorch's deprecated name of ``min_val``.
        max_value: PyTorch's deprecated name of ``max_val``.

    Raises:
        ValueError: ``min_val > max_val``.
    """

    def __init__(
        self,
        min_val: float = -1.0,
        max_val: float = 1.0,
        inplace: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ):
        super().__init__(inplace)
        self.min_val = min_val if min_value is None else min_value
        self.max_val = max_val if max_value is None else max_value
        if self.min_val > self.max_val:
            raise ValueError(f"{type(self).__name__}: min_val must be <= max_val, got {self.min_val} > {self.max_val}")

    def forward(self, input):  # noqa: A002
        """``F.hardtanh``.

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class ReLU6(Hardtanh):
    """min(max(input, 0), 6) (``Hardtanh(0, 6)``, as PyTorch's).

    Args:
        inplace: write the result into the input.
    """

    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Softplus(Module):
    """log(1 + exp(beta input)) / beta, the identity past ``threshold``.

    Args:
        beta: the sharpness: log(1 + exp(beta x)) / beta.
        threshold: above ``beta x > threshold`` the output is x itself (for precision).
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):  # noqa: A002
        """``F.softplus``.

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class LogSigmoid(Module):
    """log(sigmoid(input)), finite for any input."""

    def forward(self, input):  # noqa: A002
        """log(sigmoid(input)), finite for any input (``F.logsigmoid``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.logsigmoid(input)


class Hardsigmoid(_InPlace):
    """clip(input / 6 + 1/2, 0, 1), a piecewise-linear sigmoid (Howard et al., 2019).

    Args:
        inplace: write the result into the input.
    """

    def forward(self, input):  # noqa: A002
        """clip(input / 6 + 1/2, 0, 1) (``F.hardsigmoid``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.hardsigmoid(input, self.inplace)


class Hardswish(_InPlace):
    """input * hardsigmoid(input) (Howard et al., 2019, MobileNetV3).

    Args:
        inplace: write the result into the input.
    """

    def forward(self, input):  # noqa: A002
        """input clip(input + 3, 0, 6) / 6 (``F.hardswish``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.hardswish(input, self.inplace)


class Mish(_InPlace):
    """input * tanh(softplus(input)) (Misra, 2019).

    Args:
        inplace: write the result into the input.
    """

    def forward(self, input):  # noqa: A002
        """input tanh(softplus(input)) (``F.mish``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.mish(input, self.inplace)


class Softsign(Module):
    """input / (1 + |input|), elementwise."""

    def forward(self, input):  # noqa: A002
        """input / (1 + |input|) (``F.softsign``).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept."""
        return F.softsign(input)


class GLU(Module):
    """Gated linear unit over ``dim`` (Dauphin et al., 2017).

    Args:
        dim: the dimension split into halves a and b (its size must be even).
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, input):  # noqa: A002
        """a * sigmoid(b) of input's halves along ``dim`` (``F.glu``).

        Shape: ``(*, 2M, *)`` -> ``(*, M, *)``."""
        return F.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
