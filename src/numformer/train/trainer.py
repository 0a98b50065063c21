"""A small, explicit training loop: gradient accumulation, clipping, schedules, validation,
callbacks, JSONL metrics, a progress bar, safe checkpoints, exact resume and Ctrl-C.

A step's gradient and logged loss are those of its whole batch, whatever the split: every
micro-batch (and, under MPI, every rank's shard) is weighted by the items it holds, so a
padded token loss gives the token mean of the full batch, not a mean of micro-batch means
(the fault Hugging Face fixed in transformers#35203).

Data comes from functions of a random generator the trainer owns, ``train_batches(rng)``,
so the batch sequence is part of the saved state: a run resumed from step k continues with
exactly the batches (and dropout masks) an uninterrupted run would have used.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from numformer import distributed
from numformer.autograd import no_grad
from numformer.nn.utils import clip_grad_norm_
from numformer.optim.lr_scheduler import ReduceLROnPlateau
from numformer.serialization.configs import Config
from numformer.serialization.files import write_text
from numformer.train.checkpoint import (
    CheckpointError,
    checkpoint_state,
    list_checkpoints,
    load_checkpoint,
    point,
    remove_stale_saves,
    resolve_checkpoint,
    save_checkpoint,
)


@dataclass
class TrainConfig(Config):
    """Everything that shapes a run; saved in every checkpoint.

    Args:
        max_steps: optimiser steps to train (1000).
        grad_accum_steps: micro-batches per step, their gradients summed (1).
        clip_grad_norm: the largest global gradient norm, or None for no clipping (1.0).
        eval_every: steps between validation evaluations (100).
        eval_batches: validation batches per evaluation (10).
        checkpoint_every: steps between checkpoints (500).
        keep_checkpoints: how many of the newest checkpoints to keep (3).
        early_stopping_patience: evaluations without improvement before stopping (None: never).
        log_every: steps between metric lines (1).
        out_dir: the run folder (metrics, checkpoints, the health report).
        seed: the generator that draws the batches and dropout (0).
        progress: show a progress bar (True).
        stop_on_fatal: stop when the health monitor sees a fatal fault, e.g. a NaN loss (True).

    Raises:
        ValueError: a count below 1, a clip norm that is not finite and positive, a seed out of
            range.
    """

    max_steps: int = 1000
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = 1.0
    eval_every: int = 100
    eval_batches: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    early_stopping_patience: int | None = None  # evaluations without improvement
    log_every: int = 1
    out_dir: str = "runs/train"
    seed: int = 0
    progress: bool = True
    stop_on_fatal: bool = True

    def __post_init__(self):
        super().__post_init__()
        for name in ("max_steps", "grad_accum_steps", "eval_every", "eval_batches", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.clip_grad_norm is not None and not 0 < self.clip_grad_norm < math.inf:
            raise ValueError(f"TrainConfig: clip_grad_norm must be finite and > 0, or None, got {self.clip_grad_norm}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"TrainConfig: keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"TrainConfig: seed must be an integer in [0, 2^63), got {self.seed!r}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"TrainConfig: early_stopping_patience must be >= 1, got {self.early_stopping_patience}")


class Callback:
    """Hooks the trainer calls; override the ones you need."""

    def on_step_end(self, trainer: Trainer, metrics: dict) -> None: ...

    def on_eval_end(self, trainer: Trainer, metrics: dict) -> None: ...


class EarlyStopping(Callback):
    """Stop when validation loss has not improved for ``patience`` evaluations.

    Args:
        patience: evaluations without improvement before the run stops.
        min_delta: the least fall in validation loss that counts as an improvement (0.0).
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.bad_evals = 0

    def on_eval_end(self, trainer, metrics):
        if metrics["val_loss"] < trainer.best_val_loss - self.min_delta:
            self.bad_evals = 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                trainer.request_stop(f"early stopping: no improvement in {self.patience} evaluations")


