"""The seed's debugging checklist (section 7), run automatically while a model trains.

``HealthMonitor`` watches the loss every step and, every ``interval`` steps, per-layer
gradient norms, update-to-weight ratios and activation statistics (through forward hooks that
record only on those steps, so the other steps cost nothing). Each problem it finds becomes a
``Diagnosis`` whose message is the checklist's advice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numformer.backend import module_of
from numformer.nn.layers import ReLU
from numformer.nn.module import Module
from numformer.tensor import Tensor

ADVICE = {
    "nan_loss": "Loss is NaN or infinite: gradient explosion. Add gradient clipping, reduce the "
    "learning rate, check for division by zero or log(0), and check the inputs.",
    "exploding_gradients": "Gradients are exploding: add gradient clipping (clip_grad_norm_), "
    "reduce the learning rate, check the initialisation scale.",
    "vanishing_gradients": "Gradients vanish before reaching the early layers: use residual "
    "connections, normalisation (LayerNorm/BatchNorm), non-saturating "
    "activations (ReLU/GELU) and a scaled initialisation.",
    "loss_not_decreasing": "Loss is not decreasing: check the learning rate (try 10x smaller and "
    "larger, or run the LR finder) and verify the data loading and labels.",
    "loss_oscillating": "Loss is oscillating wildly: the learning rate is too high, the batch "
    "too small, or the labels noisy.",
    "overfitting": "Train loss falls while validation loss rises: overfitting. Add dropout or "
    "weight decay, reduce the model size, get more data, or stop earlier.",
    "underfitting": "Train and validation loss are both high and flat: underfitting. Increase "
    "model capacity, train longer, reduce regularisation.",
    "dead_relus": "Most units of a ReLU layer never activate (dead ReLUs): lower the learning "
    "rate, check the initialisation and biases, or use GELU.",
    "collapsed_predictions": "Predictions are nearly identical for every input: dead ReLUs, bad "
    "initialisation or collapsed gradients. Check activations per layer.",
}

FATAL = {"nan_loss"}


@dataclass
class Diagnosis:
    """One fault the ``HealthMonitor`` found.

    Args:
        kind: the fault (``"nan_loss"``, ``"exploding_gradients"``, ``"vanishing_gradients"``,
            ``"loss_not_decreasing"``, ``"loss_oscillating"``, ``"overfitting"``,
            ``"underfitting"``, ``"dead_relus"``, ``"collapsed_predictions"``).
        step: the step it was seen at.
        detail: what was measured, in words.
        layer: the layer it concerns, where one does.
    """

    kind: str
    step: int
    detail: str
    layer: str | None = None

    @property
    def fatal(self) -> bool:
        return self.kind in FATAL

    @property
    def message(self) -> str:
        where = f" [{self.layer}]" if self.layer else ""
        return f"step {self.step}{where}: {self.detail}. {ADVICE[self.kind]}"


def _norm(a) -> float:
    """The L2 norm, summed in float64, on the array's own device (one number comes back)."""
    m = module_of(a)
    return float(m.sqrt(m.sum(m.square(a, dtype=np.float64))))


