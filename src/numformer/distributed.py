"""Data-parallel training across processes and machines on MPI (through ``mpi4py``), the way
Horovod and most HPC training run: every rank holds the whole model, takes its shard of each
global batch, and the gradients are averaged with ``Allreduce`` before the optimiser steps, so
every rank takes the same step and the weights stay identical.

Launch any training under ``mpiexec``: ``mpiexec -n 4 numformer train ...``. ``world()`` reads
the rank and size from the MPI environment (outside ``mpiexec`` it is a one-process world and
mpi4py is never imported); the ``Trainer`` shards batches, averages gradients and losses, and
lets rank 0 alone write checkpoints, metrics and the progress bar.

- Gradients travel in buckets of at most ``bucket_bytes`` (25 MiB, PyTorch DDP's default; the
  first 1 MiB): each bucket is one contiguous buffer of one dtype, one ``Iallreduce`` (sum) in
  place started as soon as backward has completed its gradients (``GradientReducer``, as
  DDP), then / size; a parameter no rank has a gradient for keeps None.
- Initial weights are broadcast from rank 0, so ranks agree even if their seeds did not.
- A global batch of B rows gives rank r rows ``[r B/N, (r+1) B/N)``; B must divide by N.
  Every rank draws the same global batch from the same generator, so a run's data does not
  depend on N: K steps on N ranks equal K steps in one process, and a run started on N ranks
  resumes on M.
- An error on one rank ends every rank (``abort``), never a hang in a collective.

MPI comes from the ``distributed`` extra (``mpi4py`` and the ``mpich`` wheel, whose
``mpiexec`` lands in the virtual environment's ``bin``). To use a cluster's own MPI instead,
build mpi4py against it: ``MPICC=$(which mpicc) pip install --no-binary=mpi4py mpi4py`` and
launch with that MPI's ``mpiexec`` (or ``srun``).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from numformer.backend import device_of, to_device, to_numpy

BUCKET_BYTES = 25 * 2**20
_MPI_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")


class World:
    """The processes of one job: ``rank`` in ``[0, size)``; rank 0 is the main one.

    Args:
        comm: an mpi4py communicator, or None for a single process.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def allreduce_sum_(self, buffer: np.ndarray) -> np.ndarray:
        """Sum a contiguous array over the ranks, in place."""
        if self.size > 1:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        return buffer

    def iallreduce_sum_(self, buffer: np.ndarray):
        """Start summing a contiguous array over the ranks in place (``Iallreduce``); returns
        the request to wait on (None in a one-process world). Every rank must start the same
        collectives in the same order."""
        if self.size == 1:
            return None
        from mpi4py import MPI

        return self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)

    def progress(self, requests: list) -> None:
        """Let MPI move the collectives of ``requests`` on (``Testall``; without a progress
        thread, nonblocking collectives move only inside MPI calls)."""
        if requests:
            from mpi4py import MPI

            MPI.Request.Testall(requests)

    def mean(self, value: float) -> float:
        """The mean of a number over the ranks."""
        if self.size == 1:
            return float(value)
        return float(self.allreduce_sum_(np.array([value], dtype=np.float64))[0]) / self.size

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        if self.size == 1:
            return bool(flag)
        return self.mean(float(bool(flag))) > 0

    def broadcast_array_(self, array: np.ndarray) -> np.ndarray:
        """Rank 0's values of a contiguous array, in place on every rank."""
        if self.size > 1:
            self.comm.Bcast(array, root=0)
        return array

    def broadcast_json(self, value, root: int = 0):
        """Rank ``root``'s JSON-able ``value`` on every rank (sent as UTF-8 bytes; no pickle)."""
        if self.size == 1:
            return value
        mine = self.rank == root
        data = json.dumps(value).encode() if mine else b""
        n = np.array([len(data)], dtype=np.int64)
        self.comm.Bcast(n, root=root)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if mine else np.empty(int(n[0]), dtype=np.uint8)
        self.comm.Bcast(buf, root=root)
        return json.loads(buf.tobytes().decode())

    def broadcast_arrays(self, arrays: dict | None) -> dict:
        """Rank 0's ``{name: array}`` on every rank (the others pass None): the names, dtypes
        and shapes as JSON, then one ``Bcast`` per array.

        Args:
            arrays: on rank 0, host arrays of any shape and a NumPy dtype; ignored elsewhere.

        Returns:
            A dict of new contiguous arrays (rank 0: its own, made contiguous), in rank 0's order.
        """
        if self.size == 1:
            return dict(arrays)
        if self.is_main:
            arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
            header = [[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()]
        header = self.broadcast_json(header if self.is_main else None)
        out = {}
        for name, dtype, shape in header:
            buf = arrays[name] if self.is_main else np.empty(shape, dtype=np.dtype(dtype))
            if buf.size:
                self.comm.Bcast(buf.reshape(-1).view(np.uint8), root=0)
            out[name] = buf
        return out

    def on_main(self, fn, errors: tuple = ()):
        """``fn()`` called on rank 0 alone and its JSON-able result returned on every rank: for
        what only rank 0's disk holds (a run folder on a machine of its own).

        Args:
            fn: a function of no arguments.
            errors: exception classes that, raised by ``fn`` on rank 0, are raised on every rank
                (the same class and message), so no rank waits for a result that never comes.

        Returns:
            What ``fn`` returned on rank 0.

        Raises:
            Exception: the error of a class in ``errors`` that ``fn`` raised on rank 0.
        """
        if self.size == 1:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except errors as err:
                kind = next(i for i, cls in enumerate(errors) if isinstance(err, cls))
                self.broadcast_json([None, [kind, str(err)]])
                raise
        result, error = self.broadcast_json([result, error] if self.is_main else None)
        if error is not None:
            raise errors[error[0]](error[1])
        return result

    def min_int(self, value: int) -> int:
        """The smallest of an integer over the ranks."""
        if self.size == 1:
            return int(value)
        from mpi4py import MPI

        buf = np.array([value], dtype=np.int64)
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MIN)
        return int(buf[0])

    def gather_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Every rank's rows (a contiguous 2-D array, equal trailing size), stacked in rank order
        on rank 0 (None on the others)."""
        if self.size == 1:
            return rows
        rows = np.ascontiguousarray(rows)
        counts = np.zeros(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([rows.shape[0]], dtype=np.int64), counts)
        out = np.empty((int(counts.sum()),) + rows.shape[1:], dtype=rows.dtype) if self.is_main else None
        per_row = int(np.prod(rows.shape[1:]))
        sizes = (counts * per_row).tolist()
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        from mpi4py import MPI

        kind = MPI._typedict[rows.dtype.char]
        self.comm.Gatherv(rows, [out, sizes, offsets, kind] if self.is_main else None, root=0)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (after an error on this one)."""
        if self.size > 1:
            import time

            sys.stdout.flush()
            sys.stderr.flush()
            # the launcher forwards each rank's output from a pipe, and Abort tears the job down
            # at once: a moment first, or the error line just written may never reach the user
            time.sleep(0.3)
            self.comm.Abort(code)

    def local_size(self) -> int:
        """Ranks on this machine (they share its cores)."""
        if self.size == 1:
            return 1
        from mpi4py import MPI

        return self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()


