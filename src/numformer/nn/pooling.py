"""Pooling layers with PyTorch's names, arguments and defaults (PyTorch's
``nn.modules.pooling``), each calling its ``nn.functional`` function. Note PyTorch's argument
orders, kept here: ``MaxPool2d(kernel_size, stride, padding, dilation, return_indices,
ceil_mode)`` but ``F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode,
return_indices)``.
"""

from __future__ import annotations

from numformer.nn import functional as F
from numformer.nn.module import Module


class _MaxPoolNd(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    """The maximum over each window of a sequence.

    Args:
        kernel_size: the window's size (an int, or one per spatial dim).
        stride: the step between windows (default: ``kernel_size``).
        padding: implicit padding on each side.
        dilation: the spacing between window elements.
        return_indices: also return the argmax positions.
        ceil_mode: round the output size up instead of down.
    """

    def forward(self, input):  # noqa: A002 - PyTorch's argument name
        """``F.max_pool1d``.

        Shape: ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, L_out)`` (and int64 indices with
        ``return_indices``)."""
        return F.max_pool1d(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class MaxPool2d(_MaxPoolNd):
    """The maximum over each window of an image (the seed's CNNs' downsampling).

    Args:
        kernel_size: the window's size (an int, or one per spatial dim).
        stride: the step between windows (default: ``kernel_size``).
        padding: implicit padding on each side.
        dilation: the spacing between window elements.
        return_indices: also return the argmax positions.
        ceil_mode: round the output size up instead of down.
    """

    def forward(self, input):  # noqa: A002
        """``F.max_pool2d``.

        Shape: ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, H_out, W_out)`` (and int64 indices
        with ``return_indices``)."""
        return F.max_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class AvgPool1d(Module):
    """The mean over each window of a sequence.

    Args:
        kernel_size: the window's size (an int, or one per spatial dim).
        stride: the step between windows (default: ``kernel_size``).
        padding: implicit padding on each side.
        ceil_mode: round the output size up instead of down.
        count_include_pad: count padded zeros in the average.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, count_include_pad

    def forward(self, input):  # noqa: A002
        """``F.avg_pool1d``.

        Shape: ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, L_out)``."""
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """The mean over each window of an image.

    Args:
        kernel_size: the window's size (an int, or one per spatial dim).
        stride: the step between windows (default: ``kernel_size``).
        padding: implicit padding on each side.
        ceil_mode: round the output size up instead of down.
        count_include_pad: count padded zeros in the average.
        divisor_override: divide by this instead of the window's size.
    """

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):  # noqa: A002
        """``F.avg_pool2d``.

        Shape: ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, H_out, W_out)``."""
        return F.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool1d(Module):
    """Mean pooling to ``output_size`` positions, whatever the input's length.

    Args:
        output_size: the output's length (windows are chosen to cover the input).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):  # noqa: A002
        """``F.adaptive_avg_pool1d``.

        Shape: ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, output_size)``."""
        return F.adaptive_avg_pool1d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(AdaptiveAvgPool1d):
    """Mean pooling to ``output_size`` (an int, a pair, None to keep a size), whatever the input's
    size; ``AdaptiveAvgPool2d(1)`` is global average pooling (the seed's CNNs' head).

    Args:
        output_size: the output's height and width (an int for both, None keeps a dim).
    """

    def forward(self, input):  # noqa: A002
        """``F.adaptive_avg_pool2d``.

        Shape: ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, Ho, Wo)``."""
        return F.adaptive_avg_pool2d(input, self.output_size)
