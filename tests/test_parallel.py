"""numformer.ops._threads: the thread pool, the split GEMM, and every kernel that splits its work.

Each threaded kernel must give what the serial kernel gives, to round-off (the serial kernels
are checked against PyTorch and finite differences elsewhere). The split thresholds are lowered
to 1 so that even hypothesis's small shapes are cut into chunks, including uneven ones.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import numformer as nf
from helpers import LOOSE, randn
from numformer.models import GPT, GPTConfig
from numformer.nn import functional as F
from numformer.ops import _threads as parallel

THREADS = 3  # more than this machine's 2 cores: chunks then differ in size and order

# a kernel thread that dies (an exception outside its task) fails the test that killed it
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@contextlib.contextmanager
def split_everything(threads=THREADS):
    """Kernel threads on, with every split threshold at 1; everything restored after."""
    saved = parallel.MIN_ELEMENTS, parallel.MIN_MACS
    parallel.MIN_ELEMENTS = parallel.MIN_MACS = 1
    nf.set_num_threads(threads)
    try:
        yield
    finally:
        parallel.MIN_ELEMENTS, parallel.MIN_MACS = saved
        nf.set_num_threads(1)


def serial_and_threaded(fn, split=True):
    """fn() run with one kernel thread, then with THREADS (all thresholds at 1 if ``split``)."""
    nf.manual_seed(0)
    serial = fn()
    nf.manual_seed(0)
    if split:
        with split_everything():
            return serial, fn()
    with parallel.num_threads(THREADS):
        return serial, fn()


def assert_same(a, b, dtype, scale=1.0):
    """Equal to round-off: a BLAS call on fewer rows may order its sums differently. ``scale``
    multiplies the absolute tolerance where a kernel amplifies round-off (layer norm divides by
    each row's standard deviation)."""
    tol = dict(LOOSE[np.dtype(dtype).type])
    tol["atol"] *= scale
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            assert x is None and y is None
            continue
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
        np.testing.assert_allclose(x, y, **tol)


def grads_of(fn, arrays, seed=0):
    """Output and input gradients of fn(*tensors) against a fixed random output gradient."""
    ts = [nf.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(randn(seed, out.shape, out.dtype))
    return [out.numpy()] + [t.grad for t in ts]


# --- the pool ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=r"set_num_threads: n must be a positive int, got"):
        nf.set_num_threads(bad)


def test_num_threads_context_restores_on_error():
    nf.set_num_threads(2)
    with pytest.raises(RuntimeError, match="boom"), parallel.num_threads(1):
        assert nf.get_num_threads() == 1
        raise RuntimeError("boom")
    assert nf.get_num_threads() == 2
    nf.set_num_threads(1)
    assert nf.get_num_threads() == 1


@given(n=st.integers(0, 50), threads=st.integers(1, 5))
def test_parallel_for_covers_the_range_once(n, threads):
    nf.set_num_threads(threads)
    seen = np.zeros(n, dtype=int)
    chunks = []

    def fn(lo, hi):
        chunks.append((lo, hi))
        seen[lo:hi] += 1

    parallel.parallel_for(n, fn, work_per_item=1, min_work=1)
    nf.set_num_threads(1)
    assert (seen == 1).all()
    assert len(chunks) == max(1, min(threads, n))


def test_an_error_in_a_worker_chunk_reaches_the_caller():
    nf.set_num_threads(3)

    def fn(lo, hi):
        if lo > 0:
            raise ZeroDivisionError(f"chunk {lo}:{hi}")

    with pytest.raises(ZeroDivisionError, match="chunk"):
        parallel.parallel_for(9, fn, min_work=1)
    # the pool still works afterwards: each region waits for its own chunks (the slower ones
    # last), not for a signal the failed region left behind
    import time

    for _ in range(5):
        out = np.zeros(9)

        def slow(lo, hi, out=out):
            time.sleep(0.002 * lo / 3)
            out[lo:hi] = 1.0

        parallel.parallel_for(9, slow, min_work=1)
        assert (out == 1).all()
    nf.set_num_threads(1)


@contextlib.contextmanager
def spinning_pool(monkeypatch, threads=2, spin_seconds=60.0):
    """Kernel threads that wait hot (as on a machine with at least ``threads`` cores), parked
    after ``spin_seconds`` without a region."""
    assert parallel._SPINLOCKS is not None, "no POSIX spinlocks found: this test needs Linux"
    monkeypatch.setattr(parallel, "default_num_threads", lambda: threads)
    monkeypatch.setattr(parallel, "_released_at", -math.inf)  # no product on BLAS's threads lately
    monkeypatch.setattr(parallel, "WARM_SECONDS", 0.0)  # hot from the first region
    monkeypatch.setattr(parallel, "SPIN_SECONDS", spin_seconds)
    nf.set_num_threads(threads)
    try:
        assert all(worker.spin for worker in parallel._workers[: threads - 1])
        yield parallel._workers[: threads - 1]
    finally:
        nf.set_num_threads(1)


def fill_region(n=8):
    out = np.zeros(n)
    parallel.parallel_for(n, lambda lo, hi: out.__setitem__(slice(lo, hi), np.arange(lo, hi)), min_work=1)
    return out


def test_workers_wait_hot_between_regions_and_compute_what_one_thread_does(monkeypatch):
    """After a region a worker spins for the next; a GPT step on spinning workers equals the
    serial step to round-off."""
    nf.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=32))
    x = np.random.default_rng(0).integers(0, 50, (4, 16))

    def step():
        model.zero_grad()
        _, loss = model(x, np.roll(x, -1, axis=1))
        loss.backward()
        return [loss.numpy()] + [p.grad.numpy().copy() for p in model.parameters()]

    serial = step()
    with spinning_pool(monkeypatch) as (worker,):
        assert (fill_region() == np.arange(8)).all()
        assert worker.spinning
        saved = parallel.MIN_ELEMENTS, parallel.MIN_MACS
        parallel.MIN_ELEMENTS = parallel.MIN_MACS = 1
        try:
            threaded = step()
        finally:
            parallel.MIN_ELEMENTS, parallel.MIN_MACS = saved
        assert worker.spinning
    assert_same(serial, threaded, np.float32)


