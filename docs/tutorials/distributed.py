# %% [markdown]
# # Data-parallel training on MPI, and across hosts
#
# Under `mpiexec` every rank (process) holds the whole model, trains on its share of each global
# batch, and the gradients are averaged before clipping and the optimiser step, so the ranks stay
# identical. As PyTorch's DDP does, the gradients travel in buckets (the last layers' first: 1 MiB,
# then 25 MiB each) and a bucket's `Iallreduce` starts while the backward is still computing the
# earlier layers' gradients. A script uses PyTorch's API
# (`numformer.distributed.init_process_group`, `get_rank`, `all_reduce`, and
# `numformer.nn.parallel.DistributedDataParallel`), or simply the `Trainer` (and
# `numformer train`), which do it for you.
#
# Needs `pip install 'numformer[distributed]'`: mpi4py and the mpich wheel, whose `mpiexec` lands
# beside the Python interpreter. This notebook launches real MPI jobs on this machine.

# %%
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

mpiexec = Path(sys.executable).parent / "mpiexec"
if not mpiexec.exists():
    raise SystemExit("mpiexec is not beside this Python: pip install 'numformer[distributed]'")
print(mpiexec)

# %% [markdown]
# ## 1. A PyTorch-style DDP script
#
# The script below is what you would write for `torchrun`, with `numformer` for `torch`: each
# rank seeds the same model, wraps it in `DistributedDataParallel` (which broadcasts rank 0's
# weights and averages gradients at the end of each `backward`), and trains on its half of the
# global batch. With `-n 1` the same script is a plain single-process run.

