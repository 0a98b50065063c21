"""PyTorch's ``torch.nn.modules.module``."""

from numformer.nn.module import Module

__all__ = ["Module"]