def test_idle_workers_stop_spinning_and_wake_for_the_next_region(monkeypatch):
    import time

    with spinning_pool(monkeypatch, spin_seconds=0.5) as (worker,):
        fill_region()
        assert worker.spinning
        deadline = time.monotonic() + 5
        while worker.spinning and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not worker.spinning, "the worker still spins long after the last region"
        assert (fill_region() == np.arange(8)).all()  # woken from its queue
        assert worker.spinning


def test_workers_spin_only_once_regions_have_come_for_warm_seconds(monkeypatch):
    """A burst of regions after a pause runs on sleeping workers (spinning then, on virtual
    machines, brought stalls of milliseconds); regions that keep coming for WARM_SECONDS do
    not."""
    import time

    with spinning_pool(monkeypatch) as (worker,):
        monkeypatch.setattr(parallel, "WARM_SECONDS", 0.2)
        parallel._park()
        parallel._parker.last = -math.inf  # no region for ever: the next one starts a run
        fill_region()
        assert not worker.spinning
        start = time.monotonic()
        while time.monotonic() - start < 0.3:
            assert (fill_region() == np.arange(8)).all()
        assert worker.spinning


def test_an_error_in_a_spinning_worker_reaches_the_caller(monkeypatch):
    def fn(lo, hi):
        if lo > 0:
            raise ZeroDivisionError(f"chunk {lo}:{hi}")

    with spinning_pool(monkeypatch) as (worker,):
        fill_region()
        assert worker.spinning
        with pytest.raises(ZeroDivisionError, match="chunk"):
            parallel.parallel_for(9, fn, min_work=1)
        assert (fill_region() == np.arange(8)).all()


def test_blas_threads_park_ours_and_keep_them_from_spinning(monkeypatch):
    """A product on BLAS's own threads parks the spinning workers; a region soon after runs on
    a worker that sleeps again after it (BLAS's threads still spin then)."""
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((256, 64)), rng.standard_normal((64, 4))
    with spinning_pool(monkeypatch) as (worker,):
        fill_region()
        assert worker.spinning
        monkeypatch.setattr(parallel, "BLAS_SPIN_SECONDS", 60.0)
        parallel.matmul(w, x)  # skinny: BLAS gets its threads back
        assert parallel._blas_released and not worker.spinning
        assert (fill_region() == np.arange(8)).all()
        assert not worker.spinning and not parallel._blas_released