_WORLD: World | None = None


def world() -> World:
    """This job's ``World``: from MPI when launched by ``mpiexec`` (and ``mpi4py`` is there),
    else one process. The first call under MPI also divides this machine's cores among its
    ranks for numformer's kernels and NumPy's BLAS, unless ``NUMFORMER_NUM_THREADS`` says
    otherwise.

    Raises:
        ImportError: launched by mpiexec with more than one rank but mpi4py is missing."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    if not any(k in os.environ for k in _MPI_ENV):
        _WORLD = World()
        return _WORLD
    try:
        from mpi4py import MPI
    except ImportError:
        size = int(os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 1)
        if size > 1:
            raise ImportError(
                "launched by mpiexec, but mpi4py is missing: pip install 'numformer[distributed]'"
            ) from None
        _WORLD = World()
        return _WORLD
    _WORLD = World(MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None)
    if _WORLD.size > 1 and not os.environ.get("NUMFORMER_NUM_THREADS", "").strip():
        from numformer.ops._threads import default_num_threads, set_num_threads

        set_num_threads(max(1, default_num_threads() // _WORLD.local_size()))  # BLAS's threads too
    return _WORLD


_this_world = world


def broadcast_parameters(module, world: World) -> None:
    """Rank 0's parameters and buffers on every rank (identical initial weights).

    Args:
        module: the model, on every rank.
        world: the job's ``World``."""
    if world.size == 1:
        return
    for value in module.state_dict().values():
        array = value.array
        host = np.ascontiguousarray(to_numpy(array))  # MPI sends host memory
        world.broadcast_array_(host)
        array[...] = to_device(host, device_of(array))


