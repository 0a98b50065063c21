"""PyTorch's ``torch.nn.modules.flatten``."""

from numformer.nn.layers import Flatten, Unflatten

__all__ = ["Flatten", "Unflatten"]