def test_a_keyboard_interrupt_in_a_region_leaves_the_pool_in_step(monkeypatch):
    """Ctrl-C while the caller waits for a spinning worker (it surfaces once the wait is over)
    or a sleeping one: the region raises it after every chunk has run, and the next regions
    wait for their own chunks, not a signal left over."""
    import _thread
    import time

    def interrupted(lo, hi):
        if lo > 0:
            _thread.interrupt_main()  # as Ctrl-C: raised in the main thread
            time.sleep(0.05)  # the caller is waiting by now

    for warm in (0.0, 60.0):  # hot, then cold workers
        with spinning_pool(monkeypatch) as (worker,):
            monkeypatch.setattr(parallel, "WARM_SECONDS", warm)
            fill_region()
            with pytest.raises(KeyboardInterrupt):
                parallel.parallel_for(8, interrupted, min_work=1)
            for _ in range(20):
                out = np.zeros(8)

                def slow(lo, hi, out=out):
                    time.sleep(0.002 if lo > 0 else 0)
                    out[lo:hi] = np.arange(lo, hi)

                parallel.parallel_for(8, slow, min_work=1)
                assert (out == np.arange(8)).all()


def test_more_threads_than_cores_never_spin(monkeypatch):
    monkeypatch.setattr(parallel, "default_num_threads", lambda: 2)
    nf.set_num_threads(3)
    try:
        assert len(parallel._workers) >= 2 and not any(w.spin for w in parallel._workers[:2])
        assert (fill_region() == np.arange(8)).all()
        assert not any(w.spinning for w in parallel._workers)
    finally:
        nf.set_num_threads(1)


def test_switching_pools_lets_the_old_threads_go(monkeypatch):
    import threading
    import time

    def workers():
        return sum(thread.name == "numformer-worker" for thread in threading.enumerate())

    monkeypatch.setattr(parallel, "default_num_threads", lambda: 2)
    monkeypatch.setattr(parallel, "_released_at", -math.inf)
    monkeypatch.setattr(parallel, "WARM_SECONDS", 0.0)
    for _ in range(5):
        nf.set_num_threads(3)  # two sleeping workers
        fill_region()
        nf.set_num_threads(2)  # one spinning worker
        fill_region()
        assert parallel._workers[0].spinning
    nf.set_num_threads(1)
    deadline = time.monotonic() + 5
    while workers() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers() == 1


def test_a_forked_child_runs_its_kernels_serially():
    """The child of a fork has none of its parent's threads: a region there runs on the calling
    thread (waiting for a worker that does not exist would hang)."""
    import multiprocessing

    nf.set_num_threads(2)
    fill_region()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()

    def child():
        chunks = []
        parallel.parallel_for(8, lambda lo, hi: chunks.append((lo, hi)), min_work=1)
        queue.put((nf.get_num_threads(), chunks))

    proc = ctx.Process(target=child)
    proc.start()
    try:
        proc.join(30)
        assert proc.exitcode == 0
        assert queue.get() == (1, [(0, 8)])
    finally:
        proc.kill()
        nf.set_num_threads(1)


def test_nested_regions_run_serially():
    nf.set_num_threads(2)
    inner = []

    def outer(lo, hi):
        parallel.parallel_for(4, lambda a, b: inner.append((a, b)), min_work=1)

    parallel.parallel_for(2, outer, min_work=1)
    nf.set_num_threads(1)
    assert inner == [(0, 4), (0, 4)]  # each outer chunk ran its inner loop whole


