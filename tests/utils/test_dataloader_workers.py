"""DataLoader with worker processes: the batches of one process, PyTorch's seeding of each
worker, worker_init_fn, persistent workers, iterable datasets, errors raised in the main
process, and workers that end with their iterator or their program. Tiny datasets; workers are
forked (where the platform has fork), so each test costs a few tens of milliseconds."""

from __future__ import annotations

import gc
import multiprocessing
import os
import random
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from torch.utils.data._utils.worker import _generate_state

import numformer as nf
from numformer.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info

FORK = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
pytestmark = pytest.mark.skipif(FORK is None, reason="worker tests fork (cheap); this platform cannot")


def _loader(dataset, **kwargs):
    return DataLoader(dataset, multiprocessing_context=FORK if kwargs.get("num_workers") else None, **kwargs)


def _rows(n=11):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return TensorDataset(x, np.arange(n))


def _plain(batches):
    return [[t.numpy().tolist() for t in batch] for batch in batches]


class Rows(Dataset):
    """(index, its row): fetched item by item (no TensorDataset fast path)."""

    def __init__(self, n=11):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, np.full(2, i, dtype=np.float64)


def _scribble_numpy(worker_id):
    np.random.seed(worker_id)  # noqa: NPY002 - a worker_init_fn that writes NumPy's global RNG
    np.random.random(5)  # noqa: NPY002


@pytest.mark.parametrize(
    ("dataset", "kwargs"),
    [
        (_rows(), {"batch_size": 2, "shuffle": True}),
        (_rows(), {"batch_size": 3, "shuffle": False, "drop_last": True}),
        (Rows(), {"batch_size": 4, "shuffle": True, "drop_last": True, "worker_init_fn": _scribble_numpy}),
        (Rows(), {"batch_size": 1, "shuffle": True, "prefetch_factor": 1, "worker_init_fn": _scribble_numpy}),
    ],
)
def test_two_workers_give_the_batches_of_one_process(dataset, kwargs):
    """Same batches in the same order, and the global generator left in the same state (the
    base seed is drawn with and without workers); what a worker does to NumPy's global RNG
    stays in the worker."""
    runs = []
    for workers in (0, 2):
        nf.manual_seed(4)
        np.random.seed(9)  # noqa: NPY002
        options = dict(kwargs)
        if not workers:
            options.pop("worker_init_fn", None)
            options.pop("prefetch_factor", None)
        batches = _plain(_loader(dataset, num_workers=workers, **options))
        runs.append((batches, nf.backend.generator().integers(2**63), np.random.random()))  # noqa: NPY002
    assert runs[0] == runs[1]
    assert len(runs[0][0]) >= 2


class WhoAmI(Dataset):
    """What the worker that fetched an item knows: its info, and a draw from each generator."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        info = get_worker_info()
        return {
            "index": i,
            "id": info.id,
            "num_workers": info.num_workers,
            "seed": info.seed,
            "own_dataset": info.dataset is not None and type(info.dataset) is WhoAmI,
            "numformer": float(nf.rand(1).item()),
            "numpy": float(np.random.random()),  # noqa: NPY002
            "python": random.random(),
            "tag": getattr(info.dataset, "tag", ""),
            "pid": os.getpid(),
            "threads": nf.get_num_threads(),
        }


def _tag(worker_id):
    get_worker_info().dataset.tag = f"worker{worker_id}"


def test_workers_are_seeded_as_pytorch_seeds_them_and_run_worker_init_fn():
    """Batch k comes from worker k mod 2; worker i is seeded with base_seed + i (numformer's
    and Python's generators) and NumPy's global with PyTorch's hash of (base_seed, i); the
    base seed is the loader generator's first draw; worker_init_fn ran in each worker, on its
    copy of the dataset; get_worker_info() is None in the main process."""
    generator = nf.Generator().manual_seed(7)
    base_seed = int(np.random.default_rng(7).integers(2**63))
    batches = list(_loader(WhoAmI(), batch_size=2, num_workers=2, generator=generator, worker_init_fn=_tag))
    assert get_worker_info() is None
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]
    for k, batch in enumerate(batches):
        worker = k % 2
        assert batch["id"].tolist() == [worker] * 2 and batch["num_workers"].tolist() == [2, 2]
        assert batch["seed"].tolist() == [base_seed + worker] * 2 and batch["own_dataset"].tolist() == [True, True]
        assert batch["tag"] == [f"worker{worker}"] * 2 and batch["threads"].tolist() == [1, 1]
    first = batches[0]  # worker 0's first two draws from each generator
    nf.manual_seed(base_seed)
    assert first["numformer"].tolist() == [float(nf.rand(1).item()), float(nf.rand(1).item())]
    np_rng = np.random.RandomState(_generate_state(base_seed, 0))
    assert first["numpy"].tolist() == [np_rng.random(), np_rng.random()]
    py_rng = random.Random(base_seed)
    assert first["python"].tolist() == [py_rng.random(), py_rng.random()]
    assert batches[0]["pid"][0].item() != batches[1]["pid"][0].item() != os.getpid()


def test_persistent_workers_keep_their_processes_and_seeds_across_epochs():
    """Two epochs, one pair of processes; in order, the batches of one process. A later epoch
    draws no new base seed (PyTorch's rule), so the generator advanced by one base seed and
    one sampler seed per epoch."""
    loader = _loader(WhoAmI(), batch_size=2, num_workers=2, persistent_workers=True)
    nf.manual_seed(2)
    epochs = [list(loader), list(loader)]
    pids = [sorted({int(p) for b in epoch for p in b["pid"].tolist()}) for epoch in epochs]
    assert pids[0] == pids[1] and len(pids[0]) == 2
    assert [[b["index"].tolist() for b in epoch] for epoch in epochs] == [[[0, 1], [2, 3], [4, 5]]] * 2
    seeds = [{int(s) for b in epoch for s in b["seed"].tolist()} for epoch in epochs]
    assert seeds[0] == seeds[1]
    numformer_draws = [[v for b in epoch for v in b["numformer"].tolist()] for epoch in epochs]
    assert numformer_draws[0] != numformer_draws[1]  # the workers' generators run on, not reseeded
    shuffled = _loader(_rows(), batch_size=3, shuffle=True, num_workers=2, persistent_workers=True)
    nf.manual_seed(2)
    orders = [[i for b in shuffled for i in b[1].tolist()] for _ in range(2)]
    assert all(sorted(order) == list(range(11)) for order in orders)
    rng = np.random.default_rng(2)
    for _ in range(3):  # one base seed, two sampler seeds
        rng.integers(2**63)
    assert nf.backend.generator().integers(2**63) == rng.integers(2**63)
    del loader, shuffled


class Shard(IterableDataset):
    """0..n-1 split between the workers: worker w reads w, w + k, w + 2k, ..."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


def test_an_iterable_dataset_is_read_by_each_worker_in_turn():
    """Worker 0 then worker 1, a batch each, until both streams end (shorter last batches)."""
    batches = [b.tolist() for b in _loader(Shard(9), batch_size=2, num_workers=2)]
    assert batches == [[0, 2], [1, 3], [4, 6], [5, 7], [8], []][:5]
    assert sorted(i for b in batches for i in b) == list(range(9))
    persistent = _loader(Shard(5), batch_size=2, num_workers=2, persistent_workers=True)
    assert [[b.tolist() for b in persistent] for _ in range(2)] == [[[0, 2], [1, 3], [4]]] * 2


def test_out_of_order_delivery_yields_every_batch_once():
    """in_order=False hands batches out as they arrive (which order that is, is up to the workers)."""
    unordered = [b[1].tolist() for b in _loader(_rows(), batch_size=2, num_workers=2, in_order=False)]
    assert sorted(unordered) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10]]


