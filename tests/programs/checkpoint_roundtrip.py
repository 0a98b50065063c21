"""Train a classifier, checkpoint it, and resume, the way PyTorch tutorials do, written against
PyTorch.

Run once with ``--stop_at`` and once more with ``--resume``, it must take exactly the steps of
one uninterrupted run; the test suite also runs it as written and with only its imports
switched to numformer, and resumes each framework's checkpoint in the other.

What it exercises: ``utils.data`` (``TensorDataset``, a ``Sampler`` subclass of one's own that
shuffles with NumPy, ``DataLoader`` with ``drop_last``), ``nn.Sequential`` of ``Linear``,
``ReLU``, ``Dropout`` and ``LayerNorm``, ``CrossEntropyLoss`` with label smoothing, SGD with
momentum and weight decay, a chained schedule (``LinearLR`` then ``CosineAnnealingLR`` in
``SequentialLR``), and a checkpoint dict of model, optimizer and scheduler state, epoch and
step written with ``torch.save`` and read with ``torch.load`` (``weights_only=True``, the
default).
"""

import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from torch.utils.data import DataLoader, Sampler, TensorDataset


class NumpyShuffle(Sampler):
    """A new order each epoch from NumPy's generator (seed + epoch)."""

    def __init__(self, n, seed):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng(self.seed + self.epoch).permutation(self.n).tolist())

    def __len__(self):
        return self.n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--stop_at", type=int, default=-1, help="end after this many epochs (a checkpoint is kept)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--ckpt", default="ckpt.pt")
    parser.add_argument("--save_init", default="")
    parser.add_argument("--load_init", default="")
    parser.add_argument("--log", default="log.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 10)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    sampler = NumpyShuffle(len(dataset), seed=5)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, drop_last=True)

    model = nn.Sequential(nn.Linear(10, 32), nn.LayerNorm(32), nn.ReLU(), nn.Dropout(0.0), nn.Linear(32, 3))
    if args.save_init:
        torch.save(model.state_dict(), args.save_init)
    if args.load_init:
        model.load_state_dict(torch.load(args.load_init))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    warmup = LinearLR(optimizer, start_factor=0.2, total_iters=4)
    cosine = CosineAnnealingLR(optimizer, T_max=3 * len(loader), eta_min=1e-3)
    scheduler = SequentialLR(optimizer, [warmup, cosine], milestones=[4])

    start, log = 0, []
    if args.resume:
        checkpoint = torch.load(args.ckpt)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start, log = checkpoint["epoch"] + 1, checkpoint["log"]

    for epoch in range(start, args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            scheduler.step()
            log.append({"epoch": epoch, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]})
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "log": log,
            },
            args.ckpt,
        )
        if epoch + 1 == args.stop_at:
            break
    with open(args.log, "w") as f:
        json.dump(log, f)
    print(f"{len(log)} steps, {os.path.basename(args.ckpt)} written")


if __name__ == "__main__":
    main()