def test_concurrent_tasks_run_once_each_on_their_own_threads_and_raise_the_first_error():
    import threading

    seen = []

    def task(i):
        return lambda: seen.append((i, threading.get_ident()))

    with split_everything(threads=2):
        parallel.concurrently([task(0), task(1)], work=1)
    assert sorted(i for i, _ in seen) == [0, 1] and seen[0][1] != seen[1][1]  # two threads
    seen.clear()
    nf.set_num_threads(2)
    try:
        parallel.concurrently([task(0), task(1)], work=parallel.MIN_MACS - 1)  # too small to hand off
    finally:
        nf.set_num_threads(1)
    assert [i for i, _ in seen] == [0, 1] and seen[0][1] == seen[1][1] == threading.get_ident()

    def fails():
        raise ZeroDivisionError("task 1")

    with split_everything(threads=2), pytest.raises(ZeroDivisionError, match="task 1"):
        parallel.concurrently([task(2), fails], work=1)
    assert [i for i, _ in seen][-1] == 2  # the other task still ran


def test_a_linear_layers_backward_with_more_threads_than_products_splits_each_product():
    """Three threads: dx and dw each split over all of them (the concurrent pair would leave one
    idle), with the serial result to round-off."""
    arrays = [randn(0, (4, 5, 6), np.float32), randn(1, (3, 6), np.float32), randn(2, (3,), np.float32)]
    with parallel.num_threads(2):
        assert parallel.fills_threads(2) and not parallel.fills_threads(1)
    serial, threaded = serial_and_threaded(lambda: grads_of(F.linear, arrays))  # THREADS = 3
    with split_everything():
        assert not parallel.fills_threads(2)
    assert_same(serial, threaded, np.float32)


def test_optimiser_updates_shared_out_over_threads_equal_the_serial_ones_exactly():
    from numformer.ops.updates import balanced_bins

    assert balanced_bins([5, 1, 4, 2], 2) == [[0, 1], [2, 3]]  # 6 and 6
    assert balanced_bins([3], 4) == [[0]] and balanced_bins([], 2) == []

    def steps(threads, make):
        nf.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16, dropout=0.0))
        opt = make(model.parameters())
        rng = np.random.default_rng(1)
        with split_everything(threads) if threads > 1 else contextlib.nullcontext():
            for _ in range(3):  # the same gradients each run: only the update is compared
                for p in model.parameters():
                    p.grad = nf.tensor(rng.standard_normal(p.shape).astype(np.float32))
                opt.step()
        return [p.numpy().copy() for p in model.parameters()]

    for make in (
        lambda ps: nf.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
        lambda ps: nf.optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
    ):
        for a, b in zip(steps(1, make), steps(2, make), strict=True):
            np.testing.assert_array_equal(a, b)  # each update whole on one thread: bit for bit


# --- the split GEMM -------------------------------------------------------------------------------

dtypes = st.sampled_from([np.float32, np.float64])


@given(m=st.integers(1, 9), k=st.integers(1, 6), n=st.integers(1, 9), dtype=dtypes, seed=st.integers(0, 99))
def test_matmul_2d_matches_numpy(m, k, n, dtype, seed):
    a, b = randn(seed, (m, k), dtype), randn(seed + 1, (k, n), dtype)
    bias, bias_t = randn(seed + 2, (n,), dtype), randn(seed + 3, (m,), dtype)
    with split_everything():
        out = parallel.matmul(a, b)
        out_t = parallel.matmul(b.T, a.T)  # transposed (non-contiguous) operands
        with_bias = parallel.matmul(a, b, bias)  # rows or columns, depending on m and n
        with_bias_t = parallel.matmul(b.T, a.T, bias_t)
        into = np.full((m + 2, n), np.nan, dtype)  # out: rows of a larger array, the others untouched
        given = parallel.matmul(a, b, bias, out=into[1 : m + 1])
        square = randn(seed + 4, (m, m), dtype)
        expected = square @ square
        parallel.matmul(square, square, out=square)  # out is an operand: no chunk reads what another wrote
    assert_same([out, out_t, with_bias, with_bias_t], [a @ b, b.T @ a.T, a @ b + bias, b.T @ a.T + bias_t], dtype)
    assert np.shares_memory(given, into) and np.isnan(into[[0, -1]]).all()
    np.testing.assert_array_equal(given, with_bias)
    assert_same([square], [expected], dtype)


