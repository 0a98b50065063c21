"""The worker process of a ``DataLoader`` with ``num_workers > 0``: its seeding, its loop, and
how its errors travel to the main process (PyTorch's ``torch.utils.data._utils.worker``).

A worker is seeded as PyTorch seeds one, from the iterator's ``base_seed``: numformer's global
generator and Python's ``random`` with ``base_seed + worker_id``, NumPy's legacy global
generator (``np.random``) with the four words of ``SeedSequence([worker_id, base_seed mod 2^32,
base_seed >> 32, 0])`` (PyTorch's own hash, which is NumPy's ``SeedSequence``). It runs
numformer's kernels on its own thread with BLAS on one thread (PyTorch's workers call
``torch.set_num_threads(1)``); this also leaves behind the kernel threads of the process it was
forked from, which do not exist in the child.

Each batch is pickled in the worker before it is queued, so a batch that cannot be pickled is
an error in the main process (naming the worker) rather than a lost message and a hang.
"""

from __future__ import annotations

import os
import pickle
import queue
import random
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from numformer.backend import manual_seed
from numformer.ops._threads import set_num_threads

# How often (seconds) a worker checks that its parent lives, and the main process that its
# workers do: the longest a dead process goes unnoticed.
STATUS_CHECK_INTERVAL = 1.0

_worker_info: WorkerInfo | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows of itself (``get_worker_info()`` inside it).

    Args:
        id: the worker's index, in ``[0, num_workers)``.
        num_workers: the loader's worker count.
        seed: the seed of numformer's generator in this worker (``base_seed + id``).
        dataset: this worker's copy of the dataset.
    """

    id: int
    num_workers: int
    seed: int
    dataset: object


def get_worker_info() -> WorkerInfo | None:
    """This worker's ``WorkerInfo`` inside a ``DataLoader`` worker process; None in the main
    process. An ``IterableDataset`` uses it to read its share of the stream in ``__iter__``,
    a ``worker_init_fn`` to configure ``info.dataset``."""
    return _worker_info


@dataclass(frozen=True)
class ResumeIteration:
    """The main process's signal to a persistent worker that a new epoch begins."""


@dataclass(frozen=True)
class IterableDatasetStopIteration:
    """A worker's signal that its copy of an iterable dataset is exhausted."""

    worker_id: int


class _KeyErrorMessage(str):
    """A KeyError's message shown as written (KeyError quotes its argument's repr)."""

    def __repr__(self) -> str:
        return self


class WorkerError:
    """An exception raised in a worker, carried to the main process and raised there again
    (PyTorch's ``ExceptionWrapper``): same type, the worker's traceback in its message."""

    def __init__(self, where: str) -> None:
        kind, value, _ = sys.exc_info()
        self.exc_type = kind if _picklable(kind) else RuntimeError
        self.exc_msg = "".join(traceback.format_exception(kind, value, value.__traceback__))
        self.where = where

    def reraise(self):
        message = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            message = _KeyErrorMessage(message)
        try:
            error = self.exc_type(message)
        except Exception:  # noqa: BLE001 - an exception type whose constructor wants more arguments
            error = RuntimeError(message)
        try:
            raise error
        finally:
            del error  # no cycle (frame -> error -> traceback -> frame): the iterator is freed with the error


def _picklable(value) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - whatever pickling raises, the answer is no
        return False
    return True


def numpy_seed(base_seed: int, worker_id: int) -> list[int]:
    """The four 32-bit words that seed NumPy's legacy global generator in worker ``worker_id``
    (PyTorch's ``_generate_state``, which is NumPy's ``SeedSequence``)."""
    words = [worker_id, base_seed & 0xFFFFFFFF, base_seed >> 32, 0]
    return np.random.SeedSequence(words).generate_state(4).tolist()


def worker_loop(
    iterable: bool,
    make_fetcher,
    dataset,
    index_queue,
    data_queue,
    done_event,
    base_seed: int,
    init_fn,
    worker_id: int,
    num_workers: int,
) -> None:
    """A worker's life: seed, run ``init_fn(worker_id)``, then fetch the batches whose indices
    arrive on ``index_queue`` (``(task, indices)``) and queue ``(task, pickled batch)`` until
    ``None`` arrives or the parent dies. A ``ResumeIteration`` starts a new epoch (a fresh
    fetcher, so an iterable dataset is iterated anew). The end of an ``iterable`` dataset
    (``StopIteration``) is reported once; further indices of that epoch are ignored."""
    global _worker_info
    try:
        set_num_threads(1)  # BLAS's threads too
        seed = base_seed + worker_id
        random.seed(seed)
        manual_seed(seed)
        np.random.seed(numpy_seed(base_seed, worker_id))  # noqa: NPY002 - the legacy global, as PyTorch seeds it
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
        where = f"in DataLoader worker process {worker_id}"
        init_error = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make_fetcher(dataset)
        except Exception:  # noqa: BLE001 - raised in the main process at the first batch
            init_error = WorkerError(where)
        exhausted = False
        parent = os.getppid()
        while os.getppid() == parent:
            try:
                message = index_queue.get(timeout=STATUS_CHECK_INTERVAL)
            except queue.Empty:
                if done_event.is_set():  # the iterator is gone, its None perhaps lost with its queue
                    break
                continue
            if isinstance(message, ResumeIteration):
                data_queue.put((message, None))
                exhausted = False
                if init_error is None:
                    fetcher = make_fetcher(dataset)
                continue
            if message is None:
                break
            if done_event.is_set() or exhausted:
                continue
            task, indices = message
            if init_error is not None:
                data, init_error = init_error, None
            else:
                try:
                    data = fetcher.fetch(indices)
                except Exception as err:  # noqa: BLE001 - carried to the main process
                    if iterable and isinstance(err, StopIteration):
                        data, exhausted = IterableDatasetStopIteration(worker_id), True
                    else:
                        data = WorkerError(where)
            try:
                payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - a batch that cannot travel is the batch's error
                payload = pickle.dumps(WorkerError(f"{where} (pickling its batch)"))
            data_queue.put((task, payload))
            del data, payload, message
    except KeyboardInterrupt:
        pass
    if done_event.is_set():
        data_queue.cancel_join_thread()
        data_queue.close()
