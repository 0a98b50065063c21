"""The seed's section-6 experiment: 30 noisy samples of sin(x), a 50-unit ReLU network, with
and without L2 + dropout.

Trained long enough to memorise the noise (8,000 full-batch Adam steps; at the seed's 2,000
plain-SGD epochs neither network overfits much and the comparison is a coin toss), the
unregularised network fits the training points more closely but is worse on the true function.
"""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F


def _data(seed):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-3, 3, 30))
    y = np.sin(x) + rng.standard_normal(30) * 0.3
    x_test = np.linspace(-3, 3, 200)
    f32 = lambda a: nf.Tensor(a[:, None].astype(np.float32))  # noqa: E731
    return f32(x), f32(y), f32(x_test), np.sin(x_test)


def _train(x, y, regularise: bool, seed: int, steps: int = 8000):
    nf.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, 50), nn.ReLU(), nn.Dropout(0.3 if regularise else 0.0), nn.Linear(50, 1))
    # The seed's L2 term 0.001 * sum(W^2) has gradient 0.002 W: coupled weight decay 0.002.
    opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.002 if regularise else 0.0)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regularised_network_generalises_better(seed):
    x, y, x_test, y_test = _data(seed)
    train_mse, test_mse = {}, {}
    for regularise in (False, True):
        model = _train(x, y, regularise, seed)
        with nf.no_grad():
            train_mse[regularise] = F.mse_loss(model(x), y).item()
            test_mse[regularise] = float(np.mean((model(x_test).numpy()[:, 0] - y_test) ** 2))
    assert test_mse[True] < test_mse[False], test_mse
    assert train_mse[False] < train_mse[True], train_mse  # the plain net memorised the noise
