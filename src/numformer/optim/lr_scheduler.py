"""Learning-rate schedules with PyTorch's interface: construct (sets the step-0 rate), call
``step()`` after each optimiser step, read ``get_last_lr()``, save with ``state_dict()``.

Each schedule is a closed form ``lr(step) = base_lr * factor(step)`` (``factor`` below), so a
schedule restored from its state dict continues exactly where it stopped.
"""

from __future__ import annotations

import math

from numformer.optim.optimizer import Optimizer


class LRScheduler:
    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: optimizer must be a numformer Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def step(self) -> None:
        self.last_epoch += 1
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step); one function, or one per parameter group."""

    def __init__(self, optimizer: Optimizer, lr_lambda, last_epoch: int = -1):
        n = len(optimizer.param_groups)
        lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(lambdas) != n:
            raise ValueError(f"LambdaLR: expected {n} lr_lambdas (one per group), got {len(lambdas)}")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


class NoamLR(LRScheduler):
    """The paper's warm-up schedule: lr = base_lr * d_model^-0.5 * min(s^-0.5, s * warmup^-1.5)
    with s = step + 1 (set the optimiser's lr to 1.0 for the paper's exact values)."""

    def __init__(self, optimizer: Optimizer, d_model: int, warmup_steps: int = 4000, last_epoch: int = -1):
        if warmup_steps <= 0 or d_model <= 0:
            raise ValueError(f"NoamLR: d_model and warmup_steps must be positive, got {d_model}, {warmup_steps}")
        self.d_model, self.warmup_steps = d_model, warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        s = step + 1
        return self.d_model**-0.5 * min(s**-0.5, s * self.warmup_steps**-1.5)


class WarmupCosineLR(LRScheduler):
    """Linear warm-up over ``warmup_steps`` (lr rises to base_lr), then cosine decay to
    ``min_lr`` at ``total_steps``; ``min_lr`` after that."""

    def __init__(
        self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0, last_epoch: int = -1
    ):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"WarmupCosineLR: need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
            )
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        s = self.last_epoch
        if s < self.warmup_steps:
            return [base * (s + 1) / self.warmup_steps for base in self.base_lrs]
        progress = min(1.0, (s - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return [self.min_lr + (base - self.min_lr) * cosine for base in self.base_lrs]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (step // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if step_size <= 0:
            raise ValueError(f"StepLR: step_size must be positive, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


class OneCycleLR(LRScheduler):
    """PyTorch's one-cycle policy (cosine annealing, two phases): from max_lr / div_factor up
    to max_lr over ``pct_start`` of the steps, then down to max_lr / (div_factor *
    final_div_factor). Momentum cycling is not done (numformer's optimisers keep betas fixed)."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        last_epoch: int = -1,
    ):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"OneCycleLR: total_steps must be a positive int, got {total_steps!r}")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be in [0, 1], got {pct_start}")
        if not (div_factor > 0 and final_div_factor > 0):
            raise ValueError(
                f"OneCycleLR: div_factor and final_div_factor must be > 0, got {div_factor} and {final_div_factor}"
            )
        n = len(optimizer.param_groups)
        self.max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * n
        self.total_steps, self.pct_start = total_steps, pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        for g, m in zip(optimizer.param_groups, self.max_lrs):
            g["initial_lr"] = m / div_factor
            g["max_lr"], g["min_lr"] = m, g["initial_lr"] / final_div_factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        s = self.last_epoch
        if s > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {s} times, more than total_steps {self.total_steps}")
        end_up = float(self.pct_start * self.total_steps) - 1
        end_down = float(self.total_steps - 1)
        out = []
        # Phase lengths of 0 (pct_start * total_steps <= 1, or an up phase that reaches the last
        # step) have no interior: a zero-length warm-up starts at max_lr, a zero-length
        # annealing ends there. (PyTorch divides by zero for them.)
        for g in self.optimizer.param_groups:
            if s <= end_up and end_up > 0:
                start, end, pct = g["initial_lr"], g["max_lr"], s / end_up
            else:
                up = max(end_up, 0.0)
                start, end = g["max_lr"], g["min_lr"]
                pct = (s - up) / (end_down - up) if end_down > up else 1.0
            out.append(end + (start - end) / 2.0 * (math.cos(math.pi * min(max(pct, 0.0), 1.0)) + 1))
        return out


class ReduceLROnPlateau:
    """Multiply the lr by ``factor`` when ``step(metric)`` has not improved for ``patience``
    calls (PyTorch's rule: relative or absolute ``threshold``, ``cooldown``, ``min_lr``)."""

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ):
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor}")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: mode must be 'min'/'max' and threshold_mode "
                f"'rel'/'abs', got {mode!r}, {threshold_mode!r}"
            )
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.min_lr, self.eps = cooldown, min_lr, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def _better(self, a: float) -> bool:
        t = self.threshold
        if self.mode == "min":
            return a < (self.best * (1 - t) if self.threshold_mode == "rel" else self.best - t)
        return a > (self.best * (1 + t) if self.threshold_mode == "rel" else self.best + t)

    def step(self, metric: float) -> None:
        metric = float(metric)
        self.last_epoch += 1
        if self._better(metric):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g in self.optimizer.param_groups:
                new = max(g["lr"] * self.factor, self.min_lr)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
