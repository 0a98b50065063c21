"""Intra-op parallelism: numformer's kernels split large work over a few threads.

NumPy runs each ufunc (exp, sum, the steps of softmax and layer norm) on one core; only BLAS
is threaded. On a 2-core machine that leaves half the CPU idle for everything but GEMMs, and
simply starting threads of our own does not help: OpenBLAS's idle threads busy-wait for about
0.1 s after every GEMM, so a second thread started in between competes with them for the core.

``set_num_threads(n)`` makes numformer own the cores, as ``torch.set_num_threads`` does for
PyTorch: BLAS is pinned to one thread per call while numformer splits work (a skinny product
too small to split gives BLAS its threads back until the next split: see ``matmul``), and the
kernels split their work into ``n`` contiguous chunks (rows of a GEMM, batch-heads of
attention, rows of layer norm, ...), run on ``n - 1`` worker threads and the calling thread.
NumPy releases the GIL inside its loops and BLAS calls, so the chunks really run at once.
Between regions the workers wait hot, spinning on a POSIX spinlock with the GIL released
(``_Worker``; Linux, no more threads than cores, once regions have come for ``WARM_SECONDS``,
not within ``BLAS_SPIN_SECONDS`` of BLAS getting its own threads back), and sleep after
``SPIN_SECONDS`` idle. Each chunk computes the same rows the
serial code would, so results match the serial kernels to round-off (a BLAS call on fewer rows
may order its sums differently: ~1e-6 relative in float32), and random draws come in fixed seeded
blocks (``dropout_mask``), the same for any thread count.

On from ``import numformer``, as PyTorch sets its threads on import: the package's facade calls
``set_num_threads`` with every core the process may use (``NUMFORMER_NUM_THREADS`` chooses
another count). Code that imports only this module, without the facade, runs one thread until it
calls ``set_num_threads``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import math
import os
import queue
import signal
import sys
import threading
import time

import numpy as np

from numformer import backend
from numformer.backend import xp
from numformer.blas import openblas

_threads = 1
_workers: list[_Worker] = []
_region = threading.Lock()  # one parallel region at a time; nested or concurrent calls run serially
_blas = None  # (setter, getter) of NumPy's OpenBLAS thread count, found on first use
_blas_own: int | None = None  # BLAS's thread count when numformer first set it (its environment's)
_blas_free: int | None = None  # BLAS's count when released (matmul): min(own, n); None when n is 1
_blas_released = False  # True while BLAS runs on its own threads again (see matmul)
_owner: int | None = None  # the thread that set the count: the only one that changes BLAS's

# Work below this many elements (or GEMM multiply-adds) runs on the calling thread alone: handing
# a chunk to a worker and waiting for it costs as much as tens of thousands of elementwise
# operations or millions of multiply-adds on one core. Chunks get several times that.
MIN_ELEMENTS = 1 << 17
MIN_MACS = 1 << 22

# Kernel threads wait hot (spinning) for this long after the last parallel region, then sleep.
SPIN_SECONDS = 0.05
# OpenBLAS's idle threads spin for about 2^28 cycles after a product on them (its THREAD_TIMEOUT).
BLAS_SPIN_SECONDS = 0.1
# Kernel threads start to spin only once regions have come without a pause of SPIN_SECONDS for
# this long (a training loop, not one call in a notebook): in bursts of regions after 0.3 s idle,
# spinning threads met stalls of 2-8 ms (187-282 regions of 11,200 against 1-2 sleeping), on
# the virtual machine of bench/results; from 0.1 s into a run of regions they did not.
WARM_SECONDS = 0.1
_released_at = -math.inf  # time.monotonic() when BLAS last got its threads back


def _find_blas():
    """The thread-count setter and getter of the OpenBLAS NumPy uses, or None (Linux only)."""
    found = openblas()
    if found is None:
        return None
    lib, prefix, suffix = found
    setter = getattr(lib, f"{prefix}_set_num_threads{suffix}")
    getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
    if getter is None:
        return None
    setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
    return setter, getter


def _find_spinlocks():
    """(lock, unlock, init, trylock) of the C library's POSIX spinlocks, each taking the lock's
    address, or None where there are none (not Linux). ``lock`` is called through
    ``ctypes.CDLL``, which releases the GIL for the call: a thread spinning in it leaves Python
    to the others. The rest go through ``ctypes.PyDLL``, which keeps the GIL: the thread that
    posts work carries on with Python at once. ``init`` leaves the lock taken."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        free, held = ctypes.CDLL(None), ctypes.PyDLL(None)
        lock, unlock, init = free.pthread_spin_lock, held.pthread_spin_unlock, held.pthread_spin_init
        take, try_take = held.pthread_spin_lock, held.pthread_spin_trylock
    except (OSError, AttributeError):
        return None
    for fn in (lock, unlock, take, try_take):
        fn.argtypes, fn.restype = [ctypes.c_void_p], ctypes.c_int
    init.argtypes, init.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int

    def init_taken(address: int) -> None:
        init(address, 0)
        take(address)

    return lock, unlock, init_taken, try_take


