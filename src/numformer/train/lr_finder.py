"""The learning-rate finder (seed section 7), done properly: an exponential sweep with a
bias-corrected smoothed loss, a divergence stop, the model and optimiser restored afterwards,
and several suggestions with the reasoning behind each."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from numformer import backend
from numformer.optim import SGD


@dataclass
class LRFinderResult:
    """The sweep: learning rates, raw and smoothed losses, and suggested learning rates.

    Suggestions: ``steepest`` (where the smoothed loss falls fastest per log-lr), ``valley``
    (two thirds along the longest falling stretch, fastai's rule), ``min_div_10`` and
    ``min_div_3`` (the seed's rule: a third of the lr at the minimum smoothed loss).

    Args:
        lrs: the learning rates tried, one per step.
        losses: the loss at each.
        smoothed: the losses' exponential moving average, bias-corrected.
        suggestions: the suggested learning rates by rule name.
        diverged: the sweep stopped early because the loss diverged.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float] = field(default_factory=dict)
    diverged: bool = False

    def plot(self, path) -> None:
        from numformer.viz.plots import plot_lr_finder

        plot_lr_finder(self, path)


def _suggest(lrs: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
    if len(lrs) < 3:
        return {}
    i_min = int(np.argmin(smoothed))
    slope = np.gradient(smoothed, np.log(lrs))
    i_steep = int(np.argmin(slope[: max(i_min, 1) + 1]))
    best_start, best_len, start = 0, 1, 0
    for i in range(1, len(smoothed)):
        if smoothed[i] > smoothed[i - 1]:
            start = i
        if i - start + 1 > best_len:
            best_start, best_len = start, i - start + 1
    i_valley = best_start + (2 * (best_len - 1)) // 3
    return {
        "steepest": float(lrs[i_steep]),
        "valley": float(lrs[i_valley]),
        "min_div_10": float(lrs[i_min] / 10),
        "min_div_3": float(lrs[i_min] / 3),
    }


def lr_find(
    model,
    loss_fn,
    data,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    optimizer=None,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    seed: int = 0,
) -> LRFinderResult:
    """Raise the learning rate exponentially from ``start_lr`` to ``end_lr`` over ``num_steps``
    training steps and record the loss; stop once the smoothed loss exceeds
    ``diverge_factor`` times its best (or is not finite).

    ``data(rng) -> batch`` (or a list of batches, cycled) feeds ``loss_fn(model, batch)``, which
    returns the mean loss or, as the ``Trainer`` takes it, ``(loss_sum, n)`` (its mean is used).
    ``optimizer`` defaults to SGD with momentum 0.9. The model's weights, the optimiser's state
    and numformer's RNG are restored afterwards, so the sweep leaves no trace.

    Args:
        model: the module to sweep (restored afterwards).
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``(loss_sum, n)``.
        data: ``data(rng) -> batch``, or a list of batches cycled.
        start_lr: the first learning rate (1e-7).
        end_lr: the last (10.0).
        num_steps: steps from the first to the last (100).
        optimizer: the optimiser whose learning rate is raised (default SGD, momentum 0.9).
        smoothing: the moving average's weight of the past (0.98).
        diverge_factor: stop once the smoothed loss exceeds this times its best (4.0).
        seed: the generator for ``data`` (0).

    Returns:
        An ``LRFinderResult`` (``.plot(path)`` draws the curve and the suggestions).
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr_find: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    if num_steps < 3:
        raise ValueError(f"lr_find: num_steps must be >= 3, got {num_steps}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"lr_find: smoothing must be in [0, 1), got {smoothing}")
    optimizer = optimizer or SGD(model.parameters(), lr=start_lr, momentum=0.9)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_optim = copy.deepcopy(optimizer.state_dict())
    saved_rng = backend.get_rng_state()
    saved_lrs = [g["lr"] for g in optimizer.param_groups]
    rng = np.random.default_rng(seed)
    batches = (lambda r, i: data[i % len(data)]) if isinstance(data, (list, tuple)) else (lambda r, i: data(r))
    factor = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    lrs, losses, smoothed = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    model.train()
    try:
        for i in range(num_steps):
            lr = start_lr * factor**i
            for g in optimizer.param_groups:
                g["lr"] = lr
            optimizer.zero_grad()
            loss = loss_fn(model, batches(rng, i))
            if isinstance(loss, (tuple, list)):  # (loss_sum, n): the Trainer's form for padded losses
                total, n = loss
                loss = total / float(n.item() if hasattr(n, "item") else n)
            value = float(loss.item())
            if not math.isfinite(value):
                diverged = True
                break
            loss.backward()
            optimizer.step()
            avg = smoothing * avg + (1 - smoothing) * value
            smooth = avg / (1 - smoothing ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smooth)
            best = min(best, smooth)
            if smooth > diverge_factor * best:
                diverged = True
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optim)
        for g, lr in zip(optimizer.param_groups, saved_lrs):
            g["lr"] = lr
        backend.set_rng_state(saved_rng)
        model.zero_grad()
    # the point that triggered the stop is kept in the curve, not in the suggestions
    upto = len(lrs) - 1 if diverged and len(lrs) > 3 else len(lrs)
    suggestions = _suggest(np.array(lrs[:upto]), np.array(smoothed[:upto]))
    return LRFinderResult(lrs, losses, smoothed, suggestions, diverged)
