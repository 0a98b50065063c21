"""The training loop and checkpoints: exact resume, Ctrl-C, crash-safe writes, corrupted and
mismatched checkpoints, early stopping, best-checkpointing, metrics and plots."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from tasks import mlp, mse, regression

import numformer as nf
import numformer.serialization.folders
from numformer import nn, optim
from numformer.nn import functional as F
from numformer.optim.lr_scheduler import WarmupCosineLR
from numformer.train import (
    Callback,
    CheckpointError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)
from numformer.viz.plots import plot_metrics


def make_trainer(out_dir, max_steps, init_seed=0, **config):
    nf.manual_seed(init_seed)
    model = mlp(dropout=0.2)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    sched = WarmupCosineLR(opt, warmup_steps=3, total_steps=12)
    cfg = TrainConfig(
        max_steps=max_steps,
        grad_accum_steps=2,
        clip_grad_norm=0.5,
        eval_every=4,
        eval_batches=2,
        checkpoint_every=5,
        out_dir=str(out_dir),
        seed=3,
        progress=False,
        **config,
    )
    return Trainer(model, opt, mse, regression(), regression(), scheduler=sched, config=cfg)


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    full = make_trainer(tmp_path / "full", 12)
    full.fit()
    part = make_trainer(tmp_path / "split", 5)
    assert part.fit().step == 5
    nf.manual_seed(999)  # resuming must not depend on the RNG state of the new process
    resumed = make_trainer(tmp_path / "split", 12, init_seed=123)  # other initial weights
    result = resumed.fit(resume=True)
    assert result.status == "completed" and result.step == 12
    for key, value in full.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value, err_msg=key)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 13))


def test_ctrl_c_finishes_the_step_saves_and_returns(tmp_path):
    class Interrupt(Callback):
        def on_step_end(self, trainer, metrics):
            if trainer.step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    trainer = make_trainer(tmp_path, 12)
    trainer.callbacks.append(Interrupt())
    result = trainer.fit()
    assert result.status == "interrupted" and result.step == 3
    state = load_checkpoint(tmp_path / "checkpoints", mlp(dropout=0.2))
    assert state["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = mlp()
    save_checkpoint(tmp_path, model, step=1)
    good = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    model.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None)

    def crash(arrays, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(numformer.serialization.folders, "save_arrays", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step-00000001"]
    restored = mlp()
    assert load_checkpoint(tmp_path, restored)["step"] == 1
    for k, v in good.items():
        np.testing.assert_array_equal(restored.state_dict()[k], v)


def test_corrupted_truncated_and_mismatched_checkpoints_get_clear_errors(tmp_path):
    model = mlp()
    folder = save_checkpoint(tmp_path, model, step=7)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is missing or damaged"):
        load_checkpoint(tmp_path, mlp())
    weights.write_bytes(data)
    other = mlp(hidden=8)
    before = {k: v.numpy().copy() for k, v in other.state_dict().items()}
    with pytest.raises(
        CheckpointError,
        match=r"(?s)does not match this model.*0.weight: expected "
        r"shape \(8, 2\), got \(16, 2\)",
    ):
        load_checkpoint(tmp_path, other)
    for k, v in before.items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "nowhere", mlp())


def test_early_stopping_best_checkpoint_metrics_and_plot(tmp_path):
    nf.manual_seed(0)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=1e-12)  # nothing improves after the first evaluation
    cfg = TrainConfig(
        max_steps=100,
        eval_every=2,
        eval_batches=2,
        early_stopping_patience=2,
        out_dir=str(tmp_path),
        progress=False,
        checkpoint_every=1000,
    )
    result = Trainer(model, opt, mse, regression(), regression(), config=cfg).fit()
    assert result.status == "early_stopped" and result.step == 6
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["step"] == 2
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "grad_norm", "throughput"} <= set(rows[0])
    assert [r["step"] for r in rows if "val_loss" in r] == [2, 4, 6]
    assert (tmp_path / "metrics.png").stat().st_size > 10_000  # written by fit
    png = tmp_path / "again.png"
    plot_metrics(tmp_path / "metrics.jsonl", png)
    assert png.stat().st_size > 10_000


def test_training_reduces_loss_and_config_validation(tmp_path):
    nf.manual_seed(0)
    model = mlp(hidden=32)
    cfg = TrainConfig(max_steps=150, eval_every=50, out_dir=str(tmp_path), progress=False)
    result = Trainer(model, optim.Adam(model.parameters(), lr=1e-2), mse, regression(), regression(), config=cfg).fit()
    assert result.history[-1]["val_loss"] < 0.25 * result.history[49]["val_loss"] or result.best_val_loss < 0.1
    with pytest.raises(ValueError, match=r"TrainConfig: max_steps must be >= 1, got 0"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match=r"clip_grad_norm must be finite and > 0, or None, got -1"):
        TrainConfig(clip_grad_norm=-1)


def test_a_dataloader_feeds_the_trainer_and_resumes_exactly(tmp_path):
    """Epochs of a shuffled DataLoader in an order drawn from the trainer's generator: a run
    stopped after 4 steps and resumed gives the weights of a run of 7 straight."""
    from numformer.utils.data import DataLoader, TensorDataset

    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    data = TensorDataset(x, x.sum(1, keepdims=True))

    def loss_fn(model, batch):
        return F.mse_loss(model(batch[0]), batch[1])

    def run(out, steps, resume=False):
        nf.manual_seed(0)
        model = nn.Linear(3, 1)
        loader = DataLoader(data, batch_size=4, shuffle=True)  # 3 batches an epoch: 7 steps cross two epochs
        trainer = Trainer(
            model,
            optim.SGD(model.parameters(), lr=0.1),
            loss_fn,
            loader,
            loader,
            config=TrainConfig(max_steps=steps, out_dir=str(out), eval_every=2, checkpoint_every=2, progress=False),
        )
        trainer.fit(resume=resume)
        return model.weight.array.copy()

    straight = run(tmp_path / "a", 7)
    run(tmp_path / "b", 4)
    np.testing.assert_array_equal(run(tmp_path / "b", 7, resume=True), straight)
    with pytest.raises(TypeError, match="DataLoader"):
        Trainer(nn.Linear(3, 1), optim.SGD(nn.Linear(3, 1).parameters(), lr=0.1), loss_fn, [1, 2, 3])


# --- gradient accumulation weights tokens, not micro-batches (issue 36, item 1) ----------------


def _padded_micro_batches():
    """A padded token task's batch of 4 rows as two micro-batches of 11 and 3 real targets
    (-100: padding), and the whole batch."""
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, 6, (4, 6)), rng.integers(0, 6, (4, 6))
    real = np.arange(6)[None, :] < np.array([[6], [5], [1], [2]])  # 6 + 5, then 1 + 2 targets
    y = np.where(real, y, -100)
    return [(x[:2], y[:2]), (x[2:], y[2:])], (x, y)


def _token_loss_sum(model, batch):
    logits = model(nf.Tensor(batch[0]))
    return F.cross_entropy(logits.reshape(-1, 6), batch[1].reshape(-1), reduction="sum"), int((batch[1] != -100).sum())


def _token_loss_mean(model, batch):
    return F.cross_entropy(model(nf.Tensor(batch[0])).reshape(-1, 6), batch[1].reshape(-1))


def _one_step(out, batches, loss_fn, count=None):
    """One SGD step (lr 1, no clipping) over ``batches`` as its micro-batches: (weights, logged loss)."""
    nf.manual_seed(0)
    model = nn.Sequential(nn.Embedding(6, 8), nn.Linear(8, 6))
    cfg = TrainConfig(max_steps=1, grad_accum_steps=len(batches), clip_grad_norm=None, out_dir=str(out), progress=False)
    feed = iter(batches)
    opt = optim.SGD(model.parameters(), lr=1.0)
    result = Trainer(model, opt, loss_fn, lambda rng: next(feed), config=cfg, count=count).fit()
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}, result.history[0]["loss"]


@pytest.mark.parametrize(
    ("loss_fn", "count"),
    [(_token_loss_sum, None), (_token_loss_mean, lambda batch: int((batch[1] != -100).sum()))],
    ids=["sum-and-count", "mean-weighted-by-count"],
)
def test_accumulated_steps_equal_the_full_batch_step_with_padded_tokens(tmp_path, loss_fn, count):
    """11 and 3 real tokens in two micro-batches: the same gradient step and logged loss as the
    whole batch in one (today's micro-batch mean weighted the 3 tokens as much as the 11)."""
    micro, whole = _padded_micro_batches()
    split_weights, split_loss = _one_step(tmp_path / "split", micro, loss_fn, count)
    full_weights, full_loss = _one_step(tmp_path / "full", [whole], loss_fn, count)
    nf.manual_seed(0)
    fresh = nn.Sequential(nn.Embedding(6, 8), nn.Linear(8, 6))
    token_mean = float(_token_loss_mean(fresh, whole).item())  # the true mean over the 14 tokens
    assert split_loss == pytest.approx(token_mean, rel=1e-6) and full_loss == pytest.approx(token_mean, rel=1e-6)
    moved = max(float(np.abs(full_weights[k] - fresh.state_dict()[k].numpy()).max()) for k in full_weights)
    assert moved > 0.05  # the step is large enough for a wrong weighting to show
    for key, value in full_weights.items():
        np.testing.assert_allclose(split_weights[key], value, rtol=0, atol=1e-6, err_msg=key)


def test_a_step_with_every_target_ignored_is_an_error_not_nan(tmp_path):
    x = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="no item to learn from"):
        _one_step(tmp_path, [(x, np.full((2, 3), -100))], _token_loss_sum)


def test_a_loader_without_batching_feeds_one_sample_a_step():
    """``batch_size=None``: each step is one sample, converted as the loader's iteration
    converts it, and an epoch visits every sample once in an order from the trainer's generator."""
    from numformer.train import LoaderBatches
    from numformer.utils.data import DataLoader, TensorDataset

    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    batches = LoaderBatches(DataLoader(TensorDataset(x), batch_size=None, shuffle=True))
    rng = np.random.default_rng(0)
    epoch = [batches(rng) for _ in range(5)]
    assert all(len(sample) == 1 and tuple(sample[0].shape) == (2,) for sample in epoch)
    assert sorted(float(s[0][0]) for s in epoch) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert batches.state["position"] == 5
