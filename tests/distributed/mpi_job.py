"""A small training job the MPI tests launch with ``mpiexec -n N`` (or plainly, as one process).

    python mpi_job.py OUT STEPS [--resume] [--raise-at STEP] [--kill-at STEP] [--padded]
                      [--accum N] [--loader ROWS,BATCH]

Trains an MLP regressor with AdamW, gradient clipping and a warm-up/cosine schedule on a global
batch of 16 rows drawn from the trainer's generator; rank 0 writes ``OUT/weights.safetensors``.
``--raise-at`` makes rank 1 raise in its loss at that step; ``--kill-at`` makes rank 1 kill
itself (SIGKILL) there. ``--padded`` ignores most rows of the batch's first half (rank 0's
shard on 2 ranks): the loss is a (sum, count) pair over the rows kept. ``--accum`` sets
``grad_accum_steps``; ``--loader`` trains from a shuffled DataLoader of ROWS rows instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import numpy as np

import numformer as nf
from numformer import distributed, nn, optim
from numformer.serialization.safetensors import save_arrays
from numformer.train import TrainConfig, Trainer

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("steps", type=int)
parser.add_argument("--resume", action="store_true")
parser.add_argument("--raise-at", type=int)
parser.add_argument("--kill-at", type=int)
parser.add_argument("--padded", action="store_true")
parser.add_argument("--accum", type=int, default=1)
parser.add_argument("--loader")
args = parser.parse_args()
world = distributed.world()

nf.manual_seed(0 if world.is_main else 123)  # different seeds: the broadcast must align the ranks


class Net(nn.Module):
    """An MLP, and a layer no loss reaches: its gradient stays None on every rank, so AdamW
    leaves it alone, as in one process."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 1))
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.net(x)


model = Net()
opt = optim.AdamW(model.parameters(), lr=3e-2, weight_decay=0.01)
sched = optim.lr_scheduler.WarmupCosineLR(opt, 3, 40, 1e-3)
W = np.random.default_rng(5).standard_normal((6, 1)).astype(np.float32)


def batches(rng):
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = np.tanh(x @ W) + 0.1 * x[:, :1] ** 2
    if not args.padded:
        return x, y
    kept = np.concatenate([rng.random(8) < 0.25, np.ones(8, dtype=bool)]).astype(np.float32)[:, None]
    return x, y, kept


state = {"step": 0}


def loss_fn(m, batch):
    state["step"] += 1
    if world.rank == 1 and m.training:
        if args.raise_at == state["step"]:
            raise RuntimeError("rank 1 fails on purpose")
        if args.kill_at == state["step"]:
            os.kill(os.getpid(), signal.SIGKILL)
    if args.padded:
        x, y, kept = batch
        return ((m(nf.tensor(x)) - nf.tensor(y)) ** 2 * nf.tensor(kept)).sum(), float(kept.sum())
    x, y = batch
    return nf.nn.functional.mse_loss(m(nf.tensor(x)), nf.tensor(y))


config = TrainConfig(
    max_steps=args.steps,
    eval_every=5,
    eval_batches=2,
    checkpoint_every=5,
    clip_grad_norm=0.5,
    out_dir=args.out,
    progress=False,
    seed=7,
    grad_accum_steps=args.accum,
)
train_batches = batches
if args.loader:
    from numformer.utils.data import DataLoader, TensorDataset

    rows, size = map(int, args.loader.split(","))
    x = np.random.default_rng(1).standard_normal((rows, 6)).astype(np.float32)
    train_batches = DataLoader(TensorDataset(x, np.tanh(x @ W)), batch_size=size, shuffle=True)
try:
    trainer = Trainer(model, opt, loss_fn, train_batches, batches, scheduler=sched, config=config)
except ValueError as err:  # the same check fails on every rank
    print(f"error: rank {world.rank}: {err}", file=sys.stderr)
    sys.exit(2)
if world.is_main and not args.resume:  # after the Trainer broadcast rank 0's weights
    os.makedirs(args.out, exist_ok=True)
    save_arrays(
        {"unused.weight": model.unused.weight.array.copy()}, os.path.join(args.out, "unused_initial.safetensors")
    )
try:
    result = trainer.fit(resume=args.resume)
except Exception as err:  # noqa: BLE001 - end every rank, as the CLI does
    print(f"error: rank {world.rank}: {err}", file=sys.stderr)
    world.abort(3)
    raise
if world.is_main:
    save_arrays(model.state_dict(), os.path.join(args.out, "weights.safetensors"))
    print(f"{result.status} {result.step} bytes_reduced={trainer.bytes_reduced}")
