"""The health monitor: each item of the seed's checklist provoked on purpose on a small model,
and a healthy run that raises none."""

from __future__ import annotations

import numpy as np
import pytest
from tasks import mlp, mse, regression

import numformer as nf
from numformer import nn, optim
from numformer.train import ADVICE, HealthMonitor, TrainConfig, Trainer


def run(model, opt, train, val=None, steps=120, tmp_path=None, eval_every=20, interval=5, window=30):
    monitor = HealthMonitor(model, interval=interval, window=window)
    cfg = TrainConfig(
        max_steps=steps,
        eval_every=eval_every,
        eval_batches=2,
        progress=False,
        clip_grad_norm=None,
        out_dir=str(tmp_path),
        checkpoint_every=10_000,
    )
    result = Trainer(model, opt, mse, train, val, config=cfg, monitor=monitor).fit()
    return monitor, result


def kinds(monitor):
    return {d.kind for d in monitor.diagnoses}


def test_healthy_run_raises_nothing(tmp_path):
    nf.manual_seed(0)
    model = mlp(hidden=32)
    monitor, result = run(
        model, optim.Adam(model.parameters(), lr=5e-3), regression(), regression(), steps=200, tmp_path=tmp_path
    )
    assert monitor.diagnoses == [], monitor.report()
    assert result.status == "completed"
    assert "No problems found" in monitor.report() and "update/weight ratio" in monitor.report()
    assert (tmp_path / "health_report.txt").read_text().startswith("Health report")


def test_a_weight_that_starts_at_zero_has_no_update_ratio(tmp_path):
    """A zero-initialised bias divided its first update by 1e-12: the report read "largest
    update/weight ratio: 8.49e+09" above "No problems found" (the breaking pass after issue 36)."""
    nf.manual_seed(0)
    model = mlp(hidden=32)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.array[...] = 0.0
    monitor, _ = run(model, optim.Adam(model.parameters(), lr=5e-3), regression(), steps=1, tmp_path=tmp_path)
    assert monitor.update_ratios and not any(name.endswith("bias") for name in monitor.update_ratios)
    assert max(monitor.update_ratios.values()) < 1.0, monitor.update_ratios


def test_poisoned_input_is_fatal_and_names_the_first_layer(tmp_path):
    nf.manual_seed(0)
    clean = regression()

    def poisoned(rng):
        x, y = clean(rng)
        x[3, 1] = np.nan
        return x, y

    model = mlp()
    monitor, result = run(model, optim.SGD(model.parameters(), lr=0.01), poisoned, tmp_path=tmp_path, interval=1)
    nan = [d for d in monitor.diagnoses if d.kind == "nan_loss"]
    assert nan and nan[0].fatal and nan[0].layer == "activations of 0"
    assert result.status == "diverged" and result.step == 1 and "diverged at step 1" in result.reason
    assert not (tmp_path / "checkpoints" / "latest.json").exists()  # a non-finite model is never saved
    assert ADVICE["nan_loss"] in monitor.report()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # NumPy notes the overflow
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_huge_learning_rate_explodes_gradients(tmp_path):
    nf.manual_seed(0)
    model = mlp()
    monitor, _ = run(
        model, optim.SGD(model.parameters(), lr=5.0), regression(), steps=30, tmp_path=tmp_path, interval=1
    )
    assert "exploding_gradients" in kinds(monitor) or "nan_loss" in kinds(monitor)
    assert "exploding_gradients" in kinds(monitor), monitor.report()


def test_negatively_biased_relus_are_dead_and_predictions_collapse(tmp_path):
    nf.manual_seed(0)
    model = mlp(hidden=32)
    model[0].bias.array[...] = -10.0
    monitor, _ = run(model, optim.SGD(model.parameters(), lr=0.01), regression(), steps=20, tmp_path=tmp_path)
    dead = [d for d in monitor.diagnoses if d.kind == "dead_relus"]
    assert dead and dead[0].layer == "1" and "100% of the units never activate" in dead[0].detail
    assert "collapsed_predictions" in kinds(monitor)


