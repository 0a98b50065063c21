"""PyTorch's ``torch.nn.modules.linear``."""

from numformer.nn.layers import Identity, Linear

__all__ = ["Identity", "Linear"]