_SPINLOCKS = _find_spinlocks()
_SIGINT = {signal.SIGINT}
_MASK_SIGINT = hasattr(signal, "pthread_sigmask")
_PARK = object()  # a worker's message to stop spinning and sleep until its next task


class _Flag:
    """A signal one thread raises and another waits for, once per raise. With ``spin``: a POSIX
    spinlock, held while nothing is signalled, so waiting spins with the GIL released (a
    KeyboardInterrupt surfaces once the signal is taken); released by a thread that did not take it,
    which POSIX leaves to the implementation (glibc's and musl's release is a plain atomic
    store, from any thread). Else a ``threading.Lock``, which any thread may release (waiting
    sleeps)."""

    __slots__ = ("_word", "_address", "_lock")

    def __init__(self, spin: bool):
        if spin:
            self._word = ctypes.c_int()  # pthread_spinlock_t is an int in glibc and musl
            self._address = ctypes.addressof(self._word)
            _SPINLOCKS[2](self._address)
        else:
            self._address = None
            self._lock = threading.Lock()
            self._lock.acquire()

    def set(self) -> None:
        if self._address is not None:
            _SPINLOCKS[1](self._address)
        else:
            self._lock.release()

    def wait(self) -> None:
        if self._address is not None:
            _SPINLOCKS[0](self._address)
        else:
            self._lock.acquire()

    def try_take(self) -> None:
        """Take the signal if it is raised and not yet taken (never waits)."""
        if self._address is not None:
            _SPINLOCKS[3](self._address)
        else:
            self._lock.acquire(blocking=False)


