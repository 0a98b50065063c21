"""Data-parallel training on this machine: 1 rank x 2 threads against 2 ranks x 1 thread, the
bytes all-reduced per step, and a scaling estimate for N machines.

Both runs train the same GPT (4 layers, d_model 128, T 128, global batch 16, AdamW) for the same
steps through ``numformer.train.Trainer`` (``mpiexec -n 2`` for the second), and report tokens
per second of the timed steps (after warm-up). The all-reduce itself is timed on 2 ranks for the
gradient's size. The estimate: a ring all-reduce sends 2 (N - 1) / N times the gradient bytes
per step; against a step's compute time (measured here), the fraction of time spent
communicating (no overlap) on a network of a given bandwidth.

Run: ``.venv/bin/python bench/mpi_scaling.py`` (needs the ``distributed`` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"
STEPS, WARMUP = 30, 5

JOB = (
    textwrap.dedent(
        """
    import json, sys, time
    import numpy as np
    import numformer as nf
    from numformer import distributed
    from numformer.models import GPT, GPTConfig
    from numformer.train import Trainer, TrainConfig
    world = distributed.world()
    nf.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=128, n_layer=4, n_head=4, d_model=128))
    opt = model.configure_optimizers(0.1, 1e-3, betas=(0.9, 0.99))
    data = np.random.default_rng(0).integers(0, 256, 200_000)
    def batches(rng):
        i = rng.integers(0, len(data) - 129, 16)
        x = np.stack([data[j : j + 129] for j in i])
        return x[:, :-1], x[:, 1:]
    def loss_fn(m, b):
        return m(b[0], b[1])[1]
    times = []
    class Clock:
        def on_step_end(self, trainer, metrics):
            times.append(time.perf_counter())
        def on_eval_end(self, trainer, metrics):
            pass
    cfg = TrainConfig(max_steps=STEPS, eval_every=10_000, checkpoint_every=10_000, out_dir=sys.argv[1], progress=False)
    trainer = Trainer(model, opt, loss_fn, batches, config=cfg, callbacks=[Clock()], count=lambda b: b[0].size)
    trainer.fit()
    # the all-reduce alone, for this model's gradient size
    grad = np.ones(sum(p.array.size for p in model.parameters()), np.float32)
    world.barrier()
    t = time.perf_counter()
    for _ in range(10):
        world.allreduce_sum_(grad)
    reduce_s = (time.perf_counter() - t) / 10
    if world.is_main:
        steps = len(times) - WARMUP
        seconds = times[-1] - times[WARMUP - 1]
        print(json.dumps({"tokens_per_s": 16 * 128 * steps / seconds, "step_s": seconds / steps,
                          "params": model.num_parameters(), "bytes_reduced": trainer.bytes_reduced,
                          "allreduce_s": reduce_s if world.size > 1 else 0.0}))
    """
    )
    .replace("STEPS", str(STEPS))
    .replace("WARMUP", str(WARMUP))
)


def run(ranks: int, threads: int, out: Path) -> dict:
    script = out / "job.py"
    script.write_text(JOB)
    env = {**os.environ, "NUMFORMER_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(script), str(out / f"run{ranks}")]
    if ranks > 1:
        cmd = [str(MPIEXEC), "-n", str(ranks), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, 2, Path(tmp))
        two = run(2, 1, Path(tmp))
    grad_bytes = 4 * one["params"]
    print(f"GPT {one['params']:,} parameters; global batch 16 x 128 tokens; {STEPS - WARMUP} timed steps")
    print(f"1 rank x 2 threads: {one['tokens_per_s']:,.0f} tokens/s ({one['step_s'] * 1e3:.0f} ms/step)")
    print(
        f"2 ranks x 1 thread: {two['tokens_per_s']:,.0f} tokens/s ({two['step_s'] * 1e3:.0f} ms/step); "
        f"ratio {two['tokens_per_s'] / one['tokens_per_s']:.2f}"
    )
    print(
        f"all-reduced per step: {two['bytes_reduced'] / 2**20:.2f} MiB per rank "
        f"(the gradient, float32); one all-reduce on 2 local ranks: {two['allreduce_s'] * 1e3:.2f} ms"
    )
    compute = one["step_s"]  # one machine's step time for a global batch of 16 x 128 tokens
    rows = []
    for gbit in (1, 10, 100):
        bandwidth = gbit / 8 * 1e9
        for n in (2, 4, 8, 16):
            comm = 2 * (n - 1) / n * grad_bytes / bandwidth
            rows.append(
                {"gbit_s": gbit, "machines": n, "comm_ms": comm * 1e3, "comm_fraction": comm / (comm + compute)}
            )
    print("estimate, each machine computing the step above (2048 tokens) with no overlap:")
    for r in rows:
        print(
            f"  {r['gbit_s']:>3} Gbit/s, {r['machines']:>2} machines: all-reduce {r['comm_ms']:7.2f} ms/step, "
            f"{100 * r['comm_fraction']:5.1f}% of the step"
        )
    # comm / compute = (8 bytes... ) is independent of the model size: 2 (N-1)/N * 4P / BW against 6 P t / R
    rate = 6 * one["params"] * 16 * 128 / compute
    print(
        f"measured rate {rate / 1e9:.0f} GFLOP/s (6 x params x tokens / step time); communication stays under 10% "
        "of a step when tokens per machine per step exceed 8 x 9 x rate / (6 x bandwidth):"
    )
    for gbit in (1, 10, 100):
        tokens = 8 * 9 * rate / (6 * gbit / 8 * 1e9)
        print(f"  {gbit:>3} Gbit/s: {tokens:,.0f} tokens per machine per step")
    (HERE / "results" / "mpi_scaling.json").write_text(
        json.dumps({"one_rank": one, "two_ranks": two, "estimate": rows}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
