"""The LR finder (seed section 7): the sweep, the divergence stop, restoration of every piece
of state, the suggestions (including the seed's minimum/3), and the plot."""

from __future__ import annotations

import numpy as np
import pytest
from tasks import mlp, mse

import numformer as nf
from numformer import optim
from numformer.train import lr_find


def seed_data(rng):
    """The seed's data: y = X @ [1.5, -2, 0.5, 3] + noise, 100 samples, 4 features."""
    x = rng.standard_normal((100, 4))
    y = x @ np.array([1.5, -2.0, 0.5, 3.0]) + 0.1 * rng.standard_normal(100)
    return x.astype(np.float32), y[:, None].astype(np.float32)


def test_sweep_stops_at_divergence_and_restores_everything(tmp_path):
    nf.manual_seed(0)
    model = mlp(hidden=16, inputs=4)
    opt = optim.SGD(model.parameters(), lr=3e-4, momentum=0.9)
    warm = seed_data(np.random.default_rng(9))  # give the optimiser some state to protect
    mse(model, warm).backward()
    opt.step()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt_before = opt.state_dict()
    rng_before = nf.get_rng_state()
    result = lr_find(model, mse, seed_data, start_lr=1e-6, end_lr=10.0, num_steps=80, optimizer=opt)
    assert result.diverged and len(result.lrs) < 80
    assert result.lrs[0] == pytest.approx(1e-6)
    ratios = np.array(result.lrs[1:]) / np.array(result.lrs[:-1])
    np.testing.assert_allclose(ratios, (10.0 / 1e-6) ** (1 / 79), rtol=1e-9)  # exponential
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    after = opt.state_dict()
    assert after["param_groups"][0]["lr"] == 3e-4
    for i, s in opt_before["state"].items():
        np.testing.assert_array_equal(after["state"][i]["momentum_buffer"], s["momentum_buffer"])
    assert nf.get_rng_state() == rng_before
    assert all(p.grad is None for p in model.parameters())


def test_suggestions_follow_the_curve(tmp_path):
    nf.manual_seed(0)
    model = mlp(hidden=16, inputs=4)
    result = lr_find(model, mse, seed_data, start_lr=1e-6, end_lr=10.0, num_steps=80)
    s = result.suggestions
    assert set(s) == {"steepest", "valley", "min_div_10", "min_div_3"}
    i_min = int(np.argmin(result.smoothed[:-1]))
    assert s["min_div_3"] == pytest.approx(result.lrs[i_min] / 3)  # the seed's rule
    assert s["min_div_10"] == pytest.approx(result.lrs[i_min] / 10)
    assert s["steepest"] <= result.lrs[i_min] and s["valley"] <= result.lrs[i_min]
    # the loss really falls from the start of the sweep to its minimum
    assert min(result.smoothed) < 0.75 * result.smoothed[0]
    png = tmp_path / "lr.png"
    result.plot(png)
    assert png.stat().st_size > 10_000


def test_lr_find_bad_arguments():
    model = mlp()
    with pytest.raises(ValueError, match=r"need 0 < start_lr < end_lr, got 1.0 and 0.1"):
        lr_find(model, mse, seed_data, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match=r"num_steps must be >= 3, got 1"):
        lr_find(model, mse, seed_data, num_steps=1)


def test_a_loss_given_as_sum_and_count_sweeps_as_its_mean():
    """The Trainer's (loss_sum, n) form (padded token losses) is taken too: the same curve."""

    def summed(model, batch):
        return mse(model, batch) * 100.0, 100

    curves = []
    for loss_fn in (mse, summed):
        nf.manual_seed(0)
        model = mlp(hidden=8, inputs=4)
        curves.append(lr_find(model, loss_fn, seed_data, num_steps=10).losses)
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-5)
