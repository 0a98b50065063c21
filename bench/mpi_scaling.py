"""Data-parallel training on this machine: 1 rank x 2 threads against 2 ranks x 1 thread, the
bytes all-reduced per step, and a scaling estimate for N machines.

Both runs train the same GPT (4 layers, d_model 128, T 128, global batch 16, AdamW) for the same
steps through ``numformer.train.Trainer`` (``mpiexec -n 2`` for the second), and report tokens
per second of the timed steps (after warm-up). The all-reduce itself is timed on 2 ranks for the
gradient's size.

The estimate (``step_comm_seconds``; ``bench/multi_host.py`` checks it against runs over real
TCP links between network namespaces, ``bench/results/multi_host.json``): per gradient bucket,
one all-reduce that reduce-scatters then all-gathers, so each machine sends and receives
2 (N - 1) / N times the bucket's bytes, at the link's payload rate (TCP over Ethernet carries
1448 payload bytes per 1538 on the wire: 94% of the line rate), plus ceil(log2 N) round trips
of latency; and the Trainer's three small all-reduces per step (which gradients exist, the
loss, the stop decision), ceil(log2 N) half round trips each. Against a step's compute time
(measured here), the fraction of time spent communicating (no overlap) on a network of a given
bandwidth, with a round trip of ``CLUSTER_ROUND_TRIP_S``.

Run: ``.venv/bin/python bench/mpi_scaling.py`` (needs the ``distributed`` extra);
``--estimate-only`` recomputes the estimate from the measurements in the results file.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"
STEPS, WARMUP = 30, 5

# --- the communication model ----------------------------------------------------------------
PAYLOAD_PER_FRAME = 1448  # TCP payload of a 1500-byte MTU frame (20 bytes of IP, 32 of TCP with timestamps)
WIRE_BYTES_PER_FRAME = 1538  # on an Ethernet wire: + 14 header, 4 checksum, 8 preamble, 12 gap
TBF_BYTES_PER_FRAME = 1514  # what a tc token bucket counts on a veth link: + the 14-byte header only
SMALL_COLLECTIVES_PER_STEP = 2  # the Trainer's: the mean loss, the stop decision
CLUSTER_ROUND_TRIP_S = 50e-6  # assumed for the estimate: TCP through one datacenter switch


def link_rate(gbit_s, frame_bytes: int = WIRE_BYTES_PER_FRAME, ceiling: float = math.inf) -> float:
    """Payload bytes per second one machine moves each way over its link of ``gbit_s`` Gbit/s
    (None: no limit but the machine's): the line rate's payload share, or the machine's own
    ``ceiling`` (its TCP stack and memory, measured) if lower."""
    line = math.inf if gbit_s is None else gbit_s * 1e9 / 8 * PAYLOAD_PER_FRAME / frame_bytes
    return min(line, ceiling)


def allreduce_seconds(nbytes: float, machines: int, rate: float, round_trip_s: float) -> float:
    """One all-reduce of ``nbytes`` over ``machines``, each sending at ``rate`` payload bytes/s:
    reduce-scatter then all-gather (MPICH's algorithm for large buffers; a ring moves the same
    bytes), 2 (N - 1) / N x nbytes each way per machine, and 2 ceil(log2 N) one-way latencies."""
    if machines == 1:
        return 0.0
    return math.ceil(math.log2(machines)) * round_trip_s + 2 * (machines - 1) / machines * nbytes / rate


def small_allreduce_seconds(machines: int, round_trip_s: float) -> float:
    """A few bytes all-reduced: ceil(log2 N) exchanges (recursive doubling), half a round trip each."""
    return 0.0 if machines == 1 else math.ceil(math.log2(machines)) * round_trip_s / 2


def gradient_seconds(bucket_bytes: list, machines: int, rate: float, round_trip_s: float) -> float:
    """``numformer.distributed.GradientReducer`` with nothing overlapped: one all-reduce per
    bucket (each carries its gradients and one flag per parameter saying which exist)."""
    if machines == 1:
        return 0.0
    return sum(allreduce_seconds(b, machines, rate, round_trip_s) for b in bucket_bytes)


def step_comm_seconds(bucket_bytes: list, machines: int, rate: float, round_trip_s: float) -> float:
    """A data-parallel step's communication (no overlap with compute): the gradients, and the
    Trainer's other small all-reduces."""
    others = SMALL_COLLECTIVES_PER_STEP * small_allreduce_seconds(machines, round_trip_s)
    return gradient_seconds(bucket_bytes, machines, rate, round_trip_s) + others


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
        reducer = trainer.reducer or distributed.GradientReducer(model.parameters(), world)
        buckets = [sum(p.data.nbytes for p in b) for b in reducer.buckets]
        print(json.dumps({"tokens_per_s": 16 * 128 * steps / seconds, "step_s": seconds / steps,
                          "params": model.num_parameters(), "bytes_reduced": trainer.bytes_reduced,
                          "buckets": buckets, "allreduce_s": reduce_s if world.size > 1 else 0.0}))
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


def estimate(one: dict) -> list[dict]:
    """Communication per step and its share of a step for N machines each computing the step
    measured in ``one`` (one machine, 2048 tokens), on 1, 10 and 100 Gbit/s links."""
    buckets = one.get("buckets") or [4 * one["params"]]  # a run before buckets were reported: one bucket
    compute = one["step_s"]
    rows = []
    for gbit in (1, 10, 100):
        for n in (2, 4, 8, 16):
            comm = step_comm_seconds(buckets, n, link_rate(gbit), CLUSTER_ROUND_TRIP_S)
            rows.append(
                {"gbit_s": gbit, "machines": n, "comm_ms": comm * 1e3, "comm_fraction": comm / (comm + compute)}
            )
    return rows


def print_estimate(one: dict, rows: list[dict]) -> None:
    print(
        f"estimate, each machine computing the step above (2048 tokens) with no overlap, "
        f"round trip {CLUSTER_ROUND_TRIP_S * 1e6:.0f} us:"
    )
    for r in rows:
        print(
            f"  {r['gbit_s']:>3} Gbit/s, {r['machines']:>2} machines: all-reduce {r['comm_ms']:7.2f} ms/step, "
            f"{100 * r['comm_fraction']:5.1f}% of the step"
        )
    # comm / compute = 2 (N-1)/N 4P / rate against 6 P t / R: independent of the model's size
    rate = 6 * one["params"] * 16 * 128 / one["step_s"]
    print(
        f"measured rate {rate / 1e9:.0f} GFLOP/s (6 x params x tokens / step time); communication stays under 10% "
        "of a step when tokens per machine per step exceed 8 x 9 x rate / (6 x link payload rate):"
    )
    for gbit in (1, 10, 100):
        tokens = 8 * 9 * rate / (6 * link_rate(gbit))
        print(f"  {gbit:>3} Gbit/s: {tokens:,.0f} tokens per machine per step")


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--estimate-only", action="store_true", help="recompute the estimate from the saved runs")
    args = parser.parse_args()
    path = HERE / "results" / "mpi_scaling.json"
    if args.estimate_only:
        saved = json.loads(path.read_text())
        one, two = saved["one_rank"], saved["two_ranks"]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            one = run(1, 2, Path(tmp))
            two = run(2, 1, Path(tmp))
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
    rows = estimate(one)
    print_estimate(one, rows)
    path.write_text(json.dumps({"one_rank": one, "two_ranks": two, "estimate": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
