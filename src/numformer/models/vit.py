"""The Vision Transformer (Dosovitskiy et al., 2021; seed section 8: vision), and attention
rollout (Abnar and Zuidema, 2020) to see where it looks.

An image is cut into ``patch_size`` x ``patch_size`` patches; each flattened patch goes through
one linear layer (``patch_embed``, the same as the paper's strided convolution), a learned
class token is prepended, learned positions are added, and pre-LN blocks follow; the class
token's final state, layer-normed, goes to the ``head``. Names follow timm's ViT
(``blocks.0.attn``, ``blocks.0.mlp.fc1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numformer import nn
from numformer.backend import xp
from numformer.nn.layers import linear_then
from numformer.serialization.configs import Config
from numformer.tensor import Tensor, array_of, cat


@dataclass
class ViTConfig(Config):
    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    num_classes: int = 10
    d_model: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        for name in ("image_size", "patch_size", "in_channels", "num_classes", "d_model", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"ViTConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"ViTConfig: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.d_model % self.num_heads:
            raise ValueError(f"ViTConfig: d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if not math.isfinite(self.mlp_ratio) or not int(self.d_model * self.mlp_ratio) >= 1:
            raise ValueError(f"ViTConfig: mlp_ratio must make a hidden width >= 1, got {self.mlp_ratio}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"ViTConfig: dropout must be in [0, 1), got {self.dropout}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class Mlp(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        """Shape: ``(N, L, d)`` -> ``(N, L, d)``."""
        return self.drop(self.fc2(self.drop(linear_then(self.fc1, self.act, x))))


class Block(nn.Module):
    """Pre-LN: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.d_model, eps=1e-6)
        self.attn = nn.MultiheadAttention(c.d_model, c.num_heads, dropout=c.dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(c.d_model, eps=1e-6)
        self.mlp = Mlp(c.d_model, int(c.d_model * c.mlp_ratio), c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, need_weights: bool = False):
        """Shape: ``(N, L, d)`` -> ``(N, L, d)`` and head-averaged weights ``(N, L, L)`` (or None)."""
        h = self.norm1(x)
        attended, weights = self.attn(h, h, h, need_weights=need_weights)
        x = x + self.drop(attended)
        return x + self.mlp(self.norm2(x)), weights


def patchify(images, patch: int) -> np.ndarray:
    """Shape: ``(N, C, H, W)`` (or ``(N, H, W)``) -> ``(N, (H/p) * (W/p), C * p * p)``, patches
    in row-major order."""
    return _patches(Tensor(array_of(images)), patch).array


def _patches(x: Tensor, patch: int) -> Tensor:
    """``patchify`` with tensor ops (reshape, permute: primitives a traced forward records)."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    N, C, H, W = x.shape
    x = x.reshape(N, C, H // patch, patch, W // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(N, (H // patch) * (W // patch), C * patch * patch)


class VisionTransformer(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        c = self.config = config
        self.patch_embed = nn.Linear(c.in_channels * c.patch_size**2, c.d_model)
        self.cls_token = nn.Parameter(xp.zeros((1, 1, c.d_model), dtype=np.float32))
        self.pos_embed = nn.Parameter(xp.zeros((1, c.num_patches + 1, c.d_model), dtype=np.float32))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.d_model, eps=1e-6)
        self.head = nn.Linear(c.d_model, c.num_classes)

    def forward(self, images, need_weights: bool = False):
        """Class logits of a batch of images.

        Shape: ``images`` float ``(N, C, H, W)`` (or ``(N, H, W)`` for one channel) ->
        ``(N, num_classes)``; with ``need_weights`` also the list of every block's
        head-averaged attention ``(N, 1 + P, 1 + P)`` (P patches).

        Raises:
            ValueError: images of another size or channel count than the config's."""
        x = array_of(images)
        c = self.config
        shape = x.shape[1:] if x.ndim == 4 else (1,) + tuple(x.shape[1:])
        if x.ndim not in (3, 4) or shape != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(
                f"VisionTransformer: images must be (N, {c.in_channels}, {c.image_size}, {c.image_size}), got {x.shape}"
            )
        tokens = self.patch_embed(_patches(Tensor(x.astype(np.float32, copy=False)), c.patch_size))
        N = tokens.shape[0]
        h = self.pos_drop(cat([self.cls_token.expand(N, 1, c.d_model), tokens], dim=1) + self.pos_embed)
        weights = []
        for block in self.blocks:
            h, w = block(h, need_weights)
            if need_weights:
                weights.append(w)
        logits = self.head(self.norm(h)[:, 0])
        return (logits, weights) if need_weights else logits


def attention_rollout(weights) -> np.ndarray:
    """How much the class token draws on each patch through all the layers (Abnar and
    Zuidema, 2020): per layer ``0.5 * A + 0.5 * I``, rows renormalised, multiplied from the
    first layer up.

    Shape: a list of ``(N, 1 + P, 1 + P)`` -> ``(N, P)``, each row summing to at most 1."""
    rollout = None
    for w in weights:
        a = np.asarray(w.array if isinstance(w, Tensor) else w, dtype=np.float64)
        a = 0.5 * a + 0.5 * np.eye(a.shape[-1])
        a = a / a.sum(-1, keepdims=True)
        rollout = a if rollout is None else a @ rollout
    return rollout[:, 0, 1:]


__all__ = ["ViTConfig", "VisionTransformer", "attention_rollout", "patchify"]