class HealthMonitor:
    """Watch a training run; ``diagnoses`` lists what went wrong, ``report()`` explains it.

    The trainer calls ``after_backward(step, loss)``, ``after_step(step)`` and
    ``record_validation(step, val_loss)``; any loop can do the same.

    Args:
        model: the module watched (its parameters' gradients and its ReLUs' activations).
        interval: steps between the gradient and activation checks (10).
        window: the losses the loss checks look back over (30, at least 4).
        explode_norm: a global gradient norm above this is exploding (1e3).
        vanish_ratio: a weight's gradient norm below this fraction of the largest layer's is
            vanishing (1e-4).
        dead_fraction: a ReLU layer with at least this fraction of units never active is dead (0.9).
        oscillation: a median relative change of the loss per step above this is oscillating (0.5).

    Raises:
        ValueError: ``interval`` below 1 or ``window`` below 4.
    """

    def __init__(
        self,
        model: Module,
        interval: int = 10,
        window: int = 30,
        explode_norm: float = 1e3,
        vanish_ratio: float = 1e-4,
        dead_fraction: float = 0.9,
        oscillation: float = 0.5,
    ):
        if interval < 1 or window < 4:
            raise ValueError(f"HealthMonitor: need interval >= 1 and window >= 4, got {interval}, {window}")
        self.model, self.interval, self.window = model, interval, window
        self.explode_norm, self.vanish_ratio = explode_norm, vanish_ratio
        self.dead_fraction, self.oscillation = dead_fraction, oscillation
        self.losses: list[float] = []
        self.evals: list[tuple[int, float, float]] = []  # (step, mean train loss, val loss)
        self._losses_at_last_eval = 0
        self.grad_norms: list[float] = []
        self.update_ratios: dict[str, float] = {}
        self.dead: dict[str, float] = {}
        self.diagnoses: list[Diagnosis] = []
        self._seen: set[str] = set()
        self._activations: list[tuple[str, bool]] = []  # forward order: (module, all finite)
        self._output_spread: float | None = None
        self._before: dict[str, np.ndarray] = {}
        self._hooks: list = []
        self._closed = False
        self._set_recording(True)  # step 1 is recorded

    def _set_recording(self, on: bool) -> None:
        """Record the next step or not. The forward hooks are on the model only while a step is
        recorded: between those steps (evaluation, samples, generation after training) the model
        runs without hooks, so nothing slows its inference paths."""
        self._recording = on
        if on and not self._hooks and not self._closed:
            self._hooks = [m.register_forward_hook(self._make_hook(name)) for name, m in self.model.named_modules()]
        elif not on or self._closed:
            for h in self._hooks:
                h.remove()
            self._hooks = []

    def close(self) -> None:
        """Remove the forward hooks for good (the monitor records no more activations)."""
        self._closed = True
        self._set_recording(self._recording)

    # --- recording --------------------------------------------------------------------------
    def _make_hook(self, name: str):
        def hook(module, inputs, output):
            if not (self._recording and module.training):
                return
            out = output[0] if isinstance(output, tuple) else output
            if not isinstance(out, Tensor):
                return
            data = out.array
            m = module_of(data)
            self._activations.append((name or "model", bool(m.isfinite(data).all())))
            if isinstance(module, ReLU) and data.ndim >= 1:
                ever_active = (data > 0).reshape(-1, data.shape[-1]).any(axis=0)
                self.dead[name] = float(1.0 - ever_active.mean())
            if name == "" and data.ndim >= 2 and data.shape[0] > 1:
                spread = float(data.std(axis=0).mean())
                scale = float(m.abs(data).mean()) + 1e-12
                self._output_spread = spread / scale

        return hook

    def _flag(self, kind: str, step: int, detail: str, layer: str | None = None) -> None:
        if kind in self._seen:
            return
        self._seen.add(kind)
        self.diagnoses.append(Diagnosis(kind, step, detail, layer))

    @property
    def fatal(self) -> bool:
        return any(d.fatal for d in self.diagnoses)

    def fatal_message(self) -> str:
        return next(d.message for d in self.diagnoses if d.fatal)

    # --- hooks the training loop calls ------------------------------------------------------
    def after_backward(self, step: int, loss: float) -> None:
        self.losses.append(float(loss))
        params = list(self.model.named_parameters())
        if not math.isfinite(loss):
            self._flag("nan_loss", step, f"loss is {loss}", self._first_bad_layer(params))
        if self._recording:
            self._check_gradients(step, params)
            self._before = {n: p.array.copy() for n, p in params}
            self._check_activations(step)
        if step % self.interval == 0 and len(self.losses) >= self.window:
            self._check_loss(step)

    def after_step(self, step: int) -> None:
        if self._before:
            for name, p in self.model.named_parameters():
                w = _norm(self._before[name]) if name in self._before else 0.0
                if w > 0:  # a weight at zero (a fresh bias) has no ratio: dividing by ~0 gave 1e9
                    self.update_ratios[name] = _norm(p.array - self._before[name]) / w
            self._before = {}
        self._set_recording((step + 1) % self.interval == 0)
        self._activations, self._output_spread = [], None

    def record_validation(self, step: int, val_loss: float, train_loss: float | None = None) -> None:
        """Record a validation loss; the train loss defaults to the mean since the last one."""
        if train_loss is None:
            since = len(self.losses) - self._losses_at_last_eval
            train_loss = float(np.mean(self.losses[-since:])) if since > 0 else math.nan
        self._losses_at_last_eval = len(self.losses)
        self.evals.append((step, float(train_loss), float(val_loss)))
        self._check_fit(step)

    # --- the checklist ----------------------------------------------------------------------
    def _first_bad_layer(self, params) -> str | None:
        for name, finite in self._activations:
            if not finite:
                return f"activations of {name}"
        for name, p in params:
            if p.grad is not None and not module_of(p.grad.array).isfinite(p.grad.array).all():
                return f"gradient of {name}"
        return None

    def _check_gradients(self, step: int, params) -> None:
        norms = {n: _norm(p.grad.array) for n, p in params if p.grad is not None}
        if not norms:
            return
        total = math.sqrt(sum(v * v for v in norms.values()))
        history = list(self.grad_norms)
        self.grad_norms.append(total)
        if not math.isfinite(total):
            bad = next(n for n, v in norms.items() if not math.isfinite(v))
            self._flag("nan_loss", step, "gradients are not finite", f"gradient of {bad}")
        elif total > self.explode_norm or (len(history) >= 3 and total > 100 * np.median(history)):
            self._flag("exploding_gradients", step, f"gradient norm {total:.3g}")
        weights = {n: norms[n] for n, p in params if n in norms and p.ndim >= 2}
        if len(weights) >= 2 and max(weights.values()) > 0:
            smallest = min(weights, key=weights.get)
            ratio = weights[smallest] / max(weights.values())
            if ratio < self.vanish_ratio:
                self._flag(
                    "vanishing_gradients",
                    step,
                    f"gradient norm of {smallest} is {ratio:.1e} of the largest layer's",
                    smallest,
                )

    def _check_activations(self, step: int) -> None:
        for name, fraction in self.dead.items():
            if fraction >= self.dead_fraction:
                self._flag("dead_relus", step, f"{fraction:.0%} of the units never activate", name)
        if self._output_spread is not None and self._output_spread < 1e-4:
            self._flag(
                "collapsed_predictions", step, f"outputs vary by {self._output_spread:.1e} (relative) across the batch"
            )

    def _check_loss(self, step: int) -> None:
        losses = np.array(self.losses, dtype=np.float64)
        if not np.isfinite(losses[-self.window :]).all():
            return
        recent = losses[-self.window :]
        first = losses[: max(3, self.window // 3)].mean()
        changes = np.abs(np.diff(recent)) / (np.abs(recent[:-1]) + 1e-12)
        if np.median(changes) > self.oscillation:
            self._flag("loss_oscillating", step, f"the loss changes by {np.median(changes):.0%} per step (median)")
        elif recent[-self.window // 3 :].mean() >= 0.98 * first:
            late = recent[-self.window // 3 :].mean()
            self._flag("loss_not_decreasing", step, f"mean loss {late:.4g} vs {first:.4g} at the start")

    def _check_fit(self, step: int) -> None:
        if len(self.evals) < 3:
            return
        train = np.array([e[1] for e in self.evals])
        val = np.array([e[2] for e in self.evals])
        best = int(np.argmin(val))
        if best < len(val) - 1 and val[-1] > val[best] * 1.05 and train[-1] < train[best]:
            self._flag(
                "overfitting",
                step,
                f"validation loss rose from {val[best]:.4g} (step "
                f"{self.evals[best][0]}) to {val[-1]:.4g} while train loss fell to "
                f"{train[-1]:.4g}",
            )
        initial = self.losses[0] if self.losses else train[0]
        flat = abs(train[-1] - train[-3]) <= 0.02 * abs(train[-3])
        # "Both bad" has no absolute meaning, so the rule is relative: the train loss has stopped
        # moving (within 2% over the last three evaluations), it is still over a quarter of the
        # first loss seen, and validation is no worse than train (so it is not overfitting).
        if flat and train[-1] > 0.25 * initial and abs(val[-1] - train[-1]) <= 0.2 * abs(train[-1]):
            self._flag(
                "underfitting",
                step,
                f"train loss {train[-1]:.4g} and validation loss "
                f"{val[-1]:.4g} have flattened at over a quarter of the first loss "
                f"{initial:.4g}",
            )

    # --- output -----------------------------------------------------------------------------
    def report(self) -> str:
        lines = ["Health report", "============="]
        if self.losses:
            lines.append(
                f"steps watched: {len(self.losses)}; loss first {self.losses[0]:.4g}, last {self.losses[-1]:.4g}"
            )
        if self.grad_norms:
            lines.append(
                f"gradient norm (sampled every {self.interval} steps): median "
                f"{np.median(self.grad_norms):.3g}, max {max(self.grad_norms):.3g}"
            )
        if self.update_ratios:
            worst = max(self.update_ratios, key=self.update_ratios.get)
            lines.append(
                f"largest update/weight ratio: {self.update_ratios[worst]:.2e} ({worst}); around 1e-3 is typical"
            )
        for name, fraction in self.dead.items():
            lines.append(f"ReLU {name}: {fraction:.0%} of units never active")
        if not self.diagnoses:
            lines.append("No problems found: the checklist is clear.")
        else:
            lines.append(f"{len(self.diagnoses)} problem(s):")
            lines += [f"- {'FATAL ' if d.fatal else ''}{d.kind}: {d.message}" for d in self.diagnoses]
        return "\n".join(lines)
