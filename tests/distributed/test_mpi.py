"""Data-parallel training on MPI, run for real: ``mpiexec -n 2`` on this machine (the mpich wheel
of the ``distributed`` extra puts ``mpiexec`` beside the interpreter).

Tolerance: K steps on 2 ranks against K steps in one process, same global batch, AdamW,
clipping and a schedule: the weights agree to 2e-5 absolute (measured 1e-6 to 6e-6 at 10-20
steps). The two runs add the batch's gradients in a different order (each rank sums its half,
then the halves are averaged), so they differ by float32 round-off, which Adam's division by
sqrt(v) amplifies for the parameters whose gradients are near zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from helpers import TINY
from numformer import distributed
from numformer.serialization.safetensors import load_arrays

HERE = Path(__file__).parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"
ENV = {**os.environ, "NUMFORMER_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def job(out, steps, ranks=2, *extra, timeout=120):
    cmd = [sys.executable, str(HERE / "mpi_job.py"), str(out), str(steps), *extra]
    if ranks > 1:
        cmd = [str(MPIEXEC), "-n", str(ranks), *cmd]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    return done, time.perf_counter() - start


def weights(out):
    return load_arrays(Path(out) / "weights.safetensors")


def assert_close(a, b, atol=2e-5):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=0, err_msg=k)


def test_mpiexec_is_installed_by_the_distributed_extra():
    assert MPIEXEC.exists(), "mpiexec is missing: make test installs numformer[distributed] (mpi4py, mpich)"


def test_two_ranks_take_the_same_steps_as_one_process(tmp_path):
    one, _ = job(tmp_path / "one", 12, 1)
    two, _ = job(tmp_path / "two", 12, 2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert_close(weights(tmp_path / "one"), weights(tmp_path / "two"))
    final = weights(tmp_path / "two")
    initial = load_arrays(tmp_path / "two" / "unused_initial.safetensors")
    np.testing.assert_array_equal(final["unused.weight"], initial["unused.weight"])  # no gradient: never moved
    assert "completed 12" in two.stdout and two.stdout.count("completed") == 1  # rank 0 alone reports
    n_params = sum(v.size for v in final.values())
    # every parameter's gradient once per step, float32 (zeros for the unused one, as DDP sends)
    assert f"bytes_reduced={4 * n_params}" in two.stdout
    # rank 0 alone wrote the run: one metrics log, checkpoints at 5, 10 and the last step
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 12
    steps = sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("step-*"))
    assert steps == ["step-00000005", "step-00000010", "step-00000012"]


def test_a_run_started_on_two_ranks_resumes_on_one(tmp_path):
    straight, _ = job(tmp_path / "straight", 15, 1)
    first, _ = job(tmp_path / "split", 10, 2)
    assert straight.returncode == 0 and first.returncode == 0, first.stderr
    second, _ = job(tmp_path / "split", 15, 1, "--resume")
    assert second.returncode == 0, second.stderr
    assert_close(weights(tmp_path / "straight"), weights(tmp_path / "split"))


def test_padded_rows_and_accumulation_give_one_process_step_on_two_ranks(tmp_path):
    """Rank 0's shard keeps about 2 of its 8 rows, rank 1's all 8, over 2 accumulated
    micro-batches: two ranks weight every kept row alike, as one process does (a mean of the
    ranks' means would weight rank 0's few rows 4 times as much), and log the same loss."""
    one, _ = job(tmp_path / "one", 6, 1, "--padded", "--accum", "2")
    two, _ = job(tmp_path / "two", 6, 2, "--padded", "--accum", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert_close(weights(tmp_path / "one"), weights(tmp_path / "two"))

    def losses(out):
        return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)


def test_a_dataloader_that_does_not_divide_among_the_ranks_is_refused_at_the_start(tmp_path):
    """11 rows, batches of 4, 2 ranks: the epoch's last batch of 3 cannot be split; said before
    the first step (not at the end of the first epoch), with drop_last=True as the way out."""
    done, _ = job(tmp_path / "odd", 6, 2, "--loader", "11,4", timeout=60)
    assert done.returncode != 0
    assert "last batch of each epoch holds 3 of its 11 items (batch_size 4)" in done.stderr, done.stderr
    assert "drop_last=True" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "odd" / "metrics.jsonl").exists()  # no step was taken
    fine, _ = job(tmp_path / "even", 2, 2, "--loader", "12,4", timeout=60)
    assert fine.returncode == 0, fine.stderr


def test_an_error_on_one_rank_ends_every_rank(tmp_path):
    done, seconds = job(tmp_path / "err", 20, 2, "--raise-at", "3", timeout=60)
    assert done.returncode != 0
    assert "rank 1 fails on purpose" in done.stderr
    assert seconds < 30


def test_a_killed_rank_ends_the_job_and_the_last_checkpoint_resumes(tmp_path, monkeypatch):
    out = tmp_path / "kill"
    done, seconds = job(out, 20, 2, "--kill-at", "8", timeout=60)
    assert done.returncode != 0 and seconds < 30  # no rank hangs waiting for the dead one
    from numformer.train.checkpoint import load_checkpoint, resolve_checkpoint

    folder = resolve_checkpoint(out / "checkpoints")
    assert folder.name == "step-00000005"
    monkeypatch.setattr(sys, "argv", ["mpi_job.py", str(tmp_path / "unused"), "0"])  # its model, not a run
    import importlib.util

    spec = importlib.util.spec_from_file_location("mpi_job_model", HERE / "mpi_job.py")
    source = (HERE / "mpi_job.py").read_text().split("model = Net()")[0]
    namespace: dict = {}
    exec(compile(source, spec.origin, "exec"), namespace)  # noqa: S102 - the test's own job file
    model = namespace["Net"]()
    assert load_checkpoint(folder, model)["step"] == 5  # intact: it loads, checksums and all
    again, _ = job(out, 20, 2, "--resume")
    assert again.returncode == 0, again.stderr
    straight, _ = job(tmp_path / "straight", 20, 1)
    assert_close(weights(out), weights(tmp_path / "straight"))


def test_numformer_train_runs_under_mpiexec(tmp_path):
    data = tmp_path / "data.txt"
    rng = np.random.default_rng(0)
    data.write_text(" ".join(rng.choice(["the", "cat", "sat", "on", "a", "mat"], 3000)))
    flags = [*TINY, "--data", str(data), "--sample-prompt", "the", "--max-steps", "6", "--dropout", "0.0"]
    numformer = [sys.executable, "-m", "numformer.cli"]
    two = subprocess.run(
        [str(MPIEXEC), "-n", "2", *numformer, "train", *flags, "--out", str(tmp_path / "r2")],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("model saved to") == 1
    one = subprocess.run(
        [*numformer, "train", *flags, "--out", str(tmp_path / "r1")],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert one.returncode == 0, one.stderr
    assert_close(
        load_arrays(tmp_path / "r1" / "model" / "model.safetensors"),
        load_arrays(tmp_path / "r2" / "model" / "model.safetensors"),
    )
    odd = subprocess.run(
        [str(MPIEXEC), "-n", "2", *numformer, "train", *flags[:-2], "--batch-size", "3", "--out", str(tmp_path / "r3")],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert odd.returncode == 2 and "must be a multiple of the 2 ranks" in odd.stderr
    assert odd.stderr.count("error:") == 1  # said once, by rank 0, whose abort ends rank 1


def test_one_process_world_needs_no_mpi():
    world = distributed.world()
    assert (world.rank, world.size, world.is_main) == (0, 1, True)
    batch = (np.arange(6), {"a": np.ones((6, 2))})
    assert distributed.shard(batch, world) is batch
    assert world.mean(3.5) == 3.5 and world.any(True) and not world.any(False)
    assert world.broadcast_json({"x": 1}) == {"x": 1}


def test_embed_shards_a_file_across_ranks(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"sentence number {i}, about {['cats', 'rain', 'maths'][i % 3]}\n" for i in range(23)))
    numformer = [sys.executable, "-m", "numformer.cli", "embed", "--file", str(lines)]
    two = subprocess.run(
        [str(MPIEXEC), "-n", "2", *numformer, "--out", str(tmp_path / "two.npy")],
        capture_output=True,
        text=True,
        timeout=180,
        env=ENV,
    )
    assert two.returncode == 0, two.stderr
    one = subprocess.run([*numformer], capture_output=True, text=True, timeout=180, env=ENV)
    assert one.returncode == 0, one.stderr
    expected = np.array([json.loads(line) for line in one.stdout.splitlines()], dtype=np.float32)
    np.testing.assert_allclose(np.load(tmp_path / "two.npy"), expected, atol=1e-6)  # all 23, in order