def test_matmul_bias_and_epilogue_need_2d_operands():
    for kwargs in ({"bias": np.ones(5)}, {"epilogue": np.negative}, {"out": np.ones((2, 3, 5))}):
        with pytest.raises(ValueError, match=r"matmul: bias, epilogue and out need 2-D operands, got \(2, 3, 4\)"):
            parallel.matmul(np.ones((2, 3, 4)), np.ones((2, 4, 5)), **kwargs)


@given(
    batch_a=st.sampled_from([(1, 3), (2, 3), (4, 1), (5, 2)]),
    batch_b=st.sampled_from([(1, 3), (2, 3), (4, 1)]),
    dtype=dtypes,
    seed=st.integers(0, 99),
)
def test_matmul_batched_with_broadcasting_matches_numpy(batch_a, batch_b, dtype, seed):
    try:
        np.broadcast_shapes(batch_a, batch_b)
    except ValueError:
        return
    a, b = randn(seed, batch_a + (3, 4), dtype), randn(seed + 1, batch_b + (4, 5), dtype)
    with split_everything():
        out = parallel.matmul(a, b)
    assert_same([out], [a @ b], dtype)


@given(
    shape=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    broadcast=st.booleans(),
    dtype=dtypes,
    seed=st.integers(0, 99),
)
def test_binary_matches_numpy(shape, broadcast, dtype, seed):
    a = randn(seed, shape, dtype)
    b = randn(seed + 1, shape[1:] if broadcast else shape, dtype)  # broadcast: NumPy's own call
    with split_everything():
        out = parallel.binary(np.add, a, b)
        out_t = parallel.binary(np.subtract, a.T, a.T)  # non-contiguous: NumPy's own call
    assert_same([out, out_t], [a + b, a.T - a.T], dtype)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_keeps_1_minus_p_and_never_depends_on_the_thread_count(p):
    shape = (3, parallel.RANDOM_BLOCK + 7)  # several blocks, the last one ragged
    masks = []
    for threads in (1, 2, 3):
        nf.set_num_threads(threads)
        masks.append(parallel.dropout_mask(np.random.default_rng(5), shape, p, np.float32))
    nf.set_num_threads(1)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])
    m = masks[0]
    assert m.dtype == np.float32 and set(np.unique(m)) <= {0.0, np.float32(1 / (1 - p))}
    kept = (m > 0).mean()
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / m.size)  # five standard errors
    other = parallel.dropout_mask(np.random.default_rng(6), shape, p, np.float32)
    assert not np.array_equal(m, other)
    assert not parallel.dropout_mask(np.random.default_rng(5), (4, 4), 1.0, np.float64).any()


# --- kernels: threaded equals serial --------------------------------------------------------------


@given(
    lead=st.lists(st.integers(1, 5), min_size=0, max_size=2),
    fin=st.integers(1, 6),
    fout=st.integers(1, 6),
    bias=st.booleans(),
    relu=st.booleans(),
    dtype=dtypes,
    seed=st.integers(0, 99),
)
def test_linear(lead, fin, fout, bias, relu, dtype, seed):
    arrays = [randn(seed, (*lead, fin), dtype), randn(seed + 1, (fout, fin), dtype)]
    if bias:
        arrays.append(randn(seed + 2, (fout,), dtype))
    fn = F.linear_relu if relu else F.linear  # relu: the ReLU runs in each chunk's epilogue
    serial, threaded = serial_and_threaded(lambda: grads_of(fn, arrays))
    assert_same(serial, threaded, dtype)


