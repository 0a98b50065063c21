"""Data-parallel training across hosts over a real network stack: each host a Linux network
namespace on a private Ethernet segment (``netns.Cluster``), one rank per host, TCP only, and
every host but host 0 on a disk of its own. Skipped, with the reason, where namespaces cannot
be made (not root, no ``ip``, a kernel without veth or bridges).

Tolerance: that of ``test_mpi.py`` (2 ranks against one process agree to 2e-5; they add the
batch's gradients in another order)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import netns
import numpy as np
import pytest
from test_mpi import ENV, HERE, assert_close, job, weights

from helpers import TINY
from numformer.serialization.safetensors import load_arrays
from numformer.train.checkpoint import resolve_checkpoint

REASON = netns.unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no network namespaces here: {REASON}")
JOB = [sys.executable, str(HERE / "mpi_job.py")]


@pytest.fixture
def hosts(tmp_path):
    """Two hosts; ``tmp_path/disk`` is host 0's disk (host 1 has a disk of its own there)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with netns.Cluster(2, private=disk) as cluster:
        yield cluster
    assert netns.ours() == []  # removed, whatever the test did


def no_process_left(cluster, seconds=10.0) -> bool:
    """Whether every host's namespace empties within ``seconds`` (exited ranks are reaped)."""
    deadline = time.monotonic() + seconds
    while any(cluster.pids(name) for name in cluster.names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_each_host_has_its_address_and_its_own_disk(hosts):
    (hosts.private / "on-host-0").write_text("")
    probe = "import os, sys; from mpi4py import MPI; seen = MPI.COMM_WORLD.gather(os.listdir(sys.argv[1]))\n"
    probe += "if seen: print(seen)"
    done = hosts.run([sys.executable, "-c", probe, str(hosts.private)], env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[['on-host-0'], []]"  # what rank 0 and rank 1 see there
    shown = hosts.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    assert sorted(re.findall(r"inet (\S+)/24", shown.stdout)) == ["10.23.0.1", "10.23.0.2"]


def test_two_hosts_over_tcp_take_the_same_steps_as_one_process(hosts, tmp_path):
    out = hosts.private / "two"
    before = hosts.tx_bytes()
    two = hosts.run([*JOB, str(out), "12"], env=ENV)
    sent = [after - was for after, was in zip(hosts.tx_bytes(), before)]
    assert two.returncode == 0, two.stderr
    one, _ = job(tmp_path / "one", 12, 1)
    assert one.returncode == 0, one.stderr
    assert_close(weights(tmp_path / "one"), weights(out))
    # every step's gradients crossed each host's link (with shared memory, a few KiB of Hydra's)
    gradient = int(re.search(r"bytes_reduced=(\d+)", two.stdout).group(1))
    assert min(sent) >= 12 * gradient, (sent, gradient)
    # the run is on rank 0's disk, whole; rank 1 wrote nothing on its own
    steps = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert steps == ["step-00000005", "step-00000010", "step-00000012"]
    assert list(hosts.disk(1).iterdir()) == []


def test_a_killed_rank_ends_the_job_on_every_host_and_the_run_resumes_from_rank_0s_disk(hosts, tmp_path):
    out = hosts.private / "kill"
    start = time.monotonic()
    killed = hosts.run([*JOB, str(out), "20", "--kill-at", "8"], env=ENV, timeout=60)
    assert killed.returncode != 0
    assert no_process_left(hosts)  # no rank waits on either host for the dead one
    assert time.monotonic() - start < 30  # a hang guard: it ends in about a second
    assert resolve_checkpoint(out / "checkpoints").name == "step-00000005"
    # host 1 sees none of the run's files: rank 0 reads the checkpoint and sends it
    again = hosts.run([*JOB, str(out), "20", "--resume"], env=ENV)
    assert again.returncode == 0, again.stderr
    straight, _ = job(tmp_path / "straight", 20, 1)
    assert_close(weights(out), weights(tmp_path / "straight"))
    assert list(hosts.disk(1).iterdir()) == []


def test_numformer_train_on_two_hosts_writes_rank_0s_folder_and_resumes_on_one_and_on_two(hosts, tmp_path):
    data = tmp_path / "data.txt"  # the corpus is on every host (outside the disks)
    data.write_text(" ".join(np.random.default_rng(0).choice(["the", "cat", "sat", "on", "a", "mat"], 3000)))
    flags = [
        *TINY,
        "--data",
        str(data),
        "--sample-prompt",
        "the",
        "--dropout",
        "0.0",
        "--checkpoint-every",
        "4",
        "--keep-checkpoints",
        "9",
    ]
    train = [sys.executable, "-m", "numformer.cli", "train"]
    out = hosts.private / "run"
    first = hosts.run([*train, *flags, "--max-steps", "8", "--out", str(out)], env=ENV)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("model saved to") == 1
    for name in ("run.json", "tokenizer.json", "metrics.jsonl", "model", "checkpoints/step-00000004"):
        assert (out / name).exists(), name
    assert list(hosts.disk(1).iterdir()) == []  # rank 1 wrote nothing
    model = out / "model" / "model.safetensors"
    two_hosts = load_arrays(model)
    # steps 5 to 8 again from the step-4 checkpoint: in one process, then on both hosts (rank 1
    # finding no run.json, tokenizer or checkpoint on its disk)
    resume = [*train, "--out", str(out), "--resume-from", "4"]
    one = subprocess.run(resume, capture_output=True, text=True, env=ENV, timeout=120)
    assert one.returncode == 0, one.stderr
    assert_close(load_arrays(model), two_hosts)
    two = hosts.run(resume, env=ENV)
    assert two.returncode == 0, two.stderr
    assert "completed at step 8" in two.stdout
    assert_close(load_arrays(model), two_hosts)
    assert list(hosts.disk(1).iterdir()) == []
    # a damaged pointer on rank 0's disk: every rank stops on rank 0's finding, said once, no hang
    (out / "checkpoints" / "latest.json").write_text("{")
    damaged = hosts.run([*train, "--out", str(out), "--resume"], env=ENV, timeout=60)
    assert damaged.returncode == 2
    assert damaged.stderr.count("error:") == 1 and "latest.json is not valid JSON" in damaged.stderr


def test_namespaces_are_removed_after_a_failure_a_sigterm_and_a_sigkill():
    with pytest.raises(RuntimeError, match="a rank failed"), netns.Cluster(2) as cluster:
        assert len(netns.ours()) == 3  # two hosts and the switch
        if cluster.run(["sh", "-c", "exit 3"]).returncode != 0:
            raise RuntimeError("a rank failed")
    assert netns.ours() == []
    # a process holding a cluster: SIGTERM removes its namespaces; after SIGKILL the next run does
    holder = (
        "import sys, time, netns\n"
        "cluster = netns.Cluster(2)\n"
        "cluster.start()\n"
        "print(' '.join([*cluster.names, cluster.switch]), flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=env)
        names = proc.stdout.readline().split()
        assert len(names) == 3 and set(names) <= set(netns.namespaces())
        proc.send_signal(sig)
        proc.wait(timeout=30)
        proc.stdout.close()
        if sig == signal.SIGKILL:
            assert set(names) <= set(netns.namespaces())  # nothing ran to remove them
            assert set(names) <= set(netns.remove_stale())
        assert not set(names) & set(netns.namespaces())


def test_shaping_puts_a_token_bucket_on_both_ends_of_every_link():
    def qdiscs(cluster):
        ends = [(name, "eth0") for name in cluster.names] + [(cluster.switch, "p0"), (cluster.switch, "p1")]
        show = [["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", dev] for ns, dev in ends]
        return [subprocess.run(cmd, capture_output=True, text=True, check=True).stdout for cmd in show]

    with netns.Cluster(2) as cluster:
        launcher = cluster.launcher
        cluster.shape("100mbit")
        assert all("tbf" in shown and "rate 100Mbit" in shown for shown in qdiscs(cluster))
        cluster.shape(None)
        assert not any("tbf" in shown for shown in qdiscs(cluster))
    assert not launcher.exists()