class Faulty(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 3:
            raise ValueError("bad item 3")
        if i == 6:
            return lambda: None  # a batch that cannot be pickled
        return i


def test_an_error_in_a_worker_is_raised_in_the_main_process_naming_it():
    it = iter(_loader(Faulty(), batch_size=2, num_workers=2, collate_fn=list))
    assert next(it) == [0, 1]
    with pytest.raises(ValueError, match=r"Caught ValueError in DataLoader worker process 1\.") as caught:
        next(it)
    assert "bad item 3" in str(caught.value) and "Original Traceback" in str(caught.value)
    assert next(it) == [4, 5]  # the iterator goes on, as PyTorch's
    with pytest.raises(Exception, match=r"in DataLoader worker process 1 \(pickling its batch\)"):
        next(it)


def test_an_error_in_worker_init_fn_comes_with_the_first_batch():
    def broken(worker_id):
        raise KeyError(f"no config for worker {worker_id}")

    with pytest.raises(KeyError, match="Caught KeyError in DataLoader worker process 0"):
        list(_loader(Rows(4), batch_size=2, num_workers=2, worker_init_fn=broken))


class Slow(Dataset):
    def __init__(self, delay):
        self.delay = delay

    def __len__(self):
        return 2

    def __getitem__(self, i):
        if self.delay < 0:
            os._exit(3)  # a worker that dies
        time.sleep(self.delay)
        return i


def test_timeouts_and_dead_workers_are_errors():
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.2 seconds"):
        list(_loader(Slow(0.5), num_workers=1, timeout=0.2))
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited unexpectedly"):
        list(_loader(Slow(-1), num_workers=1))
    gc.collect()  # the failed iterators (held by their tracebacks) end their workers here


def test_workers_end_with_their_iterator():
    loader = _loader(Rows(20), batch_size=2, num_workers=2)
    it = iter(loader)
    next(it)
    workers = list(it._workers)
    assert all(w.is_alive() for w in workers)
    del it
    gc.collect()
    assert not any(w.is_alive() for w in workers)
    finished = iter(loader)
    workers = list(finished._workers)
    assert len(list(finished)) == 10 and not any(w.is_alive() for w in workers)  # the epoch's end
    cyclic = iter(loader)  # an iterator in a reference cycle: freed by the collector, after its queues
    next(cyclic)
    cyclic.itself = cyclic
    workers = list(cyclic._workers)
    del cyclic
    gc.collect()
    for w in workers:
        w.join(timeout=5)
    assert not any(w.is_alive() for w in workers)


def test_numformers_kernel_threads_are_safe_in_a_forked_worker():
    """The parent runs numformer's kernels on two threads; a forked worker (which has none of
    them) runs its kernels serially instead of waiting on threads that do not exist."""

    class Products(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            a = nf.ones(256, 256)
            return float((a @ a).sum().item()) + i, nf.get_num_threads()

    nf.set_num_threads(2)
    batches = list(_loader(Products(), batch_size=1, num_workers=2, timeout=20))
    assert [b[0].tolist() for b in batches] == [[256.0**3], [256.0**3 + 1]]
    assert [b[1].tolist() for b in batches] == [[1], [1]] and nf.get_num_threads() == 2


def test_workers_end_with_the_program():
    """A program that leaves a persistent loader's workers running mid-epoch exits promptly,
    and its workers with it."""
    script = textwrap.dedent(
        """
        import numpy as np
        from numformer.utils.data import DataLoader, TensorDataset

        loader = DataLoader(TensorDataset(np.zeros((50, 2))), batch_size=2, num_workers=2,
                            persistent_workers=True, multiprocessing_context="fork")
        it = iter(loader)
        next(it)
        print(*[w.pid for w in it._workers])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
