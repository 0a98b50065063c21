"""Data-parallel training across hosts over real TCP links, measured, against the scaling model
of ``bench/mpi_scaling.py``.

Each host is a Linux network namespace on a private Ethernet segment (``tests/distributed/
netns.py``: veth links to a bridge, one rank per host, TCP through libfabric). Every link is
shaped in both directions with a token bucket (``tc ... tbf``) at 1 and 10 Gbit/s, or left
unshaped ("none": what this machine's TCP stack gives). This kernel has no ``netem``, so no
delay is added: the model takes the round trip measured on the links instead.

For each model (the demo GPT and the medium GPT of ``bench/suite.py``), shaping and host count
(1, 2, 4) a job trains through ``numformer.train.Trainer`` at the model's global batch and
records, per step and rank, the step time, the time the step waits in the gradient reducer's
``finish`` (buckets not yet started packed and started, all waited for, unpacked) and the time
its hooks take inside the backward; twice per multi-host row: every bucket after the backward
("after", the hooks do nothing) and each as soon as its gradients are complete ("overlap", the
default). Then it times a 1-byte
ping-pong (the round trip) and an 8-byte ``Allreduce``. First, an unshaped 64 MiB
``Allreduce`` on each host count measures the ceiling of this machine's stack (every "host"
shares this machine's cores, so the stack, not the link, limits a fast link).

Reported per row: tokens per second, step time, the gradient communication per step (mean over
ranks, and the least-waiting rank's: the transfer without the wait for a slower rank), the
model's (measured round trip, the link's payload rate, the ceiling) and the old model's (the
line rate only). The modelled step is the measured compute
(the step less the least-waiting rank's communication) plus the modelled communication. All
hosts share this machine's cores, so tokens per second cannot grow with hosts here: the
compute of N real machines is what ``bench/mpi_scaling.py`` projects.

Full run (root; about 10 minutes on a quiet 2-core machine)::

    .venv/bin/python bench/multi_host.py

Smoke run (a minute; writes nothing unless ``--out`` is given)::

    .venv/bin/python bench/multi_host.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests" / "distributed"))  # the namespace harness

import netns  # noqa: E402

import mpi_scaling  # noqa: E402
from timing import machine as timing_machine  # noqa: E402

# name: (layers, d_model, heads, d_ff, T, global batch, vocabulary)
MODELS = {
    "demo": (4, 128, 4, 512, 64, 12, 65),  # numformer demo's recipe (nanoGPT's CPU Shakespeare)
    "medium": (6, 384, 6, 1536, 256, 8, 100),  # bench/suite.py's medium GPT
}
RATES = ("1gbit", "10gbit", "none")
PROBE_BYTES = 64 * 2**20


# --- the job (run on every host by mpiexec) --------------------------------------------------
def job(model_name: str, steps: int, warmup: int, out: str, overlap: str) -> None:
    """Train ``model_name`` for ``steps`` steps and print, on rank 0, one JSON line of timings;
    ``overlap`` is "overlap" (buckets start during the backward) or "after" (all after it)."""
    import numpy as np

    import numformer as nf
    from numformer import distributed
    from numformer.models import GPT, GPTConfig
    from numformer.train import TrainConfig, Trainer

    world = distributed.world()
    layers, d, heads, d_ff, T, B, vocab = MODELS[model_name]
    nf.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=T, n_layer=layers, n_head=heads, d_model=d, d_ff=d_ff))
    opt = model.configure_optimizers(0.1, 1e-3, betas=(0.9, 0.99))
    data = np.random.default_rng(0).integers(0, vocab, 200_000)

    def batches(rng):
        starts = rng.integers(0, len(data) - T - 1, B)
        rows = np.stack([data[s : s + T + 1] for s in starts])
        return rows[:, :-1], rows[:, 1:]

    # the gradient communication the step waits for: the Trainer's call of the reducer's finish
    # (buckets not yet started packed and started, every one waited for, the means unpacked);
    # and the work the hooks do inside the backward (packing, starting, letting MPI progress)
    comm_s, hooks_s = [0.0], [0.0]
    Reducer = distributed.GradientReducer
    plain_finish, plain_ready = Reducer.finish, Reducer._ready

    def timed(plain, into):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return plain(*args, **kwargs)
            finally:
                into[0] += time.perf_counter() - start

        return call

    Reducer.finish = timed(plain_finish, comm_s)
    # "after": no bucket starts during the backward (the hooks do nothing): all wait for finish
    Reducer._ready = timed(plain_ready, hooks_s) if overlap == "overlap" else lambda self, param: None
    rows = []

    class Clock:
        def on_step_end(self, trainer, metrics):
            rows.append([time.perf_counter(), comm_s[0], hooks_s[0]])
            comm_s[0] = hooks_s[0] = 0.0

        def on_eval_end(self, trainer, metrics):
            pass

    config = TrainConfig(max_steps=steps, eval_every=10**6, checkpoint_every=10**6, out_dir=out, progress=False)
    trainer = Trainer(model, opt, lambda m, b: m(b[0], b[1])[1], batches, config=config, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.fit()
    stamps = np.array([[start, 0.0, 0.0]] + rows)
    per_step = np.concatenate([np.diff(stamps[:, :1], axis=0), stamps[1:, 1:]], axis=1)[warmup:]  # step, comm, hooks
    everyone = world.gather_rows(np.ascontiguousarray(per_step.reshape(1, -1)))
    round_trip, small = _latencies(world)
    if world.is_main:
        by_rank = everyone.reshape(world.size, -1, 3)  # (ranks, steps, 3)
        step_s = by_rank[:, :, 0].max(axis=0)  # a step ends when its slowest rank ends it
        comm = by_rank[:, :, 1]
        reducer = trainer.reducer or distributed.GradientReducer(model.parameters(), world)
        buckets = [sum(p.array.nbytes for p in b) for b in reducer.buckets]
        report = {
            "params": model.num_parameters(),
            "buckets": buckets,
            "reduced_per_step": trainer.bytes_reduced,
            "tokens_per_step": B * T,
            "steps_timed": int(step_s.size),
            "step_s": float(np.median(step_s)),
            "grad_comm_s": float(np.median(comm.mean(axis=0))),
            "grad_comm_min_s": float(np.median(comm.min(axis=0))),
            "hooks_s": float(np.median(by_rank[:, :, 2].mean(axis=0))),
            "overlap": overlap,
            "round_trip_s": round_trip,
            "small_allreduce_s": small,
        }
        print(json.dumps(report))


def _latencies(world) -> tuple[float, float]:
    """(median 1-byte ping-pong between ranks 0 and 1, median 8-byte Allreduce) in seconds."""
    if world.size == 1:
        return 0.0, 0.0
    import numpy as np

    byte, trips, smalls = np.zeros(1, np.uint8), [], []
    for _ in range(200):
        world.barrier()
        start = time.perf_counter()
        if world.rank == 0:
            world.comm.Send(byte, dest=1)
            world.comm.Recv(byte, source=1)
        elif world.rank == 1:
            world.comm.Recv(byte, source=0)
            world.comm.Send(byte, dest=0)
        trips.append(time.perf_counter() - start)
    value = np.zeros(1)
    for _ in range(200):
        world.barrier()
        start = time.perf_counter()
        world.allreduce_sum_(value)
        smalls.append(time.perf_counter() - start)
    return float(np.median(trips)), float(np.median(smalls))


def probe() -> None:
    """Time a 64 MiB Allreduce (median of 5, after one untimed) and print its bytes per second
    per host: 2 (N - 1) / N of the buffer sent in that time."""
    import numpy as np

    from numformer import distributed

    world = distributed.world()
    buffer = np.ones(PROBE_BYTES // 4, np.float32)
    world.allreduce_sum_(buffer)
    times = []
    for _ in range(5):
        world.barrier()
        start = time.perf_counter()
        world.allreduce_sum_(buffer)
        times.append(time.perf_counter() - start)
    if world.is_main:
        sent = 2 * (world.size - 1) / world.size * buffer.nbytes
        print(json.dumps({"bytes_per_s": sent / statistics.median(times)}))


# --- the driver -----------------------------------------------------------------------------
def _env(hosts: int) -> dict:
    """Each rank a share of this machine's cores (the hosts share them)."""
    threads = str(max(1, (os.cpu_count() or 1) // hosts))
    return {"NUMFORMER_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}


def _last_json(done) -> dict:
    if done.returncode != 0:
        raise RuntimeError(f"a job failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_job(cluster, hosts: int, args: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    if hosts == 1:  # one host: a plain process, as a user runs one machine
        import subprocess

        env = {**os.environ, **_env(1)}
        return _last_json(subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600))
    return _last_json(cluster.run(command, hosts=hosts, env=_env(hosts), timeout=3600))


def modelled(row: dict, hosts: int, rate: str, ceiling: float) -> dict:
    """The model's gradient communication and step time for a measured row (its round trip,
    its compute), and the old model's (2 (N-1)/N of the gradient at the line rate)."""
    gbit = None if rate == "none" else netns.rate_bits(rate) / 1e9
    link = mpi_scaling.link_rate(gbit, mpi_scaling.TBF_BYTES_PER_FRAME, ceiling)
    comm = mpi_scaling.gradient_seconds(row["buckets"], hosts, link, row["round_trip_s"])
    old = None if gbit is None else 2 * (hosts - 1) / hosts * 4 * row["params"] / (gbit * 1e9 / 8)
    compute = row["step_s"] - row["grad_comm_min_s"]  # the slowest rank's compute: it waits for no one
    return {
        "grad_comm_s": comm,
        "step_s": compute + comm,
        "tokens_per_s": row["tokens_per_step"] / (compute + comm),
        "link_bytes_per_s": link,
        "old_model_grad_comm_s": old,
        "error": row["grad_comm_min_s"] / comm - 1,
    }


def machine() -> dict:
    from importlib.metadata import version

    import mpi4py

    return timing_machine(mpi4py=mpi4py.__version__, mpich=version("mpich"), transport=netns.TCP_ONLY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rates", default=",".join(RATES))
    parser.add_argument("--hosts", default="1,2,4")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="the demo GPT, 1 Gbit/s, 1 and 2 hosts, 8 steps")
    parser.add_argument("--out", default=None, help="the results file (default bench/results/multi_host.json)")
    parser.add_argument("--overlap", default="after,overlap", help="after: buckets after backward; overlap: during")
    parser.add_argument("--job", nargs=5, metavar=("MODEL", "STEPS", "WARMUP", "OUT", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        return job(args.job[0], int(args.job[1]), int(args.job[2]), args.job[3], args.job[4])
    if args.probe:
        return probe()
    if args.smoke:
        args.models, args.rates, args.hosts, args.steps, args.warmup = "demo", "1gbit", "1,2", 8, 3
    out_file = Path(args.out) if args.out else None if args.smoke else HERE / "results" / "multi_host.json"
    reason = netns.unavailable()
    if reason:
        sys.exit(f"multi_host: {reason}")
    models, rates, overlaps = args.models.split(","), args.rates.split(","), args.overlap.split(",")
    host_counts = [int(n) for n in args.hosts.split(",")]
    rows, ceilings = [], {}
    with tempfile.TemporaryDirectory() as tmp, netns.Cluster(max(host_counts)) as cluster:
        for hosts in [n for n in host_counts if n > 1]:
            cluster.shape(None)
            ceilings[hosts] = run_job(cluster, hosts, ["--probe"])["bytes_per_s"]
            print(f"{hosts} hosts, unshaped: a 64 MiB Allreduce moves {ceilings[hosts] / 1e9:.2f} GB/s per host")
        for name in models:
            for rate in rates:
                cluster.shape(None if rate == "none" else rate)
                for hosts, overlap in [(n, o) for n in host_counts for o in (overlaps if n > 1 else overlaps[:1])]:
                    if hosts == 1 and rate != rates[0]:
                        continue  # one host sends nothing: measured once per model
                    run_dir = os.path.join(tmp, f"{name}-{rate}-{hosts}-{overlap}")
                    job_args = ["--job", name, str(args.steps), str(args.warmup), run_dir, overlap]
                    row = run_job(cluster, hosts, job_args)
                    row.update(model=name, hosts=hosts, shaping=None if hosts == 1 else rate)
                    row["tokens_per_s"] = row["tokens_per_step"] / row["step_s"]
                    if hosts > 1 and overlap == "after":  # the model: communication after the backward
                        row["modelled"] = modelled(row, hosts, rate, ceilings[hosts])
                    rows.append(row)
                    _print_row(row)
    results = {"machine": machine(), "steps": args.steps, "warmup": args.warmup, "ceilings": ceilings, "rows": rows}
    if out_file is not None:
        out_file.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out_file}")


def _print_row(row: dict) -> None:
    where = f"{row['model']:>6} {row['hosts']} host{'s' if row['hosts'] > 1 else ' '} {row['shaping'] or '-':>6}"
    where += f" {row['overlap'] if row['hosts'] > 1 else '':>7}"
    line = f"{where}: {row['tokens_per_s']:7,.0f} tok/s, step {row['step_s'] * 1e3:7.1f} ms"
    if row["hosts"] > 1:
        line += (
            f", grad comm {row['grad_comm_s'] * 1e3:6.1f} ms (least-waiting rank {row['grad_comm_min_s'] * 1e3:6.1f}"
            f", in backward {row['hooks_s'] * 1e3:5.1f})"
        )
    if "modelled" in row:
        m = row["modelled"]
        old = "-" if m["old_model_grad_comm_s"] is None else f"{m['old_model_grad_comm_s'] * 1e3:.1f}"
        line += f" model {m['grad_comm_s'] * 1e3:6.1f} (old {old}); round trip {row['round_trip_s'] * 1e6:.0f} us"
    print(line, flush=True)


if __name__ == "__main__":
    main()
