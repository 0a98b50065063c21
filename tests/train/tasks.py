"""Small, fast training tasks shared by the training-toolkit tests."""

from __future__ import annotations

import numpy as np

import numformer as nf
from numformer import nn
from numformer.nn import functional as F


def mlp(hidden: int = 16, dropout: float = 0.0, inputs: int = 2) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def regression(batch_size: int = 32, noise: float = 0.05):
    """Batches of y = sin(2 x0) + 0.5 x1 + noise: learnable by a small MLP."""

    def draw(rng):
        x = rng.standard_normal((batch_size, 2))
        y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] + noise * rng.standard_normal(batch_size)
        return x.astype(np.float32), y[:, None].astype(np.float32)

    return draw


def mse(model, batch):
    x, y = batch
    return F.mse_loss(model(nf.Tensor(x)), nf.Tensor(y))
