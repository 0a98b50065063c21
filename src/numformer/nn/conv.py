"""Convolution layers with PyTorch's names, arguments, defaults, initialisation and state-dict
keys: ``Conv1d`` over sequences ``(N, C, L)`` and ``Conv2d`` over images ``(N, C, H, W)`` (a
ViT's patch embedding is a ``Conv2d`` with stride = kernel; the seed's series builds CNNs of
them). The kernel is ``F.conv2d``'s im2col primitive with its hand-derived backward.
"""

from __future__ import annotations

import math

from numformer.backend import xp
from numformer.nn import checks, init
from numformer.nn import functional as F
from numformer.nn.module import Module, Parameter

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """What ``Conv1d`` and ``Conv2d`` share: arguments, parameters and PyTorch's initialisation
    (kaiming-uniform weights with a = sqrt(5), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""

    dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        name, n = type(self).__name__, self.dims
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {arg} must be an int >= 1, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels {in_channels} and out_channels {out_channels} must be divisible by "
                f"groups={groups}"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = checks.int_tuple(name, "kernel_size", kernel_size, n)
        self.stride = checks.int_tuple(name, "stride", stride, n)
        self.dilation = checks.int_tuple(name, "dilation", dilation, n)
        # "same"/"valid" checked (and "same"'s split computed) once, here
        self._pads = checks.conv_padding(name, padding, self.kernel_size, self.stride, self.dilation)
        self.padding = padding if isinstance(padding, str) else checks.int_tuple(name, "padding", padding, n, 0)
        self.padding_mode = padding_mode
        d = checks.dtype_or_default(dtype)
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(xp.zeros(shape, dtype=d))
        self.bias = Parameter(xp.zeros(out_channels, dtype=d)) if bias else None
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _convolve(self, conv, x):
        if self.padding_mode == "zeros":
            return conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        amounts = [p for pair in reversed(self._pads) for p in pair]  # F.pad's order: last dim first
        x = F.pad(x, amounts, mode=self.padding_mode)
        return conv(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.dims:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * self.dims:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class Conv1d(_ConvNd):
    """1-D convolution over sequences (PyTorch's ``nn.Conv1d``): ``weight``
    ``(out_channels, in_channels / groups, kernel_size)``, ``bias`` ``(out_channels,)``.
    ``padding`` an int, ``"valid"`` or ``"same"``; ``padding_mode`` "zeros", "reflect",
    "replicate" or "circular".

    Args:
        in_channels: C_in, the input's channels.
        out_channels: C_out, the output's channels.
        kernel_size: the kernel's size (an int, or one per spatial dim).
        stride: the step between kernel positions.
        padding: zeros added on each side (an int, per dim, ``"same"`` or ``"valid"``).
        dilation: the spacing between kernel elements.
        groups: split channels into this many independent groups (``C_in`` for depthwise).
        bias: learn a bias per output channel.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (``PADDING_MODES``).
        device: accepted for PyTorch's signature.
        dtype: the parameters' floating dtype.
    """

    dims = 1

    def forward(self, input):  # noqa: A002 - PyTorch's argument name
        """Cross-correlate ``input`` with the kernels (``F.conv1d``).

        Shape: ``(N, in_channels, L)`` or ``(in_channels, L)`` -> ``(N, out_channels, L_out)``,
        L_out = (L + 2 padding - dilation (kernel_size - 1) - 1) / stride + 1, rounded down.

        Raises:
            ValueError: the channels are not ``in_channels``, or the input is too short.
            TypeError: the input's dtype is not the weight's."""
        return self._convolve(F.conv1d, input)


class Conv2d(_ConvNd):
    """2-D convolution over images (PyTorch's ``nn.Conv2d``; LeCun et al., 1998): ``weight``
    ``(out_channels, in_channels / groups, KH, KW)``, ``bias`` ``(out_channels,)``. ``stride``,
    ``padding``, ``dilation``, ``kernel_size`` an int or a pair; ``padding`` also ``"valid"`` or
    ``"same"``; ``padding_mode`` "zeros", "reflect", "replicate" or "circular".

    Args:
        in_channels: C_in, the input's channels.
        out_channels: C_out, the output's channels.
        kernel_size: the kernel's size (an int, or one per spatial dim).
        stride: the step between kernel positions.
        padding: zeros added on each side (an int, per dim, ``"same"`` or ``"valid"``).
        dilation: the spacing between kernel elements.
        groups: split channels into this many independent groups (``C_in`` for depthwise).
        bias: learn a bias per output channel.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (``PADDING_MODES``).
        device: accepted for PyTorch's signature.
        dtype: the parameters' floating dtype.
    """

    dims = 2

    def forward(self, input):  # noqa: A002
        """Cross-correlate ``input`` with the kernels (``F.conv2d``: im2col and one GEMM).

        Shape: ``(N, in_channels, H, W)`` or ``(in_channels, H, W)`` ->
        ``(N, out_channels, H_out, W_out)``, H_out = (H + 2 padding - dilation (KH - 1) - 1) /
        stride + 1, rounded down.

        Raises:
            ValueError: the channels are not ``in_channels``, or the input is too small.
            TypeError: the input's dtype is not the weight's."""
        return self._convolve(F.conv2d, input)