# %%
script = r"""
import json, sys
import numpy as np
import numformer as nf
from numformer import distributed as dist, nn, optim
from numformer.nn.parallel import DistributedDataParallel as DDP
from numformer.nn import functional as F

dist.init_process_group("mpi")
rank, world = dist.get_rank(), dist.get_world_size()
nf.manual_seed(0)
model = DDP(nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1)))
opt = optim.SGD(model.parameters(), lr=0.05)
rng = np.random.default_rng(0)                     # every rank draws the same global batch...
losses = []
for step in range(40):
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = np.sin(x.sum(1, keepdims=True)).astype(np.float32)
    mine = slice(rank * 64 // world, (rank + 1) * 64 // world)   # ...and trains on its share
    loss = F.mse_loss(model(nf.tensor(x[mine])), nf.tensor(y[mine]))
    opt.zero_grad()
    loss.backward()                                # gradients averaged over the ranks here
    opt.step()
    total = nf.tensor([loss.item()])
    dist.all_reduce(total)                         # the global mean loss, for the log
    losses.append(total.item() / world)
if rank == 0:
    weights = {k: v.numpy().tolist() for k, v in model.module.state_dict().items()}
    json.dump({"losses": losses, "weights": weights}, open(sys.argv[1], "w"))
dist.destroy_process_group()
"""
Path("ddp_script.py").write_text(script)
env = {**os.environ, "NUMFORMER_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
runs = {}
for n in (1, 2):
    done = subprocess.run(
        [str(mpiexec), "-n", str(n), sys.executable, "ddp_script.py", f"ranks{n}.json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    runs[n] = json.loads(Path(f"ranks{n}.json").read_text())
    print(f"{n} rank(s): final loss {runs[n]['losses'][-1]:.5f}")

# %% [markdown]
# Two ranks take the same steps as one process: the same global batch, the gradients averaged.
# The weights agree to float32 round-off (the two runs add the batch's gradients in a different
# order):

# %%
difference = max(
    np.abs(np.array(runs[1]["weights"][k]) - np.array(runs[2]["weights"][k])).max() for k in runs[1]["weights"]
)
print(f"largest weight difference, 1 rank vs 2 ranks: {difference:.1e}")
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.semilogy(runs[1]["losses"], label="1 process")
ax.semilogy(runs[2]["losses"], "--", label="2 ranks (mpiexec -n 2)")
ax.set_xlabel("step")
ax.set_ylabel("global mean loss")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. The command line
#
# ```bash
# mpiexec -n 4 numformer train --config my.toml --batch-size 64   # 4 ranks, global batch 64
# mpiexec -n 2 numformer train --out runs/notes --resume            # a run resumes on any rank count
# ```
#
# `--batch-size` is the global batch and must be a multiple of the rank count; rank 0 alone
# writes checkpoints, metrics and the progress bar; an error or a killed rank ends every rank
# (no hang).
#
# ## 3. Across hosts
#
# ```bash
# # hosts.txt: one line per machine, "node1:1" (one rank each); passwordless ssh between them
# .venv/bin/mpiexec -f hosts.txt -ppn 1 -n 4 .venv/bin/numformer train --data corpus.txt --batch-size 64 --out runs/big
# # Slurm, with mpi4py built against the cluster's own MPI
# #   MPICC=$(which mpicc) pip install --no-binary=mpi4py mpi4py
# srun --mpi=pmi2 -N 4 --ntasks-per-node=1 .venv/bin/numformer train --data corpus.txt --batch-size 64 --out runs/big
# # Ethernet with the mpich wheel: libfabric's TCP
# export MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp
# ```
#
# Every machine needs the same virtual environment and corpus at the same paths; the run folder
# need not be shared (rank 0 writes it, and a resume reads it on rank 0 and sends the state to
# the others). `tests/distributed/test_multi_host.py` runs real multi-host jobs between Linux
# network namespaces joined by shaped veth links.
#
# ## 4. What to expect: the recorded scaling run
#
# `bench/mpi_scaling.py` measures this machine (one and two ranks, the all-reduce's cost) and
# estimates N machines from the payload, a round trip per bucket and the link rate. Its last
# results, read from `bench/results/mpi_scaling.json`:

# %%
import numformer as nf


def bench_result(name: str):
    """A recorded benchmark result of the repository this notebook runs in (None elsewhere)."""
    for folder in (Path.cwd(), *Path.cwd().parents, Path(nf.__file__).resolve().parents[2]):
        if (folder / "bench" / "results" / name).is_file():
            return json.loads((folder / "bench" / "results" / name).read_text())
    print(f"bench/results/{name} is not here (an installed numformer, not the repository)")
    return None


recorded = bench_result("mpi_scaling.json")
if recorded is not None:
    for key in ("one_rank", "two_ranks"):
        r = recorded[key]
        print(
            f"{key:10} {r['tokens_per_s']:8.0f} tokens/s, step {1e3 * r['step_s']:.0f} ms ({r['params']:,} parameters)"
        )
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for rate in sorted({e["gbit_s"] for e in recorded["estimate"]}):
        rows = [e for e in recorded["estimate"] if e["gbit_s"] == rate]
        ax.plot([e["machines"] for e in rows], [100 * e["comm_fraction"] for e in rows], "o-", label=f"{rate} Gbit/s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("machines")
    ax.set_ylabel("% of a step spent in all-reduce")
    ax.set_title("estimated from the recorded run (demo GPT)")
    ax.legend()
    plt.show()

# %% [markdown]
# ## 5. Measured across hosts: communication during the backward
#
# `bench/multi_host.py` trains between Linux network namespaces joined by veth links shaped to
# 1 or 10 Gbit/s, one rank per "host", TCP only, twice per row: every bucket all-reduced after
# the backward, and (as numformer does by default) each bucket started as soon as the backward
# has completed its gradients. All the "hosts" share one machine's cores, so tokens per second
# cannot grow with hosts here; the time each step waits for the network is the figure to read.

# %%
measured = bench_result("multi_host.json")
if measured is not None:
    print(f"{'model':>6} {'hosts':>5} {'link':>6} {'step ms after/overlap':>22} {'waiting ms after/overlap':>25}")
    for after in [r for r in measured["rows"] if r["hosts"] > 1 and r.get("overlap") == "after"]:
        key = (after["model"], after["hosts"], after["shaping"])
        during = next(r for r in measured["rows"] if (r["model"], r["hosts"], r["shaping"]) == key and r is not after)
        steps = f"{1e3 * after['step_s']:.0f} / {1e3 * during['step_s']:.0f}"
        waits = f"{1e3 * after['grad_comm_s']:.0f} / {1e3 * during['grad_comm_s']:.0f}"
        print(f"{key[0]:>6} {key[1]:>5} {key[2]:>6} {steps:>22} {waits:>25}")