class GradientReducer:
    """Averages gradients over the ranks while the backward pass runs, as PyTorch DDP's
    reducer: the parameters are bucketed in the order backward completes their gradients (the
    first bucket ``first_bucket_bytes``, the rest ``bucket_bytes``), and a bucket's
    ``Iallreduce`` starts as soon as its last gradient is accumulated
    (``Tensor.register_post_accumulate_grad_hook``), so the network works while earlier layers'
    gradients are computed. The first reduced backward uses the reverse of the parameters'
    order and records the order the gradients really complete in (a positional embedding
    registered last completes last); rank 0's record, broadcast, orders the buckets from then
    on (DDP's bucket rebuilding). Buckets start strictly in order, so every rank issues the
    same collectives in the same order whatever its timing; ``finish`` starts those not yet
    started (a parameter without a gradient contributes zeros), waits, and writes the means
    back.

    Use: ``arm()`` before the backward whose gradients to reduce (the last micro-batch's),
    ``finish()`` after it, before any other collective.

    Args:
        parameters: the model (a ``Module``: its parameters are read again at each ``arm``, so
            one unfrozen or replaced later is averaged too) or a fixed list of parameters, in
            the same order on every rank.
        world: the job's ``World``.
        bucket_bytes: the most bytes in one collective (25 MiB, as PyTorch's DDP).
        first_bucket_bytes: the first bucket's size (1 MiB, as PyTorch's DDP), small so that
            communication starts early.

    Source: Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel
    Training", VLDB 2020 (gradient bucketing, overlap, bucket order from the first iteration).
    """

    def __init__(self, parameters, world: World, bucket_bytes: int = BUCKET_BYTES, first_bucket_bytes: int = 2**20):
        self.world = world
        self.bucket_bytes, self.first_bucket_bytes = bucket_bytes, first_bucket_bytes
        self._module = parameters if callable(getattr(parameters, "parameters", None)) else None
        self._handles: list = []
        self._track(list(parameters.parameters() if self._module is not None else parameters))
        self._armed = False
        self._waiting: list = []
        self._started: list = []  # (buffer, request), in bucket order

    def _track(self, parameters: list) -> None:
        """Hook and bucket ``parameters`` (those requiring grad), in reverse order until the next
        finish records the order their gradients complete in."""
        self.remove()
        self._params = [p for p in parameters if p.requires_grad]
        self._index = {id(p): i for i, p in enumerate(self._params)}
        self._bucket(range(len(self._params))[::-1])
        if self.world.size > 1:
            self._handles = [p.register_post_accumulate_grad_hook(self._ready) for p in self._params]
        self._completed: list | None = []  # the order of the next reduced backward; None once used

    def _bucket(self, order) -> None:
        self.buckets = gradient_buckets([self._params[i] for i in order], self.bucket_bytes, self.first_bucket_bytes)
        self._bucket_of = {id(p): k for k, bucket in enumerate(self.buckets) for p in bucket}

    def arm(self) -> None:
        """Reduce the next backward's gradients as they complete. Given a module, its
        parameters are read again first: one unfrozen or replaced since is hooked and bucketed
        (every rank's same code sees the same change at the same step)."""
        if self._module is not None:
            now = [p for p in self._module.parameters() if p.requires_grad]
            if [id(p) for p in now] != [id(p) for p in self._params]:
                self._track(now)
        self._armed = True
        self._waiting = [len(bucket) for bucket in self.buckets]
        self._started = []

    def _ready(self, param) -> None:
        k = self._bucket_of.get(id(param))
        if not self._armed or k is None:
            return
        if self._completed is not None:
            self._completed.append(self._index[id(param)])
        self._waiting[k] -= 1
        self._start(everything=False)
        if self._started:  # let MPI progress the collectives under way (no progress thread)
            self.world.progress([request for _, request in self._started])

    def _start(self, everything: bool) -> None:
        while len(self._started) < len(self.buckets):
            k = len(self._started)
            if not everything and self._waiting[k] > 0:
                return
            buffer = _pack(self.buckets[k])
            self._started.append((buffer, self.world.iallreduce_sum_(buffer)))

    def finish(self) -> int:
        """Start the buckets not started, wait for all, and write each mean back to its
        parameter's ``.grad``; after the first reduced backward, order the buckets as rank 0's
        gradients completed.

        Returns:
            The bytes reduced (this rank's share of the traffic)."""
        if self.world.size == 1:
            return 0
        if not self._armed:
            self.arm()
        self._start(everything=True)
        self._armed = False
        reduced = 0
        for bucket, (buffer, request) in zip(self.buckets, self._started):
            request.Wait()
            reduced += _unpack(bucket, buffer, self.world.size)
        self._started = []
        if self._completed is not None:  # the first finish, on every rank
            seen = set(self._completed)
            order = self._completed + [i for i in range(len(self._params))[::-1] if i not in seen]
            self._bucket(self.world.broadcast_json(order))
            self._completed = None
        return reduced

    def remove(self) -> None:
        """Unregister the hooks from the parameters."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def gradient_buckets(parameters, bucket_bytes: int = BUCKET_BYTES, first_bucket_bytes: int | None = None) -> list[list]:
    """The buckets gradients are reduced in: for each dtype in turn, consecutive parameters of
    that dtype up to ``bucket_bytes`` together (a larger one alone).

    Args:
        parameters: parameters (tensors), in the order to reduce them.
        bucket_bytes: the most bytes a bucket holds, unless one parameter is larger.
        first_bucket_bytes: the first bucket's limit, if other than ``bucket_bytes``.

    Returns:
        Lists of parameters, one per collective.
    """
    params = list(parameters)
    buckets: list = []
    for dtype in sorted({np.dtype(p.array.dtype).str for p in params}):  # one buffer dtype per bucket
        bucket: list = []
        size = 0
        for p in [p for p in params if np.dtype(p.array.dtype).str == dtype]:
            nbytes = p.array.size * p.array.dtype.itemsize
            limit = first_bucket_bytes if first_bucket_bytes is not None and not buckets else bucket_bytes
            if bucket and size + nbytes > limit:
                buckets.append(bucket)
                bucket, size = [], 0
            bucket.append(p)
            size += nbytes
        if bucket:
            buckets.append(bucket)
    return buckets


def _pack(bucket) -> np.ndarray:
    """One contiguous host buffer: the bucket's gradients (zeros where None), then one flag per
    parameter (1 where this rank has a gradient), so the sum also says which have one anywhere."""
    buffer = np.empty(sum(p.array.size for p in bucket) + len(bucket), dtype=bucket[0].array.dtype)
    at = 0
    for p in bucket:
        n = p.array.size
        buffer[at : at + n] = 0.0 if p.grad is None else to_numpy(p.grad.array).ravel()
        at += n
    buffer[at:] = [p.grad is not None for p in bucket]
    return buffer


def _unpack(bucket, buffer: np.ndarray, size: int) -> int:
    """The summed buffer over ``size`` written back to each gradient on its own device (a
    parameter no rank had a gradient for keeps None, so the optimiser skips it as in one
    process). Returns the gradient bytes."""
    flags = buffer[buffer.size - len(bucket) :]
    grads = buffer[: buffer.size - len(bucket)]
    grads /= size
    at = 0
    for p, flag in zip(bucket, flags):
        n = p.array.size
        if flag > 0:
            grad = to_device(grads[at : at + n].reshape(p.array.shape).copy(), device_of(p.array))
            p.grad = p._result(grad, False)
        at += n
    return grads.nbytes


def shard(batch, world: World, even: bool = True):
    """This rank's rows of a global batch: arrays (and tuples, lists or dicts of arrays) are cut
    along their first dimension into ``world.size`` equal parts; other values pass through.

    ``even=False`` (evaluation) allows unequal parts (the first ranks get one row more).

    Args:
        batch: an array, or a tuple, list or dict of them (nested).
        world: the job's ``World``.
        even: require equal parts.

    Returns:
        The batch with each array cut to this rank's rows.

    Raises:
        ValueError: with ``even``, a batch dimension that does not divide by the number of ranks."""
    if world.size == 1:
        return batch
    if isinstance(batch, dict):
        return {k: shard(v, world, even) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(v, world, even) for v in batch)
    if hasattr(batch, "shape") and getattr(batch, "ndim", 0) >= 1:
        n = batch.shape[0]
        if not even:
            lo, hi = n * world.rank // world.size, n * (world.rank + 1) // world.size
            return batch[lo:hi]
        if n % world.size:
            raise ValueError(
                f"the global batch of {n} rows does not divide by {world.size} ranks; "
                f"choose a batch size that is a multiple of {world.size}"
            )
        k = n // world.size
        return batch[world.rank * k : (world.rank + 1) * k]
    return batch


# --- torch.distributed's API, on this world ------------------------------------------------------
# A program written for ``torch.distributed`` runs on numformer's MPI: ``init_process_group``
# (any backend name: MPI carries them all), ``get_rank``, ``get_world_size``, ``all_reduce``,
# ``broadcast``, ``all_gather``, ``barrier``, ``destroy_process_group``. Under ``mpiexec``,
# importing numformer also sets torchrun's ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` where they
# are unset, so a program that reads them (nanoGPT's train.py) sees its rank.

_initialized = False


class ReduceOp:
    """The reductions of ``all_reduce`` (PyTorch's names)."""

    SUM, AVG, PRODUCT, MIN, MAX = "sum", "avg", "product", "min", "max"


def _export_torchrun_env() -> None:
    """RANK, LOCAL_RANK and WORLD_SIZE from MPI's environment, where mpiexec set it and they are
    not set already."""
    rank = os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK")
    size = os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE")
    if rank is None or size is None or "RANK" in os.environ:
        return
    local = os.environ.get("MPI_LOCALRANKID") or os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK") or rank
    os.environ.update({"RANK": rank, "WORLD_SIZE": size, "LOCAL_RANK": local})


_export_torchrun_env()


def is_available() -> bool:
    """Whether data-parallel training can run here (always: one process without mpiexec)."""
    return True


def is_initialized() -> bool:
    """Whether ``init_process_group`` has been called (and not destroyed).

    Returns:
        True after ``init_process_group``."""
    return _initialized


def is_mpi_available() -> bool:
    """Whether mpi4py can be imported (the ``distributed`` extra).

    Returns:
        True where MPI can be used."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def init_process_group(backend=None, init_method=None, timeout=None, world_size: int = -1, rank: int = -1, **kwargs):
    """Join this job's processes (PyTorch's ``init_process_group``). numformer's processes talk
    through MPI whatever ``backend`` names ("nccl", "gloo", "mpi"): launch with ``mpiexec -n N``
    (or a launcher that sets MPI's environment). torchrun's ``env://`` rendezvous is not used.

    Args:
        backend: accepted for PyTorch's programs; MPI is used whatever it names.
        init_method: accepted for PyTorch's programs (not used).
        timeout: accepted for PyTorch's programs (not used).
        world_size: -1, or MPI's number of processes.
        rank: -1, or this process's MPI rank.
        **kwargs: other PyTorch arguments, accepted.

    Raises:
        RuntimeError: already initialised, or a ``world_size``/``rank`` other than MPI's."""
    global _initialized
    if _initialized:
        raise RuntimeError("trying to initialize the default process group twice!")
    w = world()
    if world_size not in (-1, w.size) or rank not in (-1, w.rank):
        raise RuntimeError(
            f"init_process_group: world_size={world_size}, rank={rank} but MPI launched {w.size} processes and this "
            f"is rank {w.rank}: numformer takes both from mpiexec"
        )
    _initialized = True


def destroy_process_group(group=None) -> None:
    """Leave the process group (PyTorch's ``destroy_process_group``); MPI itself stays up.

    Args:
        group: accepted for PyTorch's programs."""
    global _initialized
    _initialized = False


def get_rank(group=None) -> int:
    """This process's rank in ``[0, world size)`` (0 without mpiexec).

    Args:
        group: accepted for PyTorch's programs.

    Returns:
        The rank."""
    return world().rank


def get_world_size(group=None) -> int:
    """The number of processes in this job (1 without mpiexec).

    Args:
        group: accepted for PyTorch's programs.

    Returns:
        The world size."""
    return world().size


def get_backend(group=None) -> str:
    """The backend numformer's processes use: always ``"mpi"``.

    Args:
        group: accepted for PyTorch's programs.

    Returns:
        ``"mpi"``."""
    return "mpi"


def barrier(group=None, async_op: bool = False, device_ids=None) -> None:
    """Wait until every rank has reached this call.

    Args:
        group: accepted for PyTorch's programs (numformer has one group: every rank).
        async_op: accepted; the operation completes before returning (no work handle).
        device_ids: accepted for PyTorch's programs."""
    world().barrier()


def _host(tensor) -> np.ndarray:
    return np.ascontiguousarray(to_numpy(tensor.array))


def _write_back(tensor, host: np.ndarray) -> None:
    tensor.array[...] = to_device(host, device_of(tensor.array))
    tensor._bump()


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """``tensor`` reduced over every rank, in place (sum, average, product, min or max).

    Args:
        tensor: the tensor to reduce; it holds the result on every rank afterwards.
        op: a ``ReduceOp`` (``SUM`` by default, ``AVG``, ``PRODUCT``, ``MIN``, ``MAX``).
        group: accepted for PyTorch's programs (numformer has one group: every rank).
        async_op: accepted; the operation completes before returning (no work handle).

    Returns:
        None (the tensor is changed in place).

    Shape:
        ``tensor`` ``(*)``, the same on every rank."""
    w = world()
    if w.size == 1:
        return None
    host = _host(tensor)
    if op in (ReduceOp.SUM, ReduceOp.AVG):
        w.allreduce_sum_(host)
        if op == ReduceOp.AVG:
            host /= w.size
    else:
        from mpi4py import MPI

        mpi_op = {ReduceOp.PRODUCT: MPI.PROD, ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX}[op]
        w.comm.Allreduce(MPI.IN_PLACE, host, op=mpi_op)
    _write_back(tensor, host)
    return None


def broadcast(tensor, src: int = 0, group=None, async_op: bool = False):
    """Rank ``src``'s values of ``tensor`` on every rank, in place.

    Args:
        tensor: the tensor to send (on ``src``) or overwrite (elsewhere).
        src: the rank whose values are sent.
        group: accepted for PyTorch's programs (numformer has one group: every rank).
        async_op: accepted; the operation completes before returning (no work handle).

    Shape:
        ``tensor`` ``(*)``, the same on every rank."""
    w = world()
    if w.size > 1:
        host = _host(tensor)
        w.comm.Bcast(host, root=src)
        _write_back(tensor, host)


def all_gather(tensor_list: list, tensor, group=None, async_op: bool = False):
    """Every rank's ``tensor`` into ``tensor_list`` (one per rank, in rank order).

    Args:
        tensor_list: one tensor per rank, each of ``tensor``'s shape, overwritten.
        tensor: this rank's contribution.
        group: accepted for PyTorch's programs (numformer has one group: every rank).
        async_op: accepted; the operation completes before returning (no work handle).

    Shape:
        ``tensor`` ``(*)`` -> ``tensor_list`` of world-size tensors ``(*)``."""
    w = world()
    host = _host(tensor)
    gathered = np.empty((w.size,) + host.shape, dtype=host.dtype)
    if w.size > 1:
        w.comm.Allgather(host, gathered)
    else:
        gathered[0] = host
    for out, values in zip(tensor_list, gathered):
        _write_back(out, values)