class _Worker:
    """One kernel thread. Between tasks it waits hot: spinning on ``ready`` (no GIL held), so a
    task starts microseconds after it is posted, as BLAS's and OpenMP's threads wait. A thread
    that sleeps on a lock or queue instead takes tens of microseconds to wake, more on a
    virtual machine (the idle core halts), and starts its first task on a cold core: measured
    on the AMD EPYC (Zen 5) of bench/results, a 768 x 128 x 128 GEMM split over a sleeping
    thread took 218 us against 152 us over a spinning one (118 us on BLAS's own threads).
    ``SPIN_SECONDS`` after the last region ``_Parker`` parks the thread: it then sleeps on
    ``tasks`` until the next task. A worker spins only when the threads fit the cores
    (``spin``): a spinning thread that shares a core would take it from the others."""

    def __init__(self, spin: bool):
        self.spin = spin
        # ``ready`` wakes a spinning thread; ``done[hot]`` says a task is finished: spun on after
        # a hot task, slept on after a cold one (spinning then, the caller would take a core
        # from BLAS's threads)
        self.ready = _Flag(spin)
        self.done = {True: _Flag(spin), False: _Flag(False)}
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.job = None  # (fn, lo, hi, hot, ticket) or _PARK, read once ``ready`` is set
        self.error: BaseException | None = None
        self.ticket = self.completed = 0  # of the last task posted / run (see parallel_for)
        self.spinning = False  # waiting on ``ready`` (else on ``tasks``); changed under _region
        threading.Thread(target=self._run, daemon=True, name="numformer-worker").start()

    def _run(self) -> None:
        job = self.tasks.get()  # a new worker starts parked
        while job is not None:  # None: the pool let this thread go
            fn, lo, hi, hot, ticket = job
            try:
                fn(lo, hi)
            except BaseException as err:  # handed to the caller, raised there
                self.error = err
            self.done[hot].set()
            self.completed = ticket  # after the signal: a caller that sees it knows the signal is up
            if hot:  # ``post`` marked it spinning: the next job, or _PARK, comes on ``ready``
                self.ready.wait()
                job = self.job
            if not hot or job is _PARK:
                job = self.tasks.get()

    def finish(self, flag: _Flag) -> BaseException | None:
        """Wait for the last task posted (``flag`` is what ``post`` returned) and take its signal,
        whatever is raised meanwhile (a KeyboardInterrupt: returned, for the caller to raise)."""
        interrupted = None
        try:
            flag.wait()
            return None
        except BaseException as err:  # before the wait took the signal, or just after
            interrupted = err
        while self.completed != self.ticket:  # the signal is up once ``completed`` says so
            try:
                time.sleep(1e-4)
            except BaseException as err:
                interrupted = interrupted or err
        flag.try_take()  # if the interrupted wait had not taken it
        return interrupted

    def post(self, fn, lo: int, hi: int, stay_hot: bool) -> _Flag:
        """Hand ``fn(lo, hi)`` to the thread (under ``_region``); a sleeping thread spins after
        it if ``stay_hot``. Returns the flag that says it is done."""
        self.error = None
        self.ticket += 1
        if self.spinning:  # the parker has not parked it yet: it sleeps after this task unless stay_hot
            self.job = (fn, lo, hi, stay_hot, self.ticket)
            self.spinning = stay_hot
            self.ready.set()
            return self.done[stay_hot]
        hot = self.spin and stay_hot  # after this task the thread waits hot
        self.tasks.put((fn, lo, hi, hot, self.ticket))
        self.spinning = hot
        if hot:
            _parker.spinning.set()
        return self.done[hot]

    def park(self) -> None:
        """Stop spinning: sleep until the next task (under ``_region``)."""
        if self.spinning:
            self.spinning = False
            self.job = _PARK
            self.ready.set()


class _Parker:
    """The thread that parks spinning workers once no region has run for ``SPIN_SECONDS``; it
    sleeps while none spins (``spinning`` clear)."""

    def __init__(self):
        self.last = 0.0  # time.monotonic() at the end of the last region
        self.busy_since = math.inf  # when regions began to come without a pause of SPIN_SECONDS
        self.spinning = threading.Event()
        self.thread = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True, name="numformer-parker")
            self.thread.start()

    def _idle(self) -> float:
        return time.monotonic() - self.last

    def _run(self) -> None:
        while True:
            self.spinning.wait()
            # until the workers have been idle SPIN_SECONDS; a change of it is seen within 50 ms
            time.sleep(min(max(SPIN_SECONDS - self._idle(), SPIN_SECONDS / 10), 0.05))
            if self._idle() >= SPIN_SECONDS and _region.acquire(blocking=False):
                try:
                    if self._idle() >= SPIN_SECONDS:  # no region ended meanwhile
                        _park()
                finally:
                    _region.release()


_parker = _Parker()