@given(
    rows=st.integers(1, 9),
    classes=st.integers(1, 6),
    smoothing=st.sampled_from([0.0, 0.2]),
    weighted=st.booleans(),
    soft=st.booleans(),
    dtype=dtypes,
    seed=st.integers(0, 99),
)
def test_cross_entropy(rows, classes, smoothing, weighted, soft, dtype, seed):
    """Softmax rows split over the threads: the loss and the logits' gradient equal the serial
    ones exactly (each row's max, exp and sum are the same calls on the same values)."""
    rng = np.random.default_rng(seed)
    if soft:
        target = rng.dirichlet(np.ones(classes), rows).astype(dtype)
    else:
        target = rng.integers(0, classes, rows)
        target[rng.random(rows) < 0.2] = -100  # ignore_index
    weight = nf.Tensor(rng.random(classes).astype(dtype)) if weighted else None

    def run():
        logits = nf.Tensor(randn(seed, (rows, classes), dtype), requires_grad=True)
        loss = F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing)
        loss.backward()
        return [loss.numpy(), logits.grad]

    serial, threaded = serial_and_threaded(run)
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    norm_dims=st.integers(1, 2),
    dtype=dtypes,
    affine=st.booleans(),
    seed=st.integers(0, 99),
)
def test_layer_norm(shape, norm_dims, dtype, affine, seed):
    norm_dims = min(norm_dims, len(shape))
    normalized = tuple(shape[len(shape) - norm_dims :])
    arrays = [randn(seed, shape, dtype)]
    if affine:
        arrays += [randn(seed + 1, normalized, dtype), randn(seed + 2, normalized, dtype)]

    def fn(x, *wb):
        return F.layer_norm(x, normalized, *wb)

    serial, threaded = serial_and_threaded(lambda: grads_of(fn, arrays))
    # dL/dx is divided by each row's std: a row of nearly equal values amplifies round-off
    rows = arrays[0].reshape(-1, int(np.prod(normalized)))
    assert_same(serial, threaded, dtype, scale=max(1.0, 1.0 / max(float(rows.std(axis=1).min()), 1e-3)))


@given(
    shape=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    op=st.sampled_from(["gelu_tanh", "relu"]),
    dtype=dtypes,
    transposed=st.booleans(),
    seed=st.integers(0, 99),
)
def test_elementwise_activations(shape, op, dtype, transposed, seed):
    x = randn(seed, shape, dtype)
    if transposed:
        x = x.T  # a non-contiguous input

    def fn(t):
        return F.gelu(t, approximate="tanh") if op == "gelu_tanh" else F.relu(t)

    serial, threaded = serial_and_threaded(lambda: grads_of(fn, [x]))
    assert_same(serial, threaded, dtype)


@given(
    N=st.integers(1, 4),
    H=st.integers(1, 3),
    L=st.integers(1, 5),
    S=st.integers(1, 5),
    E=st.integers(1, 4),
    mask=st.sampled_from(["none", "causal", "bool_padding", "float_full", "bool_ls"]),
    shared_kv=st.booleans(),
    dropout=st.sampled_from([0.0, 0.3]),
    kernel=st.sampled_from(["plain", "blocked"]),
    dtype=dtypes,
    seed=st.integers(0, 99),
)
def test_attention(N, H, L, S, E, mask, shared_kv, dropout, kernel, dtype, seed):
    if mask == "causal":
        S = L
    q = randn(seed, (N, H, L, E), dtype)
    kv_batch = (N, 1) if shared_kv else (N, H)  # keys shared by every head: broadcast, then summed
    k, v = randn(seed + 1, kv_batch + (S, E), dtype), randn(seed + 2, kv_batch + (S, E + 1), dtype)
    r = np.random.default_rng(seed + 3)
    attn_mask = {
        "none": None,
        "causal": None,
        "bool_padding": r.random((N, 1, 1, S)) > 0.3,
        "float_full": r.standard_normal((N, H, L, S)).astype(dtype),
        "bool_ls": r.random((L, S)) > 0.5,
    }[mask]

    def run():
        ts = [nf.Tensor(a.copy(), requires_grad=True) for a in (q, k, v)]
        with F.attention_kernel(kernel, block_q=2, block_k=3):  # blocked: ragged 2 x 3 tiles
            out = F.scaled_dot_product_attention(
                *ts, attn_mask=attn_mask, is_causal=mask == "causal", dropout_p=dropout
            )
        out.backward(randn(seed + 4, out.shape, dtype))
        return [out.numpy()] + [t.grad for t in ts]

    serial, threaded = serial_and_threaded(run)
    assert_same(serial, threaded, dtype)


def test_attention_weights_threaded_equal_serial():
    q, k, v = (randn(i, (4, 2, 6, 3), np.float32) for i in range(3))

    def run():
        return list(F.scaled_dot_product_attention_with_weights(*(nf.Tensor(a) for a in (q, k, v)), dropout_p=0.2))

    serial, threaded = serial_and_threaded(lambda: [t.numpy() for t in run()])
    assert_same(serial, threaded, np.float32)


