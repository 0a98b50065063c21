"""PyTorch's ``torch.nn.modules.distance``."""

from numformer.nn.distance import CosineSimilarity

__all__ = ["CosineSimilarity"]
