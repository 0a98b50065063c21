"""``DataLoader`` as PyTorch's ``torch.utils.data.dataloader``: batches of a dataset, read in
the calling process or by worker processes.

**Order.** A loader's batches come out in its sampler's order whatever the workers: batch ``k``
is sent to worker ``k mod num_workers`` (among those still running), up to ``prefetch_factor``
batches per worker ahead, and a batch that arrives early waits until those before it are out
(unless ``in_order=False``).

**Random state.** Each new iterator draws one ``base_seed`` from the loader's ``generator``
(numformer's global generator when None), with or without workers, as PyTorch does; then the
sampler draws as it does without workers (in the main process). So ``num_workers=2`` yields
exactly the batches ``num_workers=0`` yields and leaves the global generator in the same state.
Worker ``i`` is seeded from ``base_seed`` (see ``get_worker_info`` and the ``_worker`` module).
Persistent workers are seeded once, by their first iterator: a later epoch's iterator draws no
new ``base_seed`` (PyTorch's rule too).

**Processes.** Workers are started with ``multiprocessing_context`` (default: the platform's
default start method; "fork" on Linux before Python 3.14). With "fork" a worker starts at once
and shares the dataset's memory; with "spawn" or "forkserver" the dataset, ``collate_fn`` and
``worker_init_fn`` must be picklable (no lambdas) and each worker imports numformer (a second
or so). Batches travel back pickled (no shared memory). Workers end when the epoch ends (unless
``persistent_workers``), when the iterator is deleted, and at the program's end (they are
daemon processes, and each also exits when its parent is gone); an error in a worker is raised
in the main process, of the same type, naming the worker and with the worker's traceback.

Differences from PyTorch: ``pin_memory`` is accepted and does nothing (numformer's batches are
host arrays; nothing to pin on the CPU), ``pin_memory_device`` likewise. ``DataLoader.fetch``
(one batch from a list of indices, in this process) is numformer's hook for the ``Trainer``.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import math
import multiprocessing
import os
import pickle
import queue
import warnings

import numpy as np

from numformer.backend import rng_of
from numformer.tensor import Tensor
from numformer.utils.data._collate import default_collate, default_convert
from numformer.utils.data._random import draw_seed
from numformer.utils.data._worker import (
    STATUS_CHECK_INTERVAL,
    IterableDatasetStopIteration,
    ResumeIteration,
    WorkerError,
    get_worker_info,
    worker_loop,
)
from numformer.utils.data.dataset import IterableDataset, Subset, TensorDataset
from numformer.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]

_exiting = False  # set at interpreter exit: iterators then leave their workers to multiprocessing


@atexit.register
def _mark_exit() -> None:
    global _exiting
    _exiting = True


# --- fetching a batch ---------------------------------------------------------------------------


class _MapDatasetFetcher:
    """A batch of a map-style dataset: ``dataset.__getitems__(indices)`` when it has one, else
    ``[dataset[i] for i in indices]``, then ``collate_fn``; without auto-collation
    (``batch_size=None``) ``collate_fn(dataset[index])``.

    A speed-up that changes no batch: with ``default_collate``, a ``TensorDataset`` (or a
    ``Subset`` of one) is indexed once per tensor with the whole batch's indices, which gives
    what stacking its rows gives (the list of ``(B, *)`` tensors) without a Python loop."""

    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool) -> None:
        self.dataset, self.auto_collation = dataset, auto_collation
        self.collate_fn, self.drop_last = collate_fn, drop_last

    def fetch(self, indices):
        if not self.auto_collation:
            return self.collate_fn(self.dataset[indices])
        if self.collate_fn is default_collate:
            rows = _tensor_rows(self.dataset, indices)
            if rows is not None:
                return rows
        if callable(getattr(self.dataset, "__getitems__", None)):
            samples = self.dataset.__getitems__(indices)
        else:
            samples = [self.dataset[i] for i in indices]
        return self.collate_fn(samples)


def _tensor_rows(dataset, indices) -> list[Tensor] | None:
    """``default_collate`` of a ``TensorDataset``'s (or a ``Subset``'s of one) rows at
    ``indices`` by one index per tensor; None for any other dataset."""
    while type(dataset) is Subset:
        indices, dataset = [dataset.indices[i] for i in indices], dataset.dataset
    if type(dataset) is not TensorDataset or not indices:
        return None
    rows = np.asarray(indices, dtype=np.int64)
    return [t[rows] for t in dataset.tensors]


class _IterableDatasetFetcher:
    """A batch of an iterable dataset: the next ``len(indices)`` samples of its iterator (fewer
    at its end), then ``collate_fn``; ``StopIteration`` when none are left (or, with
    ``drop_last``, too few)."""

    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool) -> None:
        self.dataset_iter = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def fetch(self, indices):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.dataset_iter))
        samples = list(itertools.islice(self.dataset_iter, len(indices)))
        self.ended = len(samples) < len(indices)
        if not samples or (self.drop_last and self.ended):
            raise StopIteration
        return self.collate_fn(samples)


def _make_fetcher(iterable: bool, auto_collation: bool, collate_fn, drop_last: bool, dataset):
    kind = _IterableDatasetFetcher if iterable else _MapDatasetFetcher
    return kind(dataset, auto_collation, collate_fn, drop_last)


class _InfiniteConstantSampler(Sampler):
    """None forever: the sampler of an iterable dataset (the batch size still counts)."""

    def __iter__(self):
        while True:
            yield None


# --- the loader -----------------------------------------------------------------------------------


def _worker_options(num_workers: int, timeout: float, prefetch_factor, persistent_workers: bool):
    """The worker options checked as PyTorch checks them (its messages); the prefetch factor to use."""
    if num_workers < 0:
        raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
    if timeout < 0:
        raise ValueError("timeout option should be non-negative")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError(
            "prefetch_factor option could only be specified in multiprocessing. Let num_workers > 0 to "
            "enable multiprocessing, otherwise set prefetch_factor to None."
        )
    if num_workers > 0 and prefetch_factor is None:
        prefetch_factor = 2
    elif prefetch_factor is not None and prefetch_factor < 0:
        raise ValueError("prefetch_factor option should be non-negative")
    if persistent_workers and num_workers == 0:
        raise ValueError("persistent_workers option needs num_workers > 0")
    return prefetch_factor


def _check_dataset_options(dataset, iterable: bool, shuffle, sampler, batch_sampler) -> bool | None:
    """An iterable dataset takes no shuffle, sampler or batch sampler; a map-style one needs
    ``__getitem__``. Returns ``shuffle`` (a bool for a map-style dataset)."""
    if iterable:
        if shuffle not in (False, None):
            raise ValueError(
                f"DataLoader with IterableDataset: expected unspecified shuffle option, but got shuffle={shuffle}"
            )
        if sampler is not None:
            raise ValueError(
                f"DataLoader with IterableDataset: expected unspecified sampler option, but got sampler={sampler}"
            )
        if batch_sampler is not None:
            raise ValueError(
                "DataLoader with IterableDataset: expected unspecified batch_sampler option, but got "
                f"batch_sampler={batch_sampler}"
            )
        return shuffle
    if not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"DataLoader: dataset must be map-style (__getitem__) or an IterableDataset, got {type(dataset).__name__}"
        )
    return bool(shuffle)


class DataLoader:
    """Batches of a dataset, as PyTorch's ``DataLoader``: ``for x, y in DataLoader(ds, 32,
    shuffle=True, num_workers=2): ...``. See the module's docstring for the order, the random
    state and the worker processes.

    Args:
        dataset: a map-style ``Dataset`` (``__getitem__``) or an ``IterableDataset``.
        batch_size: samples per batch; None turns batching off (``collate_fn`` then converts
            each sample: ``default_convert``).
        shuffle: a new random order each epoch (``RandomSampler`` on ``generator``); map-style only.
        sampler: the order of the indices (excludes ``shuffle``).
        batch_sampler: yields lists of indices (excludes ``batch_size``, ``shuffle``,
            ``sampler`` and ``drop_last``).
        num_workers: worker processes; 0 loads in the calling process.
        collate_fn: ``list of samples -> batch`` (default ``default_collate``).
        pin_memory: accepted; does nothing (no pinned memory on the CPU).
        drop_last: drop a last batch shorter than ``batch_size``.
        timeout: seconds to wait for a worker's batch before ``RuntimeError`` (0: forever);
            only with workers.
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker, after seeding.
        multiprocessing_context: a start method's name ("fork", "spawn", "forkserver") or a
            ``multiprocessing`` context; only with workers.
        generator: draws each iterator's ``base_seed`` and, with ``shuffle``, the order: a
            ``numformer.Generator`` (or a ``numpy.random.Generator``); None: numformer's global one.
        prefetch_factor: batches loaded ahead per worker (default 2 with workers; only with workers).
        persistent_workers: keep the workers (and their dataset copies) from epoch to epoch.
        pin_memory_device: accepted; does nothing.
        in_order: yield batches in the sampler's order (False: as they arrive).

    Raises:
        ValueError: negative ``num_workers``, ``timeout`` or ``prefetch_factor``; options that
        exclude each other (as PyTorch's messages say); a bad ``batch_size``.
        TypeError: a dataset without ``__getitem__`` that is no ``IterableDataset``, or a
        ``generator`` of another kind.
    """

    _initialized = False

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler=None,
        batch_sampler=None,
        num_workers: int = 0,
        collate_fn=None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn=None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        prefetch_factor = _worker_options(num_workers, timeout, prefetch_factor, persistent_workers)
        if generator is not None:
            rng_of(generator)  # a TypeError now, not at the first batch
        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order

        self._iterable = isinstance(dataset, IterableDataset)
        shuffle = _check_dataset_options(dataset, self._iterable, shuffle, sampler, batch_sampler)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers
        self._IterableDataset_len_called = None
        self._iterator = None
        self._initialized = True
        self.check_worker_number_rationality()

    @property
    def multiprocessing_context(self):
        return self._multiprocessing_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, context) -> None:
        if context is not None:
            if self.num_workers == 0:
                raise ValueError(
                    "multiprocessing_context can only be used with multi-process loading (num_workers > 0), "
                    f"but got num_workers={self.num_workers}"
                )
            if isinstance(context, str):
                methods = multiprocessing.get_all_start_methods()
                if context not in methods:
                    raise ValueError(
                        f"multiprocessing_context option should specify a valid start method in {methods!r}, "
                        f"but got multiprocessing_context={context!r}"
                    )
                context = multiprocessing.get_context(context)
            if not isinstance(context, multiprocessing.context.BaseContext):
                raise TypeError(
                    "multiprocessing_context option should be a valid context object or a string specifying "
                    f"the start method, but got multiprocessing_context={context}"
                )
        self._multiprocessing_context = context

    def __setattr__(self, name, value) -> None:
        frozen = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")
        if self._initialized and name in frozen:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def _fetcher_factory(self):
        """A picklable ``dataset -> fetcher`` for this loader's settings (a worker makes its own)."""
        return functools.partial(_make_fetcher, self._iterable, self._auto_collation, self.collate_fn, self.drop_last)

    def fetch(self, indices):
        """numformer's: the batch at ``indices`` (a list of dataset indices; with
        ``batch_size=None``, one index), made in this process as iteration makes it (the
        ``Trainer`` draws its own order and asks for batches by index).

        Raises:
            TypeError: an ``IterableDataset`` (it has no indices)."""
        if self._iterable:
            raise TypeError("DataLoader.fetch: an IterableDataset has no indices to fetch")
        return self._fetcher_factory()(self.dataset).fetch(indices)

    def _get_iterator(self):
        if self.num_workers == 0:
            return _SingleProcessDataLoaderIter(self)
        self.check_worker_number_rationality()
        return _MultiProcessingDataLoaderIter(self)

    def __iter__(self):
        """A new iterator over one epoch (with persistent workers, the one iterator, reset)."""
        if self.persistent_workers and self.num_workers > 0:
            if self._iterator is None:
                self._iterator = self._get_iterator()
            else:
                self._iterator._reset(self)
            return self._iterator
        return self._get_iterator()

    def __len__(self) -> int:
        if self._iterable:
            length = self._IterableDataset_len_called = len(self.dataset)
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)

    def check_worker_number_rationality(self) -> None:
        """Warn when there are more workers than cores this process may use."""
        if not self.num_workers:
            return
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count()
        if cores is not None and self.num_workers > cores:
            warnings.warn(
                f"This DataLoader will create {self.num_workers} worker processes in total. Our suggested max "
                f"number of worker in current system is {cores}, which is smaller than what this DataLoader is "
                "going to create. Please be aware that excessive worker creation might get DataLoader running "
                "slow or even freeze, lower the worker number to avoid potential slowness/freeze if necessary.",
                stacklevel=2,
            )