def test_threaded_attention_matches_torch():
    q, k, v = (randn(i, (3, 4, 7, 5), np.float64) for i in range(3))
    g = randn(9, (3, 4, 7, 5), np.float64)
    with split_everything():
        ts = [nf.Tensor(a, requires_grad=True) for a in (q, k, v)]
        F.scaled_dot_product_attention(*ts, is_causal=True).backward(g)
    tt = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = torch.nn.functional.scaled_dot_product_attention(*tt, is_causal=True)
    out.backward(torch.from_numpy(g))
    for a, b in zip(ts, tt, strict=True):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_generation_threaded_equals_serial():
    model = GPT(GPTConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, d_model=32))
    prompts = [[1, 2, 3], [4, 5]]
    serial = model.generate(prompts, 12, temperature=0)
    with parallel.num_threads(2):
        threaded = model.generate(prompts, 12, temperature=0)
    assert threaded == serial


def test_gpt_training_step_threaded_equals_serial():
    """With the real thresholds: a GPT step big enough to split, the same loss and gradients."""
    config = GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=4, d_model=128, dropout=0.1)
    x = np.random.default_rng(0).integers(0, 50, (8, 64))

    def step():
        nf.manual_seed(0)
        model = GPT(config)
        _, loss = model(x, np.roll(x, -1, axis=1))
        loss.backward()
        return [loss.numpy()] + [p.grad for p in model.parameters()]

    serial, threaded = serial_and_threaded(step, split=False)
    assert_same(serial, threaded, np.float32)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_recurrent_loops_with_a_side_thread_equal_the_same_calls_in_order_exactly(kind, monkeypatch):
    """A recurrent layer's loop runs a block of steps while a worker projects the next block's
    inputs and (LSTM backward) computes its factors and the last block's input gradients
    (``ops.recurrent._pipeline``): outputs and every gradient equal those of the same calls made
    in order on one thread, bit for bit, over several blocks, two layers, both directions. (The
    products outside the loop are split over the threads in both runs, those beside it in neither.)"""
    from numformer.ops import recurrent

    gates = {"LSTM": 4, "GRU": 3}.get(kind, 1)
    monkeypatch.setattr(recurrent, "TIME_TILE", 4 * gates * 8 * 3)  # 3 steps a block: N = 4, H = 8
    x = randn(1, (11, 4, 5), np.float32)

    def run():
        nf.manual_seed(0)
        layer = getattr(nf.nn, kind)(5, 8, num_layers=2, bidirectional=True)
        inp = nf.Tensor(x, requires_grad=True)
        out, _ = layer(inp)
        out.backward(randn(2, out.shape, np.float32))
        return [out.numpy(), inp.grad] + [p.grad for p in layer.parameters()]

    calls = []

    def in_order(tasks, work):  # in a region, as the threaded tasks run: their products are not split
        calls.append(len(tasks))
        with parallel._region:
            for task in tasks:
                task()

    with split_everything():
        threaded = run()
        monkeypatch.setattr(recurrent, "concurrently", in_order)
        serial = run()
    assert calls  # the loops did hand blocks' side work over
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_skinny_product_gives_blas_its_threads_until_the_next_split():
    """Pinned while numformer's threads run; released by a skinny product too small to split
    (decoding), pinned again by the next split region; one thread in all after
    set_num_threads(1), as torch.set_num_threads(1) leaves MKL."""
    assert parallel._find_blas() is not None, "NumPy's OpenBLAS not found: this test needs it"
    setter, getter = parallel._find_blas()
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((256, 64)), rng.standard_normal((64, 4))
    big = rng.standard_normal((512, 512))
    assert getter() == 1  # set_num_threads(1) (conftest)
    with parallel.num_threads(2):
        free = parallel._blas_free
        assert free == min(parallel._blas_own, 2) and getter() == 1 and not parallel._blas_released
        parallel.matmul(w, x)  # (256, 64) @ (64, 4): skinny and small
        assert parallel._blas_released and getter() == free
        parallel.matmul(big, big)  # split over numformer's threads: BLAS pinned again
        assert getter() == 1 and not parallel._blas_released
        parallel.matmul(w, x)
    assert getter() == 1 and not parallel._blas_released and parallel._blas_free is None
    parallel.matmul(w, x)  # serial: nothing released
    assert getter() == 1 and not parallel._blas_released


