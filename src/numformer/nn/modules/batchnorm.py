"""PyTorch's ``torch.nn.modules.batchnorm``."""

from numformer.nn.layers import BatchNorm1d, BatchNorm2d, _BatchNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "_BatchNorm"]
