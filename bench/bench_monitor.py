"""Overhead of the health monitor: training-step time with and without it (same model, data
and thread count), as a ratio of medians. The monitor records every ``interval`` steps.

Run: ``.venv/bin/python bench/bench_monitor.py``.
"""

from __future__ import annotations

# isort: off
from common import THREADS  # noqa: F401 - first: pins BLAS threads before NumPy loads

# isort: on
import statistics
import time

import numpy as np

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F
from numformer.train import HealthMonitor


def make():
    nf.manual_seed(0)
    layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.1, batch_first=True, norm_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2), nn.Linear(128, 64))
    return model, optim.AdamW(model.parameters(), lr=1e-3)


def steps(model, opt, monitor, n, rng):
    times = []
    for step in range(1, n + 1):
        x = nf.Tensor(rng.standard_normal((16, 64, 128)).astype(np.float32))
        y = rng.integers(0, 64, (16 * 64,))
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, 64), y)
        loss.backward()
        if monitor:
            monitor.after_backward(step, loss.item())
        opt.step()
        if monitor:
            monitor.after_step(step)
        times.append(time.perf_counter() - t0)
    return times


def main():
    rng = np.random.default_rng(0)
    plain_model, plain_opt = make()
    watched_model, watched_opt = make()
    for interval in (None, 10, 1):  # None: both unmonitored, the noise floor of this comparison
        monitor = HealthMonitor(watched_model, interval=interval) if interval else None
        steps(plain_model, plain_opt, None, 3, rng)
        steps(watched_model, watched_opt, monitor, 3, rng)
        plain, watched = [], []
        for _ in range(4):  # alternate blocks so drift hits both
            plain += steps(plain_model, plain_opt, None, 10, rng)
            watched += steps(watched_model, watched_opt, monitor, 10, rng)
        if monitor:
            monitor.close()
        ratio = statistics.median(watched) / statistics.median(plain)
        mean_ratio = statistics.mean(watched) / statistics.mean(plain)
        label = f"interval {interval:>2}" if interval else "no monitor (A/A)"
        print(
            f"{label:>16}: step time with monitor / without = {ratio:.3f} (median), "
            f"{mean_ratio:.3f} (mean) over {len(plain)} steps each, encoder 2x d128 T64 B16"
        )


if __name__ == "__main__":
    main()
