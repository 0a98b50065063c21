"""PyTorch's ``torch.nn.modules.sparse``."""

from numformer.nn.layers import Embedding

__all__ = ["Embedding"]
