"""Transformers over time series (seed section 8: forecasting and anomaly detection).

Inputs are windows of a series, one token per time step with ``n_features`` features (the
scaled value, a missing-value flag, calendar features); the apps build them. Causality is by
construction: a forecast from a window reads nothing after the window's last step.

- ``TimeSeriesTransformer``: an encoder over the window, its last token's state through a
  linear head to all ``horizon`` future values at once (direct multi-step forecasting).
- ``LSTMForecaster``: the seed's LSTM for forecasting, the same input and head (the baseline).
- ``TransformerAutoencoder``: encoder -> mean-pooled bottleneck of ``latent`` numbers ->
  decoder queries (learned, one per position) attending to it -> a value per step; points it
  reconstructs badly are anomalies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numformer import nn
from numformer.backend import xp
from numformer.serialization.configs import Config
from numformer.tensor import Tensor


@dataclass
class SeriesConfig(Config):
    n_features: int
    window: int
    horizon: int = 1
    d_model: int = 64
    nhead: int = 4
    num_layers: int = 3
    dim_feedforward: int = 128
    dropout: float = 0.1
    latent: int = 8  # the autoencoder's bottleneck

    def __post_init__(self):
        super().__post_init__()
        for name in ("n_features", "window", "horizon", "d_model", "nhead", "num_layers", "dim_feedforward", "latent"):
            if getattr(self, name) < 1:
                raise ValueError(f"SeriesConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            raise ValueError(f"SeriesConfig: d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")


def _check(x, c: SeriesConfig, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else Tensor(xp.asarray(x, dtype=np.float32))
    if t.ndim != 3 or t.shape[1:] != (c.window, c.n_features):
        raise ValueError(f"{name}: input must be (N, window={c.window}, n_features={c.n_features}), got {t.shape}")
    return t


def _encoder(c: SeriesConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        c.d_model, c.nhead, c.dim_feedforward, c.dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, c.num_layers, nn.LayerNorm(c.d_model))


def _encode(model, x):
    """Each step's features projected to d_model, positions added, through the encoder (the
    front both Transformers share). Shape: ``(N, window, n_features)`` -> ``(N, window, d_model)``."""
    return model.encoder(model.positions(model.input_proj(x)))


class TimeSeriesTransformer(nn.Module):
    def __init__(self, config: SeriesConfig):
        super().__init__()
        c = self.config = config
        self.input_proj = nn.Linear(c.n_features, c.d_model)
        self.positions = nn.LearnedPositionalEmbedding(c.window, c.d_model)
        self.encoder = _encoder(c)
        self.head = nn.Linear(c.d_model, c.horizon)

    def forward(self, x):
        """The next ``horizon`` scaled values after each window.

        Shape: ``(N, window, n_features)`` -> ``(N, horizon)``.

        Raises:
            ValueError: a window of another length or feature count."""
        h = _encode(self, _check(x, self.config, "TimeSeriesTransformer"))
        return self.head(h[:, -1])


class LSTMForecaster(nn.Module):
    def __init__(self, config: SeriesConfig, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.config = config
        between = config.dropout if layers > 1 else 0.0  # nn.LSTM's dropout acts between stacked layers only
        self.lstm = nn.LSTM(config.n_features, hidden, num_layers=layers, batch_first=True, dropout=between)
        self.head = nn.Linear(hidden, config.horizon)

    def forward(self, x):
        """Shape: ``(N, window, n_features)`` -> ``(N, horizon)``."""
        out, _ = self.lstm(_check(x, self.config, "LSTMForecaster"))
        return self.head(out[:, -1])


class TransformerAutoencoder(nn.Module):
    def __init__(self, config: SeriesConfig):
        super().__init__()
        c = self.config = config
        self.input_proj = nn.Linear(c.n_features, c.d_model)
        self.positions = nn.LearnedPositionalEmbedding(c.window, c.d_model)
        self.encoder = _encoder(c)
        self.to_latent = nn.Linear(c.d_model, c.latent)
        self.from_latent = nn.Linear(c.latent, c.d_model)
        self.queries = nn.Parameter(xp.zeros((1, c.window, c.d_model), dtype=np.float32))
        nn.init.normal_(self.queries, std=0.02)
        self.decoder = _encoder(c)
        self.head = nn.Linear(c.d_model, 1)

    def forward(self, x):
        """Each step's value of each window, rebuilt from ``latent`` numbers.

        Shape: ``(N, window, n_features)`` -> ``(N, window)`` (feature 0 is the value)."""
        z = self.to_latent(_encode(self, _check(x, self.config, "TransformerAutoencoder")).mean(dim=1))  # (N, latent)
        N = z.shape[0]
        h = self.queries.expand(N, self.config.window, self.config.d_model) + self.from_latent(z).unsqueeze(1)
        return self.head(self.decoder(h)).squeeze(-1)