# --- iterators ------------------------------------------------------------------------------------


class _BaseDataLoaderIter:
    """One epoch's iterator: the index sampler's iterator and this iterator's ``base_seed``."""

    def __init__(self, loader: DataLoader) -> None:
        self._dataset = loader.dataset
        self._iterable = loader._iterable
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._num_workers = loader.num_workers
        self._timeout = loader.timeout
        self._collate_fn = loader.collate_fn
        self._make_fetcher = loader._fetcher_factory()
        self._IterableDataset_len_called = loader._IterableDataset_len_called
        self._sampler_iter = iter(self._index_sampler)
        self._base_seed = draw_seed(loader.generator)
        self._persistent_workers = loader.persistent_workers
        self._num_yielded = 0

    def __iter__(self):
        return self

    def _reset(self, loader: DataLoader, first_iter: bool = False) -> None:
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0
        self._IterableDataset_len_called = loader._IterableDataset_len_called

    def _next_index(self):
        return next(self._sampler_iter)  # may raise StopIteration

    def _next_data(self):
        raise NotImplementedError

    def __next__(self):
        data = self._next_data()
        self._num_yielded += 1
        if self._iterable and self._IterableDataset_len_called is not None:
            if self._num_yielded > self._IterableDataset_len_called:
                warnings.warn(
                    f"Length of IterableDataset {self._dataset} was reported to be "
                    f"{self._IterableDataset_len_called} (when accessing len(dataloader)), but "
                    f"{self._num_yielded} samples have been fetched. With workers, each worker must read its "
                    "own share of the stream (get_worker_info).",
                    stacklevel=2,
                )
        return data

    def __len__(self) -> int:
        return len(self._index_sampler)

    def __getstate__(self):
        raise NotImplementedError(f"{type(self).__name__} cannot be pickled")