def test_tiny_learning_rate_loss_not_decreasing(tmp_path):
    nf.manual_seed(0)
    model = mlp()
    monitor, _ = run(model, optim.SGD(model.parameters(), lr=1e-9), regression(), steps=60, tmp_path=tmp_path)
    assert "loss_not_decreasing" in kinds(monitor)


def test_label_noise_makes_the_loss_oscillate(tmp_path):
    def noisy(rng):
        x = rng.standard_normal((4, 2)).astype(np.float32)
        y = (rng.standard_normal() * 5 + rng.standard_normal((4, 1))).astype(np.float32)
        return x, y

    nf.manual_seed(0)
    model = mlp()
    monitor, _ = run(model, optim.SGD(model.parameters(), lr=0.05), noisy, steps=60, tmp_path=tmp_path)
    assert "loss_oscillating" in kinds(monitor)


def test_tiny_training_set_overfits(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (8, 1)).astype(np.float32)
    y = (np.sin(x) + 0.5 * rng.standard_normal((8, 1))).astype(np.float32)

    def train(r):
        return x, y

    def val(r):
        xv = r.uniform(-3, 3, (64, 1)).astype(np.float32)
        return xv, np.sin(xv).astype(np.float32)

    nf.manual_seed(0)
    model = mlp(hidden=128, inputs=1)
    monitor, _ = run(
        model, optim.Adam(model.parameters(), lr=1e-2), train, val, steps=600, tmp_path=tmp_path, eval_every=25
    )
    assert "overfitting" in kinds(monitor), monitor.report()


def test_model_too_small_underfits(tmp_path):
    def task(rng):  # y = x0^2: no linear signal at all
        x = rng.standard_normal((512, 2)).astype(np.float32)
        return x, (x[:, :1] ** 2).astype(np.float32)

    nf.manual_seed(0)
    model = nn.Linear(2, 1)
    monitor, _ = run(
        model, optim.Adam(model.parameters(), lr=5e-2), task, task, steps=300, tmp_path=tmp_path, eval_every=50
    )
    assert "underfitting" in kinds(monitor), monitor.report()


class _Sigmoid(nn.Module):
    def forward(self, x):
        return x.sigmoid()


def test_deep_sigmoid_stack_has_vanishing_gradients(tmp_path):
    nf.manual_seed(0)
    layers = []
    for i in range(12):  # saturating activations and small weights: each layer shrinks grads
        lin = nn.Linear(2 if i == 0 else 16, 16)
        nn.init.normal_(lin.weight, 0.0, 0.1)
        layers += [lin, _Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 1))
    monitor, _ = run(
        model, optim.SGD(model.parameters(), lr=0.01), regression(), steps=10, tmp_path=tmp_path, interval=1
    )
    diag = [d for d in monitor.diagnoses if d.kind == "vanishing_gradients"]
    assert diag and diag[0].layer == "0.weight"


def test_monitor_arguments_and_hooks_removed():
    model = mlp()
    with pytest.raises(ValueError, match="need interval >= 1 and window >= 4"):
        HealthMonitor(model, interval=0)
    monitor = HealthMonitor(model)
    monitor.close()
    model(nf.randn(4, 2))
    assert monitor.dead == {}


def test_the_monitor_hooks_the_model_only_for_recorded_steps():
    """Between recorded steps (evaluation, samples, generation) the model carries no hooks, so
    its inference paths (GPT's decoding fast path) stay on."""
    from numformer.models import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, d_model=8))
    monitor = HealthMonitor(model, interval=3)

    def hooked():
        return any(m.has_forward_hooks() for m in model.modules())

    assert hooked()  # step 1 is recorded
    seen = []
    for step in range(1, 7):
        seen.append(hooked())
        monitor.after_backward(step, 1.0)
        monitor.after_step(step)
    assert seen == [True, False, True, False, False, True]
    monitor.close()
    assert not hooked()
    monitor.after_step(8)  # step 9 would be recorded: still no hooks after close
    assert not hooked()
