"""Distance modules with PyTorch's names (PyTorch's ``nn.modules.distance``)."""

from __future__ import annotations

from numformer.nn import functional as F
from numformer.nn.module import Module


class CosineSimilarity(Module):
    """Cosine similarity along ``dim`` (``F.cosine_similarity``).

    Args:
        dim: the dimension along which to compare.
        eps: the smallest norm used (avoids division by zero).
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        """sum(x1 x2) / (max(||x1||, eps) max(||x2||, eps)) along ``dim``.

        Shape: x1 and x2 broadcasting to ``(*, D, *)`` -> ``(*, *)``."""
        return F.cosine_similarity(x1, x2, self.dim, self.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"