class _SingleProcessDataLoaderIter(_BaseDataLoaderIter):
    """Batches made in the calling process."""

    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        if self._timeout != 0:
            raise AssertionError("DataLoader: timeout applies to worker processes only (num_workers > 0)")
        self._fetcher = self._make_fetcher(self._dataset)

    def _next_data(self):
        return self._fetcher.fetch(self._next_index())  # either may raise StopIteration


class _MultiProcessingDataLoaderIter(_BaseDataLoaderIter):
    """Batches made by ``num_workers`` worker processes, handed out in order.

    Task ``k`` (the ``k``-th batch of indices) goes to the next running worker in turn;
    ``_task_info[k]`` is ``(worker,)`` while it is out and ``(worker, batch)`` once it came back
    early; at most ``prefetch_factor * num_workers`` tasks are out at once."""

    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._prefetch_factor = loader.prefetch_factor
        self._in_order = loader.in_order
        self._shutdown = False
        self._workers: list = []
        self._index_queues: list = []
        context = loader.multiprocessing_context or multiprocessing.get_context()
        self._worker_result_queue = context.Queue()
        self._workers_done_event = context.Event()
        try:
            for i in range(self._num_workers):
                index_queue = context.Queue()
                index_queue.cancel_join_thread()  # never block the program's exit on an unread queue
                worker = context.Process(
                    target=worker_loop,
                    args=(
                        self._iterable,
                        self._make_fetcher,
                        self._dataset,
                        index_queue,
                        self._worker_result_queue,
                        self._workers_done_event,
                        self._base_seed,
                        loader.worker_init_fn,
                        i,
                        self._num_workers,
                    ),
                    daemon=True,
                )
                worker.start()
                self._index_queues.append(index_queue)
                self._workers.append(worker)
        except BaseException:
            self._shutdown_workers()
            raise
        self._reset(loader, first_iter=True)

    def _reset(self, loader: DataLoader, first_iter: bool = False) -> None:
        super()._reset(loader, first_iter)
        self._send_idx = 0  # the next task to send
        self._rcvd_idx = 0  # the next task to yield
        self._task_info: dict = {}
        self._tasks_outstanding = 0
        self._workers_status = [True] * self._num_workers
        self._workers_num_tasks = [0] * self._num_workers
        self._worker_queue_idx_cycle = itertools.cycle(range(self._num_workers))
        if not first_iter:  # persistent workers: a new epoch; what is left of the last is dropped
            for index_queue in self._index_queues:
                index_queue.put(ResumeIteration())
            waiting = self._num_workers
            while waiting > 0:
                task, _ = self._get_data()
                if isinstance(task, ResumeIteration):
                    waiting -= 1
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _try_get_data(self, timeout: float = STATUS_CHECK_INTERVAL):
        try:
            return True, self._worker_result_queue.get(timeout=timeout)
        except queue.Empty:
            failed = [w for i, w in enumerate(self._workers) if self._workers_status[i] and not w.is_alive()]
            if failed:
                for i, w in enumerate(self._workers):
                    if w in failed:
                        self._mark_worker_as_unavailable(i)
                pids = ", ".join(str(w.pid) for w in failed)
                raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly") from None
            return False, None

    def _get_data(self):
        if self._timeout > 0:
            ok, data = self._try_get_data(self._timeout)
            if not ok:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")
            return data
        while True:
            ok, data = self._try_get_data()
            if ok:
                return data

    def _next_data(self):
        while True:
            # skip the tasks of workers that ended (an exhausted iterable dataset's)
            while self._rcvd_idx < self._send_idx:
                info = self._task_info.get(self._rcvd_idx)
                if info and (len(info) == 2 or self._workers_status[info[0]]):
                    break
                self._task_info.pop(self._rcvd_idx, None)
                self._rcvd_idx += 1
            else:
                if not self._persistent_workers:
                    self._shutdown_workers()
                raise StopIteration
            if len(self._task_info[self._rcvd_idx]) == 2:  # it came back early
                worker_id, data = self._task_info.pop(self._rcvd_idx)
                self._rcvd_idx += 1
                return self._process_data(data, worker_id)
            task, payload = self._get_data()
            self._tasks_outstanding -= 1
            data = pickle.loads(payload)
            if isinstance(data, IterableDatasetStopIteration):
                if self._persistent_workers:
                    self._workers_status[data.worker_id] = False
                else:
                    self._mark_worker_as_unavailable(data.worker_id)
                self._try_put_index()
                continue
            if task != self._rcvd_idx:
                if not self._in_order:
                    worker_id = self._task_info.pop(task)[0]
                    return self._process_data(data, worker_id)
                self._task_info[task] += (data,)
            else:
                worker_id = self._task_info.pop(task)[0]
                self._rcvd_idx += 1
                return self._process_data(data, worker_id)

    def _try_put_index(self) -> None:
        try:
            indices = self._next_index()
        except StopIteration:
            return
        limit = self._prefetch_factor * self._num_workers
        for _ in range(self._num_workers):  # the next running worker in turn
            worker_id = next(self._worker_queue_idx_cycle)
            if self._workers_status[worker_id] and (
                self._in_order or self._workers_num_tasks[worker_id] < limit // sum(self._workers_status)
            ):
                break
        else:
            return
        self._index_queues[worker_id].put((self._send_idx, indices))
        self._task_info[self._send_idx] = (worker_id,)
        self._workers_num_tasks[worker_id] += 1
        self._tasks_outstanding += 1
        self._send_idx += 1

    def _process_data(self, data, worker_id: int):
        self._workers_num_tasks[worker_id] -= 1
        self._try_put_index()
        if isinstance(data, WorkerError):
            data.reraise()
        return data

    def _mark_worker_as_unavailable(self, worker_id: int) -> None:
        """Tell worker ``worker_id`` to exit (it finishes nothing more)."""
        self._index_queues[worker_id].put(None)
        self._workers_status[worker_id] = False

    def _shutdown_workers(self) -> None:
        """End every worker: signal, wait up to a status interval, then terminate. Idempotent."""
        if _exiting or self._shutdown:
            return
        self._shutdown = True
        try:
            self._workers_done_event.set()
            for index_queue in self._index_queues:
                index_queue.put(None)
            for worker in self._workers:
                worker.join(timeout=STATUS_CHECK_INTERVAL)
            for index_queue in self._index_queues:
                index_queue.cancel_join_thread()
                index_queue.close()
        finally:
            for worker in self._workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join(timeout=STATUS_CHECK_INTERVAL)

    def __del__(self) -> None:
        if hasattr(self, "_workers"):
            self._shutdown_workers()
