"""PyTorch's ``torch.nn.modules.conv``."""

from numformer.nn.conv import Conv1d, Conv2d, _ConvNd

__all__ = ["Conv1d", "Conv2d", "_ConvNd"]
