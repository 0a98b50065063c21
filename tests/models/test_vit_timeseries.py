"""The Vision Transformer and the time-series models: shapes, overfitting a tiny batch, no
look-ahead in forecasts, attention rollout, and save/load."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer.apps.series import carry_forward, features, forecast, inject, seasonal_naive
from numformer.models.timeseries import LSTMForecaster, SeriesConfig, TimeSeriesTransformer, TransformerAutoencoder
from numformer.models.vit import VisionTransformer, ViTConfig, attention_rollout, patchify
from numformer.serialization.safetensors import load_model, save_model


def _train(model, loss_fn, steps=120, lr=3e-3):
    opt = nf.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    return float(loss.item())


def test_patchify_keeps_row_major_patches():
    img = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    p = patchify(img, 2)
    assert p.shape == (1, 4, 4)
    assert p[0, 0].tolist() == [0, 1, 4, 5] and p[0, 3].tolist() == [10, 11, 14, 15]


def test_vit_overfits_a_tiny_batch_and_rollout_is_a_distribution():
    nf.manual_seed(0)
    model = VisionTransformer(ViTConfig(d_model=32, depth=2, num_heads=4, dropout=0.0))
    r = np.random.default_rng(0)
    x, y = r.random((10, 8, 8)).astype(np.float32), np.arange(10)
    loss = _train(model, lambda: nf.nn.functional.cross_entropy(model(x), y))
    assert loss < 0.05
    logits, weights = model(x, need_weights=True)
    assert logits.shape == (10, 10) and len(weights) == 2 and weights[0].shape == (10, 17, 17)
    rollout = attention_rollout(weights)
    assert rollout.shape == (10, 16) and (rollout >= 0).all() and (rollout.sum(1) <= 1 + 1e-9).all()
    with pytest.raises(ValueError, match=r"images must be \(N, 1, 8, 8\)"):
        model(np.zeros((2, 7, 7), np.float32))


CONFIG = SeriesConfig(
    n_features=4, window=12, horizon=5, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, dropout=0.0
)


@pytest.mark.parametrize("make", [TimeSeriesTransformer, LSTMForecaster, TransformerAutoencoder])
def test_series_models_overfit_a_tiny_batch_and_round_trip(make, tmp_path):
    nf.manual_seed(0)
    model = make(CONFIG)
    r = np.random.default_rng(1)
    x = r.standard_normal((6, 12, 4)).astype(np.float32)
    target = r.standard_normal((6, 5)).astype(np.float32) if make is not TransformerAutoencoder else x[:, :, 0]

    def loss():
        err = model(x) - nf.tensor(target)
        return (err * err).mean()

    assert _train(model, loss, steps=300) < 0.05
    save_model(model, tmp_path / "m.safetensors")
    other = make(CONFIG)
    load_model(other, tmp_path / "m.safetensors")
    np.testing.assert_array_equal(other.eval()(x).array, model.eval()(x).array)


def test_a_forecast_never_reads_the_future():
    nf.manual_seed(0)
    model = TimeSeriesTransformer(CONFIG).eval()
    r = np.random.default_rng(2)
    values = r.standard_normal(60).cumsum() + 100
    values[[20, 33]] = np.nan
    phase = (np.arange(60) / 12) % 1
    end = 40
    before = forecast(model, values, phase, end, 12, 1.5, 12)
    changed = values.copy()
    changed[end + 1 :] = r.standard_normal(60 - end - 1) * 1e3  # a different future
    np.testing.assert_array_equal(forecast(model, changed, phase, end, 12, 1.5, 12), before)
    x, level = features(values, phase, end, 12, 1.5)
    assert x.shape == (12, 4) and level == values[end] and x[-1, 0] == 0.0


def test_missing_values_are_carried_forward_and_flagged():
    v = np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan])
    np.testing.assert_array_equal(carry_forward(v), [1.0, 1.0, 1.0, 1.0, 4.0, 4.0])
    x, _ = features(v, np.zeros(6), 5, 6, 1.0)
    assert x[:, 1].tolist() == [1, 0, 1, 1, 0, 1]
    np.testing.assert_array_equal(seasonal_naive(np.arange(10.0), 5, 4), [6, 7, 8, 9, 6])


def test_injected_anomalies_are_labelled_and_apart():
    values = np.zeros(500)
    x, labels = inject(values, np.random.default_rng(0), 1.0, 8)
    assert labels.sum() > 8 and (x[~labels] == 0).all() and (x[labels] != 0).mean() > 0.9