def _park() -> None:
    """Park every spinning worker (under ``_region``)."""
    for worker in _workers:
        worker.park()
    _parker.spinning.clear()


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads: its kernels run serially until it calls
    ``set_num_threads`` (which starts new ones); a region the parent was in is not the child's.
    BLAS keeps the thread count the parent left it (one while the parent's threads split work,
    up to the parent's count where it had released BLAS) and is not released or pinned by the
    child, until ``set_num_threads``."""
    global _threads, _region, _parker, _blas_free, _blas_released
    _workers.clear()
    _threads, _region, _parker, _blas_free, _blas_released = 1, threading.Lock(), _Parker(), None, False


def _park_at_exit() -> None:
    """Park the workers as the interpreter exits: past that point the parker may never run
    again (it needs the GIL), and a spinning worker would take a core until the process ends."""
    if _region.acquire(timeout=1.0):
        try:
            _park()
        finally:
            _region.release()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_park_at_exit)


def set_num_threads(n: int) -> None:
    """Run on ``n`` threads, as ``torch.set_num_threads``: numformer's kernels and NumPy's
    OpenBLAS (process-wide) together use at most ``n`` (1: everything on the calling thread).

    With ``n > 1`` BLAS is pinned to one thread whenever numformer splits work, so the two never
    compete for the cores, and gets up to ``n`` back for products too small to split (``matmul``).
    The ``n - 1`` worker threads spin between regions (on Linux, when ``n`` does not exceed the
    cores this process may use, once regions have come for ``WARM_SECONDS``, not within
    ``BLAS_SPIN_SECONDS`` of BLAS getting its threads back) and sleep after ``SPIN_SECONDS``
    without one. Typical: ``os.cpu_count()``. The thread that calls this owns BLAS's thread
    count: only it releases and re-pins it.

    Args:
        n: the number of threads, at least 1.

    Raises:
        ValueError: ``n`` not a positive integer."""
    global _threads, _blas, _blas_own, _blas_free, _blas_released, _owner
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    n = int(n)
    if _blas is None:
        _blas = _find_blas() or ()
    with _region:
        _park()
        spin = _SPINLOCKS is not None and n <= default_num_threads()
        if any(worker.spin != spin for worker in _workers[: n - 1]):
            for worker in _workers:  # parked just above: each goes to its queue, and ends there
                worker.tasks.put(None)
            _workers.clear()
        while len(_workers) < n - 1:
            _workers.append(_Worker(spin))
        if spin and n > 1:
            _parker.start()
        if _blas:
            setter, getter = _blas
            if _blas_own is None:
                _blas_own = getter()
            setter(1)  # n == 1: one thread in all; n > 1: pinned while numformer's threads split
            _blas_free = min(_blas_own, n) if n > 1 else None
            _blas_released = False
        _threads = n
        _owner = threading.get_ident()


@contextlib.contextmanager
def num_threads(n: int):
    """Run the ``with`` block on ``n`` kernel threads, then restore the previous count."""
    before = _threads
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(before)


def get_num_threads() -> int:
    """How many threads numformer's kernels use (1 unless ``set_num_threads`` raised it)."""
    return _threads


def default_num_threads() -> int:
    """The cores this process may run on (its CPU affinity), for ``set_num_threads``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _off_host() -> bool:
    """True when xp computes on another device than the CPU: the thread pool, the BLAS thread
    control and the cache tiling are CPU tricks, skipped there (one call does the whole op)."""
    return backend.get_array_module() is not np


def parallel_for(n: int, fn, work_per_item: int = 1, min_work: int | None = None) -> None:
    """Call ``fn(lo, hi)`` on contiguous chunks that cover ``range(n)``, one chunk per thread.

    ``work_per_item`` (elements or multiply-adds per index) decides whether splitting pays:
    below ``min_work`` (default ``MIN_ELEMENTS``) per chunk everything runs as one ``fn(0, n)``
    on the calling thread.
    ``fn`` must write only its own chunk's outputs. The first error raised in a chunk is
    re-raised here after every chunk has finished.
    """
    global _blas_released
    chunks = min(_threads, n, max(1, n * work_per_item // (min_work or MIN_ELEMENTS)))
    if chunks <= 1 or _off_host() or not _region.acquire(blocking=False):
        fn(0, n)
        return
    posted, error = [], None  # (worker, the flag that says it is done)
    # A Ctrl-C arriving between a post and its entry in ``posted`` would leave a chunk nobody
    # waits for (its done signal then answers the next region's wait): on the main thread, where
    # Python runs signal handlers, SIGINT waits until the region is over.
    masks = (
        _MASK_SIGINT
        and threading.current_thread() is threading.main_thread()
        and signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, ())  # not blocked already
    )
    try:
        if masks:
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT)
        chunks = min(chunks, len(_workers) + 1)  # set_num_threads may have run since _threads was read
        if _blas_released and threading.get_ident() == _owner:
            _blas[0](1)  # our threads are about to run BLAS calls: pin BLAS to one thread again
            _blas_released = False
        # Within BLAS_SPIN_SECONDS of products on BLAS's own threads (one sentence's inference,
        # decoding), BLAS's threads still spin, and the next product likely releases them
        # again: ours sleep after this region then (spinning, they would take BLAS's cores).
        now = time.monotonic()
        if now - _parker.last > SPIN_SECONDS:
            _parker.busy_since = now  # regions start again after a pause
        stay_hot = now - _released_at > BLAS_SPIN_SECONDS and now - _parker.busy_since >= WARM_SECONDS
        bounds = [n * i // chunks for i in range(chunks + 1)]
        for i in range(1, chunks):
            worker = _workers[i - 1]
            posted.append((worker, worker.post(fn, bounds[i], bounds[i + 1], stay_hot)))
        fn(0, bounds[1])
    except BaseException as err:
        error = err
    finally:
        # Every posted chunk is waited for, even after an error or an interrupt here (one from
        # another source than SIGINT: ``_thread.interrupt_main``): a worker left running would
        # still write its outputs, and its done signal would answer the next region's wait.
        for worker, flag in posted:
            interrupted = worker.finish(flag)  # every one, whatever came before
            error, worker.error = error or interrupted or worker.error, None
        _parker.last = time.monotonic()
        _region.release()
        if masks:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)
    if error is not None:
        raise error


def concurrently(tasks: list, work: int) -> None:
    """Run independent ``tasks`` (callables without arguments) at once, each whole on its own
    thread, as far as there are threads; in order on the calling thread when there is one
    thread or ``work`` (multiply-adds of the smallest task) is below ``MIN_MACS``.

    Two GEMMs of a backward pass (a linear layer's input gradient and its weight gradient) each
    run at full size on one core, in place of each GEMM split in halves one after the other:
    one hand-off instead of two, and BLAS's kernels on larger blocks. Each task must write only
    its own outputs; the result equals the serial one exactly (the same calls on the same
    operands). The first error raised is re-raised after every task has finished."""
    parallel_for(len(tasks), lambda lo, hi: [tasks[i]() for i in range(lo, hi)], work, MIN_MACS)


def fills_threads(n_tasks: int) -> bool:
    """Whether ``n_tasks`` concurrent tasks keep every thread busy (``concurrently`` pays over
    splitting each task only then: with more threads than tasks, split work uses them all)."""
    return _threads <= n_tasks


def split_axis(batch: tuple) -> int:
    """The batch axis to split over threads: the first with at least one item per thread."""
    return next((i for i, n in enumerate(batch) if n >= _threads), 0)


def batch_slicer(batch: tuple, axis: int, lo: int, hi: int):
    """index(a): the slice lo:hi along batch ``axis`` of an array ``a`` whose leading dims
    broadcast to ``batch`` (followed by two matrix dims); a size-1 (broadcast) dim stays whole."""
    nbatch = len(batch)

    def index(a):
        ax = axis - (nbatch - (a.ndim - 2))
        if not batch or ax < 0 or a.shape[ax] == 1:
            return (Ellipsis,)
        return (slice(None),) * ax + (slice(lo, hi),)

    return index


# Random numbers are drawn in fixed blocks of this many elements, each from its own stream: the
# block grid, not the thread count, decides every draw.
RANDOM_BLOCK = 1 << 17


def dropout_mask(rng, shape: tuple, p: float, dtype) -> np.ndarray:
    """Inverted dropout's scaled keep-mask: ``1 / (1 - p)`` with probability ``1 - p``, else 0.

    One seed is drawn from ``rng`` (so ``manual_seed`` reproduces the mask); then each block of
    ``RANDOM_BLOCK`` elements takes 32 random bits per element from a PCG64 stream seeded by
    (seed, block index) and keeps an element when its bits are >= p * 2^32 (exact to 2^-32).
    Blocks are split over threads; raw bits are cheaper than NumPy's float draws.
    """
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    if _off_host():  # CuPy has no PCG64: the same mask is made on the host and copied over
        with backend.use_array_module(np):
            host = dropout_mask(rng, shape, p, dtype)
        return xp.asarray(host)
    out = xp.empty(n, dtype=dtype)
    seed = int(rng.integers(2**63))
    if p >= 1.0:
        out.fill(0)
        return out.reshape(shape)
    threshold, scale = xp.uint32(int(p * 2**32)), dtype.type(1.0 / (1.0 - p))

    def chunk(lo, hi):
        for block in range(lo, hi):  # fixed blocks: the same numbers whatever the thread count
            start, stop = block * RANDOM_BLOCK, min(n, (block + 1) * RANDOM_BLOCK)
            raw = xp.random.PCG64([seed, block]).random_raw((stop - start + 1) // 2)
            bits = raw.view(xp.uint32)[: stop - start]
            xp.multiply(bits >= threshold, scale, out=out[start:stop])

    parallel_for(-(-n // RANDOM_BLOCK), chunk, RANDOM_BLOCK)
    return out.reshape(shape)


def binary(ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``ufunc(a, b)``, split over threads when a and b are large, equal-shaped, contiguous and
    of one dtype (residual adds, gradient sums); otherwise NumPy's own broadcasting call."""
    if (
        _threads == 1
        or a.size < 2 * MIN_ELEMENTS
        or a.shape != b.shape
        or a.dtype != b.dtype
        or not (a.flags.c_contiguous and b.flags.c_contiguous)
    ):
        return ufunc(a, b)
    out = xp.empty(a.shape, a.dtype)
    fa, fb, fo = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    parallel_for(fa.size, lambda lo, hi: ufunc(fa[lo:hi], fb[lo:hi], out=fo[lo:hi]))
    return out


SKINNY = 32


def _release_blas() -> None:
    """Give BLAS its threads back (at most ``set_num_threads``'s count): on the owning thread,
    outside a parallel region (changing OpenBLAS's count while another thread of ours runs BLAS
    would not be safe)."""
    global _blas_released, _released_at
    if threading.get_ident() == _owner and _region.acquire(blocking=False):
        try:
            _park()  # BLAS's threads are about to run on the cores ours spin on
            _blas[0](_blas_free)
            _blas_released, _released_at = True, time.monotonic()
        finally:
            _region.release()


# Inference products of at most this many rows (one sequence's tokens, a small batch) run on
# BLAS's own threads (``matmul``'s ``inference``): at 68 x 384 x 1536, OpenBLAS's 2 threads took
# 451 us against 821 us split over ours (a hand-off per call) on the Xeon of bench/results.
FEW_ROWS = 256


def product_dtype(a: np.ndarray, b: np.ndarray):
    """The dtype ``a @ b`` has in NumPy (its matmul's own type resolution: bfloat16 operands give
    float32, where ``result_type`` says bfloat16), so a product split over threads has the
    dtype of the same product made whole."""
    return np.matmul.resolve_dtypes((a.dtype, b.dtype, None))[-1]


def matmul(
    a: np.ndarray,
    b: np.ndarray,
    bias: np.ndarray | None = None,
    epilogue=None,
    inference: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``a @ b`` (2-D, or batched with ``a`` and ``b`` of equal rank), split over threads;
    written into ``out`` (2-D only, the result's shape; it may overlap ``a`` or ``b``, as NumPy's
    may) when given.

    2-D: split by rows of the result when it has more rows than columns, else by columns;
    ``bias`` ``(n,)`` (2-D only) is added to every row inside each chunk, while it is in cache,
    and then ``epilogue(block, index)`` (2-D only) updates the chunk's block of the result in
    place, ``block`` being ``result[index]`` (an activation: no second pass over memory, no
    second output array).
    Batched: split along the first batch axis that is large enough, slicing an operand only
    where it is not broadcast (size 1). Each chunk is one BLAS call on one thread.

    A product too small to split that is also skinny (at most ``SKINNY`` rows or columns: a
    decoding step's few rows against a weight matrix) runs on BLAS's own threads: BLAS gets its
    thread count back and keeps it until the next split region pins it to one thread again
    (``parallel_for``). Such products stream the weights from memory, and BLAS's threads wait
    hot between calls where a hand-off to ours costs tens of microseconds; switching per call
    would wake them every time. In a decoding loop every product is skinny, so BLAS keeps its
    threads for the whole loop. ``inference=True`` (no backward follows: a layer's inference
    path) extends that, on the thread that set the thread count, to 2-D products of at most
    ``FEW_ROWS`` rows however large: encoding one
    sentence is such products between elementwise steps too small to split, and BLAS's hot
    threads beat a hand-off to ours at every size measured. Not in training, where BLAS's
    threads, still spinning, would slow the splits and the small products that follow.
    """
    if (bias is not None or epilogue is not None or out is not None) and (a.ndim != 2 or b.ndim != 2):
        raise ValueError(f"matmul: bias, epilogue and out need 2-D operands, got {a.shape} and {b.shape}")
    # only the thread that owns BLAS's count can give BLAS its threads; another keeps the split
    few_rows = inference and a.ndim == 2 and a.shape[0] <= FEW_ROWS and threading.get_ident() == _owner
    # max(a.size * n, b.size * m) <= the multiply-adds: small products never pay for threads
    if (
        _threads == 1
        or type(a) is not np.ndarray  # another device (a GPU): its library runs the product whole
        or a.ndim != b.ndim
        or a.ndim < 2
        or max(a.size * b.shape[-1], b.size * a.shape[-2]) < 2 * MIN_MACS
        or few_rows
    ):
        skinny = few_rows or (a.ndim >= 2 and b.ndim >= 2 and min(a.shape[-2], b.shape[-1]) <= SKINNY)
        if skinny and _blas_free is not None and not _blas_released:
            _release_blas()
        out = a @ b if out is None else xp.matmul(a, b, out=out)
        if bias is not None:
            out += bias
        if epilogue is not None:
            epilogue(out, ...)
        return out
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = xp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    count = math.prod(batch)
    if out is not None and (xp.may_share_memory(out, a) or xp.may_share_memory(out, b)):
        # a chunk would overwrite what another still reads: compute apart, then copy (as NumPy does)
        out[...] = matmul(a, b, bias, epilogue, inference)
        return out
    if out is None:
        out = xp.empty(batch + (m, n), dtype=product_dtype(a, b))
    if not batch:
        if m >= n:

            def rows(lo, hi):
                xp.matmul(a[lo:hi], b, out=out[lo:hi])
                if bias is not None:
                    out[lo:hi] += bias
                if epilogue is not None:
                    epilogue(out[lo:hi], slice(lo, hi))

            parallel_for(m, rows, k * n, MIN_MACS)
        else:

            def columns(lo, hi):
                xp.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
                if bias is not None:
                    out[:, lo:hi] += bias[lo:hi]
                if epilogue is not None:
                    epilogue(out[:, lo:hi], (slice(None), slice(lo, hi)))

            parallel_for(n, columns, k * m, MIN_MACS)
        return out
    axis = split_axis(batch)
    per_item = count // batch[axis] * m * k * n

    def chunk(lo, hi):
        part = batch_slicer(batch, axis, lo, hi)
        xp.matmul(a[part(a)], b[part(b)], out=out[part(out)])

    parallel_for(batch[axis], chunk, per_item, MIN_MACS)
    return out