def test_an_inference_linear_of_few_rows_runs_on_blas_threads_and_a_training_one_stays_split():
    """A layer's inference path with at most FEW_ROWS rows gives BLAS its threads back (one
    sentence through an encoder) and computes what the split product computes; the same layer
    recording a graph keeps numformer's split (BLAS pinned)."""
    setter, getter = parallel._find_blas()
    rng = np.random.default_rng(0)
    layer = nf.nn.Linear(384, 1536)
    x = nf.tensor(rng.standard_normal((1, 68, 384)).astype(np.float32))
    with parallel.num_threads(2):
        own = parallel._blas_free
        trained = layer(x)  # a graph is recorded: split over numformer's threads
        assert getter() == 1 and not parallel._blas_released
        with nf.no_grad():
            inferred = layer(x)
        assert parallel._blas_released and getter() == own
    expected = x.numpy() @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(inferred.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(trained.detach().numpy(), inferred.numpy(), rtol=1e-5, atol=1e-5)


def test_a_skinny_product_on_another_thread_leaves_blas_alone():
    import threading

    setter, getter = parallel._find_blas()
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((256, 64)), rng.standard_normal((64, 4))
    with parallel.num_threads(2):
        worker = threading.Thread(target=lambda: parallel.matmul(w, x))
        worker.start()
        worker.join()
        assert getter() == 1 and not parallel._blas_released


def test_matmul_of_a_vector_and_a_matrix_with_threads_on():
    a, b = np.arange(3.0), np.arange(12.0).reshape(3, 4)
    with parallel.num_threads(2):
        np.testing.assert_array_equal(nf.matmul(nf.tensor(a), nf.tensor(b)).numpy(), a @ b)
        np.testing.assert_array_equal(parallel.matmul(b.T, a), b.T @ a)


def test_an_inference_linear_on_another_thread_keeps_the_split_and_leaves_blas_alone(monkeypatch):
    """Only the thread that set the count may give BLAS its threads; another thread's few-row
    inference product keeps numformer's split (whole on one pinned BLAS thread it was slower)."""
    import threading

    setter, getter = parallel._find_blas()
    rng = np.random.default_rng(0)
    layer = nf.nn.Linear(384, 1536)
    x = nf.tensor(rng.standard_normal((68, 384)).astype(np.float32))
    results, splits = [], []
    split = parallel.parallel_for
    monkeypatch.setattr(parallel, "parallel_for", lambda n, fn, *a: (splits.append(n), split(n, fn, *a)))

    def infer():
        with nf.no_grad():
            results.append(layer(x).numpy())

    with parallel.num_threads(2):
        worker = threading.Thread(target=infer)
        worker.start()
        worker.join()
        assert getter() == 1 and not parallel._blas_released
    assert splits, "the product did not go through numformer's split"
    expected = x.numpy() @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(results[0], expected, rtol=1e-5, atol=1e-5)


def test_a_products_dtype_does_not_depend_on_the_split():
    """bfloat16 operands: NumPy's whole product is float32, and so is every split one (rows,
    skinny blocks) and the serial path; the threads never change a result's dtype."""
    import ml_dtypes  # a dependency of onnx, in the dev extra

    rng = np.random.default_rng(0)
    for m, k, n in ((64, 32, 16), (600, 128, 120), (4, 128, 4096)):
        x = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
        w = rng.standard_normal((n, k)).astype(ml_dtypes.bfloat16)
        whole = (x @ w.T).dtype
        dtypes = set()
        for threads in (1, 2):
            with parallel.num_threads(threads), split_everything() if threads > 1 else contextlib.nullcontext():
                dtypes.add(parallel.matmul(x, w.T).dtype)
                with nf.no_grad():
                    dtypes.add(F.linear(nf.tensor(x), nf.tensor(w)).dtype)
        assert dtypes == {whole} == {np.dtype(np.float32)}, (m, k, n, dtypes)