@dataclass
class FitResult:
    """What ``Trainer.fit`` returns.

    Args:
        status: ``"completed"``, ``"interrupted"``, ``"early_stopped"``, ``"fatal"`` or
            ``"diverged"``.
        step: the last step trained.
        best_val_loss: the lowest validation loss seen (inf when never evaluated).
        reason: why the run stopped, in words.
        history: the metric records of the run.
    """

    status: str  # "completed", "interrupted", "early_stopped", "fatal", "diverged"
    step: int
    best_val_loss: float
    reason: str = ""
    history: list = field(default_factory=list)


class LoaderBatches:
    """A ``DataLoader`` as ``batches(rng)``: epoch after epoch, each epoch's order drawn from
    ``rng`` (the trainer's generator), so the place in the data is part of a checkpoint
    (``state``) and a resumed run sees the batches an uninterrupted one would have seen.
    A loader with ``batch_size=None`` yields one sample per step, as its iteration does.

    Args:
        loader: a ``numformer.utils.data.DataLoader`` over a map-style dataset.
    """

    def __init__(self, loader):
        if not hasattr(loader, "batch_sampler") or not hasattr(loader, "fetch"):
            kind = f"{type(loader).__module__}.{type(loader).__qualname__}"
            raise TypeError(
                f"Trainer: batches must be a function of a generator or a numformer.utils.data.DataLoader, got {kind}"
            )
        self.loader = loader
        self.epoch_seed: int | None = None
        self.position = 0
        self._order: list | None = None

    def _epoch(self, seed: int) -> list:
        """One epoch's batches of indices, in the order ``seed`` draws."""
        sampler = self.loader.sampler
        saved = getattr(sampler, "generator", None)
        if hasattr(sampler, "generator"):
            sampler.generator = np.random.default_rng(seed)
        # the batch sampler's lists of indices, or the sampler's single indices when batching is off
        index_sampler = self.loader.sampler if self.loader.batch_sampler is None else self.loader.batch_sampler
        try:
            return list(index_sampler)
        finally:
            if hasattr(sampler, "generator"):
                sampler.generator = saved

    def _start(self, seed: int) -> None:
        self._order = self._epoch(seed)
        if not self._order:
            raise ValueError("Trainer: the DataLoader yields no batch (empty dataset, or drop_last with too few items)")

    def check_shards(self, ranks: int) -> None:
        """Every batch of an epoch divides among ``ranks`` (each rank trains an equal shard):
        checked when the trainer starts, not at the end of the first epoch.

        Raises:
            ValueError: a batch size, or an epoch's last batch, that does not divide by
            ``ranks``, saying ``drop_last=True`` or the batch sizes that work."""
        loader = self.loader
        if getattr(loader, "_iterable", False) or not hasattr(loader.dataset, "__len__"):
            return  # an iterable dataset: batches of unknown number, checked as they come
        if loader.batch_sampler is None:
            raise ValueError(
                f"Trainer: under MPI each batch is split among the {ranks} ranks, but the DataLoader has "
                f"batch_size=None (one sample a step); give it a batch_size that is a multiple of {ranks}"
            )
        uneven = sorted({len(b) for b in self._epoch(0)} - {0}, reverse=True)
        uneven = [n for n in uneven if n % ranks]
        if not uneven:
            return
        size, items = loader.batch_size, len(loader.dataset)
        if size is None:  # a batch_sampler of the user's
            raise ValueError(
                f"Trainer: under MPI each batch is split among the {ranks} ranks, but the DataLoader's "
                f"batch_sampler yields batches of {uneven[0]} items; yield multiples of {ranks}"
            )
        if size % ranks:
            raise ValueError(
                f"Trainer: under MPI each batch is split among the {ranks} ranks: the DataLoader's "
                f"batch_size {size} must be a multiple of {ranks}"
            )
        fits = [b for b in range(ranks, items + 1, ranks) if items % b % ranks == 0]
        fits = sorted(fits, key=lambda b: (abs(b - size), b))[:3]
        other = (
            f", or a batch_size whose last batch divides too ({', '.join(map(str, sorted(fits)))})"
            if fits
            else f" (no batch_size leaves a last batch of {items} items that divides among {ranks} ranks)"
        )
        raise ValueError(
            f"Trainer: under MPI each batch is split among the {ranks} ranks, but the DataLoader's last batch "
            f"of each epoch holds {items % size} of its {items} items (batch_size {size}); pass "
            f"drop_last=True to the DataLoader{other}"
        )

    def __call__(self, rng):
        if self._order is None and self.epoch_seed is not None:  # resumed mid-epoch
            self._start(self.epoch_seed)
        if self._order is None or self.position >= len(self._order):
            self.epoch_seed, self.position = int(rng.integers(2**63)), 0
            self._start(self.epoch_seed)
        indices = self._order[self.position]
        self.position += 1
        return self.loader.fetch(indices)

    @property
    def state(self) -> dict:
        return {"epoch_seed": self.epoch_seed, "position": self.position}

    def load_state(self, state: dict) -> None:
        self.epoch_seed, self.position, self._order = state["epoch_seed"], state["position"], None


