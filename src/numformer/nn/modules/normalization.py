"""PyTorch's ``torch.nn.modules.normalization``."""

from numformer.nn.layers import LayerNorm

__all__ = ["LayerNorm"]