def _batch_size(batch) -> int:
    """Samples in a batch: the first dimension of its first field (tuple, list or dict) or of the
    batch itself; pass ``count=`` to the Trainer for anything else."""
    first = (
        next(iter(batch.values()))
        if isinstance(batch, dict)
        else batch[0]
        if isinstance(batch, (tuple, list))
        else batch
    )
    try:
        return len(first)
    except TypeError:
        raise TypeError(
            f"Trainer: cannot tell how many samples a batch of {type(batch).__name__} holds; pass count=batch -> int"
        ) from None


def _batch_rows(batch) -> int:
    try:
        return _batch_size(batch)
    except TypeError:
        return 1


def _as_batches(batches):
    return batches if batches is None or callable(batches) else LoaderBatches(batches)


class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, batch)``.

    ``loss_fn`` returns either a scalar Tensor, the mean loss over the batch's items, or a pair
    ``(loss_sum, n)``: the loss summed over the ``n`` items that count (a token loss with
    ``reduction="sum"`` and the number of targets that are not ``ignore_index``). A step's
    gradient and logged loss are the mean over every item of its ``grad_accum_steps``
    micro-batches and, under MPI, of every rank's shard: the full batch's, whatever the split.
    A mean loss is weighted by ``count(batch)``; a pair by its own ``n`` (exact with padding).

    ``train_batches(rng) -> batch`` and ``val_batches(rng) -> batch`` draw batches from the
    generator they are given; either may instead be a ``numformer.utils.data.DataLoader``
    (``LoaderBatches``: epochs in an order drawn from that generator). ``count(batch)``
    (an int) says how many samples (or tokens) a batch holds: the progress bar's throughput and
    a mean loss's weight. ``monitor`` is an optional ``HealthMonitor``. Metrics go to
    ``<out_dir>/metrics.jsonl`` (plotted to ``metrics.png`` at the end), checkpoints to
    ``<out_dir>/checkpoints``, the monitor's report to ``health_report.txt``. ``run_id`` names
    the run: saved in each checkpoint, and a checkpoint of another run is refused on resume.

    Raises:
        ValueError: under MPI, a DataLoader whose batches do not divide among the ranks.

    Args:
        model: the ``nn.Module`` to train.
        optimizer: a ``numformer.optim`` optimiser over the model's parameters.
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``(loss_sum, n)``, as above.
        train_batches: ``train_batches(rng) -> batch`` or a ``DataLoader``.
        val_batches: the same for validation (None: no evaluation).
        scheduler: a learning-rate scheduler stepped once per optimiser step (optional).
        config: a ``TrainConfig`` (default: its defaults).
        monitor: a ``HealthMonitor`` (optional).
        callbacks: objects with ``on_step``/``on_eval`` hooks (``EarlyStopping``).
        count: ``count(batch) -> int``, the items a batch holds (default: its first dimension).
        unit: the items' name in the progress bar (``"samples"``, ``"tokens"``).
        run_id: the run's id, saved in each checkpoint and checked on resume.
    """

    def __init__(
        self,
        model,
        optimizer,
        loss_fn,
        train_batches,
        val_batches=None,
        scheduler=None,
        config: TrainConfig | None = None,
        monitor=None,
        callbacks=(),
        count=None,
        unit: str = "samples",
        run_id: str | None = None,
    ):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.run_id = run_id
        self.train_batches, self.val_batches = _as_batches(train_batches), val_batches
        self.scheduler = scheduler
        self.config = config or TrainConfig()
        self.monitor = monitor
        self.callbacks = list(callbacks)
        if self.config.early_stopping_patience:
            self.callbacks.append(EarlyStopping(self.config.early_stopping_patience))
        self.count = count or _batch_size
        self.unit = unit
        self.out_dir = Path(self.config.out_dir)
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.rng = np.random.default_rng(self.config.seed)
        self.step = 0
        self.best_val_loss = math.inf
        self._stop_reason = None
        self._stop_status = None
        self._saved: tuple[int, Path] | None = None  # (step, folder) of the newest checkpoint on disk
        self._bar = None
        self.hung_up = False  # True after a SIGHUP: the terminal is gone, so nothing more is printed
        # Under mpiexec: every rank trains its shard of each global batch (numformer.distributed)
        self.world = distributed.world()
        if self.world.size > 1 and isinstance(self.train_batches, LoaderBatches):
            self.train_batches.check_shards(self.world.size)
        distributed.broadcast_parameters(model, self.world)
        # gradients averaged over the ranks while the last micro-batch's backward runs
        self.reducer = distributed.GradientReducer(model, self.world) if self.world.size > 1 else None
        self.bytes_reduced = 0  # per step, by this rank

    # --- control ----------------------------------------------------------------------------
    def request_stop(self, reason: str, status: str = "early_stopped") -> None:
        """Finish the current step, save a checkpoint and return from ``fit``."""
        self._stop_reason, self._stop_status = reason, status

    def _on_sigint(self, signum, frame):
        if self._stop_status == "interrupted":  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if name == "SIGHUP":  # the terminal is gone: nothing more is drawn or printed on it
            self.hung_up = True
            if self._bar is not None:
                self._bar.disable = True
        self.request_stop(f"interrupted by {name}", "interrupted")

    # --- state ------------------------------------------------------------------------------
    def _extra_state(self) -> dict:
        return {
            "data_rng": self.rng.bit_generator.state,
            "best_val_loss": self.best_val_loss,
            "callbacks": [getattr(c, "bad_evals", None) for c in self.callbacks],
            "loader": self.train_batches.state if isinstance(self.train_batches, LoaderBatches) else None,
            "run_id": self.run_id,
        }

    @property
    def last_checkpoint(self) -> Path | None:
        """The folder of the newest checkpoint this trainer saved or resumed from (None: none yet)."""
        return None if self._saved is None else self._saved[1]

    def save(self, tag: str = "latest"):
        """Checkpoint the current step and point ``tag`` at it. A step already on disk (saved as
        the best, then as the latest; or a finished run resumed) is pointed at, not copied."""
        on_disk = self._saved is not None and self._saved[0] == self.step and self._saved[1].is_dir()
        if self.world.broadcast_json(bool(on_disk)):  # rank 0's file system decides, for every rank
            if self.world.is_main:
                point(self.checkpoint_dir, self._saved[1], tag, self.step)
            self.world.barrier()
            return self._saved[1]
        folder = None
        if self.world.is_main:  # rank 0 alone writes; the others learn where
            folder = save_checkpoint(
                self.checkpoint_dir,
                self.model,
                self.optimizer,
                self.scheduler,
                step=self.step,
                config=asdict(self.config),
                extra=self._extra_state(),
                tag=tag,
                keep=self.config.keep_checkpoints,
            )
        folder = Path(self.world.broadcast_json(None if folder is None else str(folder)))
        self._saved = (self.step, folder)
        return folder

    def resume(self, checkpoint=None) -> bool:
        """Load ``checkpoint`` (a step folder) or the latest one under ``out_dir``; True if one
        was loaded, False when ``out_dir`` holds no checkpoint at all (a fresh run).

        Raises:
            CheckpointError: a damaged, empty or foreign ``latest.json``, step folders without a
            pointer, or a corrupted checkpoint: never a silent fresh start over earlier work.
        """

        def find() -> str | None:
            if checkpoint is None:
                if not (self.checkpoint_dir / "latest.json").exists() and not list_checkpoints(self.checkpoint_dir):
                    return None
                found = resolve_checkpoint(self.checkpoint_dir)
            else:
                found = resolve_checkpoint(checkpoint)
            self._check_own(found)
            return str(found)

        # under MPI, rank 0's disk decides and rank 0 reads: the run folder may be on its machine only
        found = self.world.on_main(find, errors=(CheckpointError,))
        if found is None:
            return False
        folder = Path(found)
        state = load_checkpoint(folder, self.model, self.optimizer, self.scheduler, world=self.world)
        self.step = state["step"]
        extra = state["extra"]
        self.rng.bit_generator.state = extra["data_rng"]
        self.best_val_loss = extra["best_val_loss"]
        if isinstance(self.train_batches, LoaderBatches) and extra.get("loader"):
            self.train_batches.load_state(extra["loader"])
        for c, bad in zip(self.callbacks, extra.get("callbacks", [])):
            if bad is not None:
                c.bad_evals = bad
        if folder.parent.resolve() == self.checkpoint_dir.resolve():
            self._saved = (self.step, folder)
        self._truncate_metrics()
        return True

    def _check_own(self, folder: Path) -> None:
        """``folder`` is a checkpoint of this run: its run id is ``run_id`` (a checkpoint saved
        before runs had ids must lie in this run's own checkpoint folder).

        Raises:
            CheckpointError: a checkpoint of another run."""
        if self.run_id is None:
            return
        theirs = (checkpoint_state(folder).get("extra") or {}).get("run_id")
        if theirs == self.run_id:
            return
        if theirs is None:
            if folder.resolve().parent == self.checkpoint_dir.resolve():
                return
            raise CheckpointError(
                f"checkpoint {folder} records no run id and is not in this run's {self.checkpoint_dir}: "
                "a run resumes only from its own checkpoints"
            )
        raise CheckpointError(
            f"checkpoint {folder} belongs to another run (run id {theirs}; this run's is {self.run_id}): "
            "a run resumes only from its own checkpoints"
        )

    def _truncate_metrics(self) -> None:
        """Drop metric lines past the resumed step, so the log reads as one run."""
        if not self.world.is_main or not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line torn by a crash mid-write: dropped
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= self.step:
                kept.append(line)
        write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    # --- the loop ---------------------------------------------------------------------------
    def evaluate(self) -> float:
        """Mean loss over ``eval_batches`` validation batches (the same batches every time)."""
        if self.val_batches is None:
            return math.nan
        self.model.eval()
        with no_grad():
            if callable(self.val_batches):
                rng = np.random.default_rng(self.config.seed + 1_000_003)
                losses = [self._global_loss(self.val_batches(rng))[0] for _ in range(self.config.eval_batches)]
                mean = float(np.mean(losses))
            else:  # a DataLoader: one pass over it, each batch weighted by its size (eval_batches unused)
                total = count = 0.0
                for batch in self.val_batches:
                    loss, n = self._global_loss(batch)
                    total += loss * n
                    count += n
                mean = total / count if count else math.nan
        self.model.train()
        return mean

    def _loss_sum(self, batch):
        """``(loss summed over the batch's items, the number of items)`` of ``loss_fn``: its
        pair as it is, or its mean times ``count(batch)``."""
        out = self.loss_fn(self.model, batch)
        if isinstance(out, (tuple, list)):
            if len(out) != 2:
                raise TypeError(
                    f"Trainer: loss_fn must return a scalar Tensor (a mean) or a pair (loss_sum, n), "
                    f"got a {type(out).__name__} of {len(out)}"
                )
            total, n = out
            n = float(n.item() if hasattr(n, "item") else n)
            if not n >= 0:
                raise ValueError(f"Trainer: loss_fn's item count must be >= 0, got {n}")
            return total, n
        n = float(self.count(batch))
        return out * n, n

    def _train_step(self) -> dict:
        cfg = self.config
        self.model.train()
        self.optimizer.zero_grad()
        total, count, items = 0.0, 0.0, 0
        for micro in range(cfg.grad_accum_steps):
            batch = self.train_batches(self.rng)  # the global batch; this rank trains on its shard
            if self.reducer is not None and micro == cfg.grad_accum_steps - 1:
                self.reducer.arm()
            loss_sum, n = self._loss_sum(self._local(batch))
            if n:  # a micro-batch with no item (every target ignored) adds nothing
                loss_sum.backward()  # gradients of sums: divided by the step's item count below
                total += float(loss_sum.item())
                count += n
            items += self.count(batch)
        if self.world.size > 1:  # sum the gradients, losses and counts of the ranks: one global step
            self.bytes_reduced = self.reducer.finish()  # first: every rank has started the same buckets
            total, count = (float(v) for v in self.world.allreduce_sum_(np.array([total, count])))
        if not count:
            raise ValueError(
                f"Trainer: step {self.step + 1} has no item to learn from in its {cfg.grad_accum_steps} "
                "micro-batch(es): every target is ignored (padding?)"
            )
        # the reducer averages over the ranks: times the ranks, over the items, is the
        # gradient of the step's mean loss
        scale = self.world.size / count
        params = [p for p in self.model.parameters() if p.grad is not None]
        for p in params:
            p.grad.array *= p.grad.array.dtype.type(scale)
        total /= count
        clip = cfg.clip_grad_norm if cfg.clip_grad_norm is not None else math.inf
        grad_norm = float(clip_grad_norm_(params, clip).item()) if params else 0.0
        if self.monitor is not None:
            self.monitor.after_backward(self.step + 1, total)
        self.optimizer.step()
        if self.monitor is not None:
            self.monitor.after_step(self.step + 1)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        self.step += 1
        return {"step": self.step, "loss": total, "lr": lr, "grad_norm": grad_norm, "items": items}

    def _local(self, batch):
        return distributed.shard(batch, self.world) if self.world.size > 1 else batch

    def _global_loss(self, batch) -> tuple[float, float]:
        """(mean loss, items) of a whole evaluation batch: under MPI each rank takes its part
        (parts may differ by a row) and the losses are weighted by their parts' item counts."""
        if self.world.size == 1:
            loss_sum, n = self._loss_sum(batch)
            return (float(loss_sum.item()) / n if n else math.nan), n
        part = distributed.shard(batch, self.world, even=False)
        loss, n = 0.0, 0.0
        if _batch_rows(part):
            loss_sum, n = self._loss_sum(part)
            loss = float(loss_sum.item()) if n else 0.0
        sums = self.world.allreduce_sum_(np.array([loss, n], dtype=np.float64))
        return (float(sums[0] / sums[1]) if sums[1] else math.nan), float(sums[1])

    def fit(self, resume: bool = False, checkpoint=None) -> FitResult:
        """Train until ``max_steps``, early stopping, a fatal diagnosis, a non-finite loss, or
        Ctrl-C / SIGTERM / SIGHUP (each finishes the step and saves; status "interrupted"; after
        SIGHUP, a closed terminal, nothing more is printed).

        ``resume`` continues from the latest checkpoint, or from ``checkpoint`` (a step folder).
        A step whose loss or gradient norm is not finite stops the run with status "diverged",
        saves nothing, and loads the last checkpoint back into the model (the last finite one).
        """
        cfg = self.config
        main = self.world.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_saves(self.checkpoint_dir)
        self.world.barrier()
        if resume or checkpoint is not None:
            self.resume(checkpoint)
        elif main and self.metrics_path.exists():
            self.metrics_path.unlink()
        self._stop_reason = self._stop_status = None
        history = []
        in_main = threading.current_thread() is threading.main_thread()
        stops = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
        previous = {sig: signal.signal(sig, self._on_sigint) for sig in stops} if in_main else {}
        bar = self._bar = _progress(cfg, self.step) if main else None
        try:
            self._loop(cfg, main, bar, history)
        except Exception as err:
            if self.world.size > 1:  # the other ranks wait in a collective for this one: end them all
                import sys

                print(
                    f"error: rank {self.world.rank} of {self.world.size}: {type(err).__name__}: {err}", file=sys.stderr
                )
                self.world.abort(1)
            raise
        finally:
            if bar is not None:
                bar.close()
            self._bar = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if main:
            self._write_summary()
        status = self._stop_status or "completed"
        return FitResult(status, self.step, self.best_val_loss, self._stop_reason or "", history)

    def _loop(self, cfg, main: bool, bar, history: list) -> None:
        """Steps until done: train, evaluate, log, checkpoint (``fit``'s loop)."""
        with open(self.metrics_path if main else os.devnull, "a") as log:
            while self.step < cfg.max_steps and self._stop_status is None:
                start = time.perf_counter()
                metrics = self._train_step()
                metrics["throughput"] = metrics.pop("items") / (time.perf_counter() - start)
                if not (math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])):
                    self._diverged(metrics)
                    break
                if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                    self._evaluate_into(metrics)
                if self.monitor is not None and self.monitor.fatal and cfg.stop_on_fatal:
                    self.request_stop(self.monitor.fatal_message(), "fatal")
                for c in self.callbacks:
                    c.on_step_end(self, metrics)
                if self.world.size > 1:
                    self._agree_on_stop()
                history.append(metrics)
                if self.step % cfg.log_every == 0 or "val_loss" in metrics:
                    log.write(json.dumps(metrics) + "\n")
                    log.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{metrics['loss']:.4f}",
                        lr=f"{metrics['lr']:.2e}",
                        **{f"{self.unit}/s": f"{metrics['throughput']:.0f}"},
                    )
                if self.step % cfg.checkpoint_every == 0 or self._stop_status is not None:
                    self.save()
        if self.step >= cfg.max_steps and self._stop_status is None:
            self.save()

    def _agree_on_stop(self) -> None:
        """Every rank stops at the same step with the same status and reason: those of the
        lowest rank that asked to stop (a signal reaches one rank; a rank's callback decides)."""
        first = self.world.min_int(self.world.rank if self._stop_status is not None else self.world.size)
        if first < self.world.size:
            status, reason = self.world.broadcast_json([self._stop_status, self._stop_reason], root=first)
            self._stop_status, self._stop_reason = status, reason

    def _diverged(self, metrics: dict) -> None:
        """A non-finite step: stop, keep nothing of it, and restore the last checkpoint."""
        what = f"loss {metrics['loss']}, gradient norm {metrics['grad_norm']}"
        if self._saved is not None:
            load_checkpoint(self._saved[1], self.model, self.optimizer, self.scheduler, world=self.world)
            kept = f"the model is the last finite checkpoint, step {self._saved[0]} ({self._saved[1]})"
            self.step = self._saved[0]
        else:
            kept = "no checkpoint was saved before it, so no model is kept"
        self.request_stop(f"training diverged at step {metrics['step']} ({what}); {kept}", "diverged")

    def _write_summary(self) -> None:
        """``metrics.png`` (loss, lr, gradient norm) and, with a monitor, ``health_report.txt``."""
        from numformer.viz.plots import plot_metrics

        if self.metrics_path.exists() and self.metrics_path.stat().st_size:
            plot_metrics(self.metrics_path, self.out_dir / "metrics.png")
        if self.monitor is not None:
            report = self.monitor.report()
            write_text(self.out_dir / "health_report.txt", report + "\n")
            if self.config.progress and not self.hung_up:
                print(report)

    def _evaluate_into(self, metrics: dict) -> None:
        val = self.evaluate()
        if math.isnan(val):
            return
        metrics["val_loss"] = val
        if self.monitor is not None:
            self.monitor.record_validation(self.step, val)
        for c in self.callbacks:
            c.on_eval_end(self, metrics)
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(val)
        if val < self.best_val_loss:
            self.best_val_loss = val
            self.save(tag="best")


def _progress(cfg: TrainConfig, start: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.max_steps, initial=start, desc="train", dynamic_ncols=True, mininterval=0.5)
