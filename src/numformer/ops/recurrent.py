"""Recurrent layers' time loops, one primitive per layer with a hand-derived backward
(backpropagation through time).

Step t needs step t-1's state, so the loop over time is inherent (the seed's section 1). What
the kernel removes is the graph: recorded op by op, a sequence of L steps made ~15 L nodes,
and each step's slice of the input projections handed back a gradient the size of the whole
sequence (``GetItem``'s scatter), O(L^2) memory traffic in backward. Here forward runs the
loop on arrays, time-major so each step's rows are contiguous, and backward runs it in
reverse, with everything that does not depend on the carried gradient (the gates'
derivatives) computed for a block of steps at once before the loop reaches it.

Each primitive takes the layer's input ``x`` ``(N, L, in)`` and both weight matrices. The input
projections ``x W_ih^T`` are made time-major directly (from ``x``'s rows step by step, which are
``x``'s own memory when the caller's input is time-major, as PyTorch's default layout is), one
GEMM per block of steps with both biases added in cache; backward's ``dL/dx``, ``dL/dW_ih`` and
the biases' gradients come from the same time-major gradient, so no projection-sized array is
ever transposed. A step then costs one small GEMM against ``W_hh`` and a few elementwise passes,
and the loop runs a block of steps while another thread prepares the next (``_pipeline``).
Inputs are ``(x, W_ih, W_hh, *initial states, *biases)``, the biases ``(b_ih, b_hh)`` or none.
"""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp
from numformer.ops._threads import concurrently, matmul

# Values of a block of steps (TIME_TILE / (N G) steps, 2 MiB of float32 gates): the loops run a
# block while another thread projects the next block's inputs (forward) or computes its factors
# (the LSTM's backward) and what the last block's gradients give (``_pipeline``). Measured on
# the AMD EPYC (Zen 5) of bench/results, LSTM 64 x 200 x 64 forward+backward: 0.87x the serial
# time at this size against 0.99x at 1 << 17 and 0.91x at 1 << 20: the side thread's NumPy calls
# take the GIL between them, which stalls the loop, and larger blocks make fewer, longer calls.
TIME_TILE = 1 << 19


def _swap(a, axis=0):
    """A C-contiguous copy of ``a`` with axes ``axis`` and ``axis + 1`` swapped: (N, L, ...) <->
    (L, N, ...). Always a copy (``ascontiguousarray`` would return the input itself when N or
    L is 1, and the loops write into what this returns)."""
    return xp.swapaxes(a, axis, axis + 1).copy()


def _previous(first, states):
    """(L, N, H): the state before each step, ``first`` then ``states[:-1]``."""
    prev = xp.empty_like(states)
    prev[0] = first
    prev[1:] = states[:-1]
    return prev


def _project(x, w_ih, bias, scale=None):
    """Every step's input projection, time-major, a block of steps at a time: ``(xt, pre,
    project)`` with ``xt`` the rows of ``x`` ``(N, L, in)`` step by step ``(L N, in)`` (``x``'s own
    memory when it is a transposed view of time-major data), ``pre`` an uninitialised
    ``(L, N, G)`` and ``project((start, end))`` filling ``pre[start:end]`` with
    ``(x_t W_ih^T + bias) scale`` for those steps (one GEMM, the bias added in cache; split over
    the kernel threads where it runs alone, whole on one where it runs beside the loop).
    ``scale`` (per gate row; powers of two, so exact) multiplies the weights and the bias, not
    the products; ``bias`` ``(G,)`` or None."""
    N, L, _ = x.shape
    xt = xp.ascontiguousarray(xp.swapaxes(x, 0, 1)).reshape(L * N, x.shape[2])
    if scale is not None:
        w_ih = w_ih * scale[:, None]
        bias = None if bias is None else bias * scale
    pre = xp.empty((L, N, w_ih.shape[0]), dtype=x.dtype)

    def project(block):
        rows = pre[block[0] : block[1]].reshape(-1, pre.shape[2])
        matmul(xt[block[0] * N : block[1] * N], w_ih.T, bias, out=rows)

    return xt, pre, project


def _blocks(L: int, N: int, G: int, reverse: bool = False) -> list:
    """``(start, end)`` of the blocks of steps a layer's loops run at a time: ``TIME_TILE``
    values of ``(N, G)`` each, first steps first (last first if ``reverse``)."""
    span = max(1, TIME_TILE // (N * G))
    blocks = [(start, min(start + span, L)) for start in range(0, L, span)]
    return blocks[::-1] if reverse else blocks


def _pipeline(blocks: list, prepare, run, finish, work: int) -> None:
    """``run(block, prepare(block))`` for each of ``blocks`` in order on the calling thread (the
    time loop, which only one thread can run), while another thread prepares the next block
    (what its loop reads, computed for all its steps at once) and finishes the previous one
    (what needs its loop's results, such as products with the finished gradients):
    ``concurrently``, so serially, in the same order, with one thread or under ``work``
    multiply-adds a block (the loop's products with W_hh, which stand for both tasks': the side's
    are of the same order, more where the input is wider); the results are the same either way.
    The side thread's work is a few large NumPy calls per block, which hold the GIL only between
    them."""
    ready = prepare(blocks[0])
    if len(blocks) == 1:
        run(blocks[0], ready)
        finish(blocks[0])
        return
    for k, block in enumerate(blocks):
        following = []

        def side(k=k, following=following):
            if k + 1 < len(blocks):
                following.append(prepare(blocks[k + 1]))
            if k:
                finish(blocks[k - 1])

        concurrently([lambda: run(block, ready), side], work)  # noqa: B023 - called within this iteration
        ready = following[0] if following else None
    finish(blocks[-1])


def _step_work(N: int, H: int, G: int) -> int:
    """Multiply-adds of a block's products with W_hh (``_pipeline``'s ``work``)."""
    return max(1, TIME_TILE // (N * G)) * N * H * G


def _gradients(fn, dz, first, states, dx=None, to_input_side=None):
    """The gradients every layer's backward ends with, in input order ``(dL/dx, dL/dW_ih,
    dL/dW_hh)`` and ``(dL/db_ih, dL/db_hh)`` (empty without biases; None where not needed),
    from ``dz`` ``(L N, G)``: dq, the gradient of every step's hidden product, first (dL/dW_hh =
    sum_t dq_t^T h_{t-1}, ``first`` is h_{-1}; dL/db_hh = sum dq), then dp, that of every step's
    input projection (dL/dx = dp W_ih ``(N, L, in)``, dL/dW_ih = dp^T x, dL/db_ih = sum dp). The
    two are the same array but for the GRU's new gate: ``to_input_side(dz)`` turns dq into dp in
    place between the two halves. ``dx`` is dL/dx time-major ``(L N, in)`` where the caller
    computed it already."""
    needs = fn.needs_grad
    L, N, H = states.shape
    dw_hh = matmul(dz.T, _previous(first, states).reshape(L * N, H)) if needs[2] else None
    db_hh = dz.sum(0) if fn.biased and (needs[-1] or needs[-2]) else None
    if to_input_side is not None:
        to_input_side(dz)
    if needs[0]:
        dx = (matmul(dz, fn.w_ih) if dx is None else dx).reshape(L, N, -1).swapaxes(0, 1)
    dw_ih = matmul(dz.T, fn.xt) if needs[1] else None
    if not fn.biased:
        return (dx, dw_ih, dw_hh), ()
    db_ih = None
    if needs[-2]:
        db_ih = dz.sum(0) if to_input_side is not None else db_hh.copy()
    return (dx, dw_ih, dw_hh), (db_ih, db_hh if needs[-1] else None)


class LSTMLayer(Function):
    """One LSTM layer over a sequence, PyTorch's gate order (input, forget, cell, output).

    Inputs: ``x`` ``(N, L, in)``, ``w_ih`` ``(4H, in)``, ``w_hh`` ``(4H, H)``, ``h0`` and ``c0``
    ``(N, H)``, optionally ``b_ih`` and ``b_hh`` ``(4H,)`` (both or neither). Output
    ``(2, N, L, H)``: the hidden states h_t (``[0]``) and cell states c_t (``[1]``) of every step.

    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh; i, f, o = sigmoid(z), g = tanh(z);
    c_t = f c_{t-1} + i g; h_t = o tanh(c_t). The sigmoids are written through tanh,
    sigmoid(x) = tanh(x/2)/2 + 1/2, so one tanh pass covers all four gates (halving is exact in
    binary floating point, so the weights and biases are halved once, before the loop).

    Backward, from dh_t (the output's gradient plus dz_{t+1} W_hh) and dc_t (its gradient plus
    dc_{t+1} f_{t+1}): dc_t += dh_t o (1 - tanh^2 c_t); dz = [dc g i(1-i), dc c_{t-1} f(1-f),
    dc i (1-g^2), dh tanh(c_t) o(1-o)]; dc_{t-1} = dc_t f; dh_{t-1} = dz W_hh. Then dL/dx = dz W_ih,
    dL/dW_ih = sum_t dz_t^T x_t, dL/dW_hh = sum_t dz_t^T h_{t-1}, dL/db_ih = dL/db_hh = sum dz,
    dL/dh0 and dL/dc0 the carries at t = 0.
    """

    # Every gradient runs the loop back, which reads W_hh, and all but c0's read c0 too (step 0's
    # forget-gate factor; c0's own gradient, the carry f_0 dc_0, does not); dL/dx reads W_ih too,
    # dL/dW_ih x, dL/dW_hh h0: x is version-checked only when W_ih wants a gradient, as a Linear's
    # (inputs x, W_ih, W_hh, h0, c0, b_ih, b_hh)
    grad_reads = ((1, 2, 4), (0, 2, 4), (2, 3, 4), (2, 4), (2,), (2, 4), (2, 4))

    def forward(self, x, w_ih, w_hh, h0, c0, *biases):
        N, L, _ = x.shape
        self.steps = L  # T dependent steps (the tour counts them)
        G = w_hh.shape[0]
        H = G // 4
        dt = x.dtype
        half = xp.full(G, 0.5, dtype=dt)
        half[2 * H : 3 * H] = 1.0  # the cell candidate g is a plain tanh
        shift = xp.full(G, 0.5, dtype=dt)
        shift[2 * H : 3 * H] = 0.0
        xt, pre, project = _project(x, w_ih, biases[0] + biases[1] if biases else None, half)  # (L, N, 4H)
        w_t = xp.ascontiguousarray((w_hh * half[:, None]).T)  # (H, 4H)
        train = any(self.needs_grad)
        out = xp.empty((2, L, N, H), dtype=dt)
        hs, cs = out[0], out[1]
        h, c = h0, c0

        def run(block, _):
            nonlocal h, c
            for t in range(*block):
                z = pre[t]
                z += h @ w_t
                xp.tanh(z, out=z)
                z *= half
                z += shift
                i, f, g, o = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
                xp.multiply(f, c, out=cs[t])
                cs[t] += i * g
                xp.tanh(cs[t], out=hs[t])
                hs[t] *= o
                h, c = hs[t], cs[t]

        _pipeline(_blocks(L, N, G), project, run, lambda block: None, _step_work(N, H, G))
        if train:  # pre now holds the gates, activated in place
            self.gates, self.hs, self.cs, self.w_ih, self.w_hh = pre, hs, cs, w_ih, w_hh
            self.xt = xt if self.needs_grad[1] else None  # only dL/dW_ih reads the input
            self.h0, self.c0, self.biased = h0, c0, bool(biases)
        return _swap(out, 1)

    def backward(self, grad):
        gates, hs, w_hh, w_ih = self.gates, self.hs, self.w_hh, self.w_ih
        L, N, G = gates.shape
        H = G // 4
        g_h = _swap(grad[0])
        g_c = _swap(grad[1]) if xp.any(grad[1]) else None
        dz = xp.empty((L, N, 4, H), dtype=gates.dtype)
        flat = dz.reshape(L * N, G)
        dx = xp.empty((L * N, w_ih.shape[1]), dtype=gates.dtype) if self.needs_grad[0] else None
        dh = xp.zeros((N, H), dtype=gates.dtype)
        dc = xp.zeros((N, H), dtype=gates.dtype)

        def run(block, factors):
            nonlocal dh, dc
            start, end = block
            by_dc, by_dh, dc_from_dh = factors
            f = gates[start:end, :, H : 2 * H]
            for t in range(end - 1, start - 1, -1):
                k = t - start
                dh += g_h[t]
                if g_c is not None:
                    dc += g_c[t]
                dc += dh * dc_from_dh[k]
                xp.multiply(by_dc[k], dc[:, None], out=dz[t, :, :3])
                xp.multiply(dh, by_dh[k], out=dz[t, :, 3])
                dc *= f[k]
                dh = dz[t].reshape(N, G) @ w_hh

        def finish(block):  # the block's dz is final: its rows of dL/dx
            if dx is not None:
                matmul(flat[block[0] * N : block[1] * N], w_ih, out=dx[block[0] * N : block[1] * N])

        blocks = _blocks(L, N, G, reverse=True)
        _pipeline(blocks, lambda block: self._factors(*block), run, finish, _step_work(N, H, G))
        weights, biases = _gradients(self, flat, self.h0, hs, dx)
        return weights + (dh, dc) + biases

    def _factors(self, start: int, end: int):
        """What multiplies the carried gradients at steps ``start:end``, for those steps at
        once: ``by_dc`` (dz_{i,f,g} = dc by_dc), ``by_dh`` (dz_o = dh by_dh) and
        ``dc_from_dh`` (dc += dh dc_from_dh). The gates' derivatives, s - s^2 for the sigmoids
        and 1 - g^2 for g, multiply [g, c_{t-1}, i, tanh c_t] in one pass over all four."""
        gates, cs = self.gates[start:end], self.cs[start:end]
        H = gates.shape[-1] // 4
        slope = gates * gates
        xp.subtract(1, slope[..., 2 * H : 3 * H], out=slope[..., 2 * H : 3 * H])
        xp.subtract(gates[..., : 2 * H], slope[..., : 2 * H], out=slope[..., : 2 * H])
        xp.subtract(gates[..., 3 * H :], slope[..., 3 * H :], out=slope[..., 3 * H :])
        partner = xp.empty_like(gates)
        partner[..., :H] = gates[..., 2 * H : 3 * H]
        partner[0, :, H : 2 * H] = self.c0 if start == 0 else self.cs[start - 1]
        partner[1:, :, H : 2 * H] = cs[:-1]
        partner[..., 2 * H : 3 * H] = gates[..., :H]
        tanh_c = xp.tanh(cs, out=partner[..., 3 * H :])
        slope *= partner
        dc_from_dh = tanh_c * tanh_c
        xp.subtract(1, dc_from_dh, out=dc_from_dh)
        dc_from_dh *= gates[..., 3 * H :]
        return slope[..., : 3 * H].reshape(cs.shape[:2] + (3, H)), slope[..., 3 * H :], dc_from_dh


class RNNLayer(Function):
    """One Elman RNN layer over a sequence: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),
    act tanh or relu.

    Inputs: ``x`` ``(N, L, in)``, ``w_ih`` ``(H, in)``, ``w_hh`` ``(H, H)``, ``h0`` ``(N, H)``,
    optionally ``b_ih`` and ``b_hh`` ``(H,)`` (both or neither); option ``relu``. Output
    ``(N, L, H)``.

    Backward: dz_t = (dL/dh_t + dz_{t+1} W_hh) act'(z_t), with act' = 1 - h^2 (tanh) or
    [h > 0] (relu), computed for all steps before the loop; dL/dx = dz W_ih, dL/dW_ih =
    sum_t dz_t^T x_t, dL/dW_hh = sum_t dz_t^T h_{t-1}, dL/db_ih = dL/db_hh = sum dz, dL/dh0 =
    dz_0 W_hh.
    """

    # the loop back reads W_hh; dL/dx reads W_ih too, dL/dW_ih x, dL/dW_hh h0 (x, W_ih, W_hh, h0, b_ih, b_hh)
    grad_reads = ((1, 2), (0, 2), (2, 3), (2,), (2,), (2,))

    def forward(self, x, w_ih, w_hh, h0, *biases, relu=False):
        self.steps = x.shape[1]  # T dependent steps (the tour counts them)
        xt, hs, project = _project(x, w_ih, biases[0] + biases[1] if biases else None)  # each step's z, then h
        L, N, H = hs.shape
        w_t = xp.ascontiguousarray(w_hh.T)
        h = h0

        def run(block, _):
            nonlocal h
            for t in range(*block):
                z = hs[t]
                z += h @ w_t
                if relu:
                    xp.maximum(z, 0, out=z)
                else:
                    xp.tanh(z, out=z)
                h = z

        _pipeline(_blocks(L, N, H), project, run, lambda block: None, _step_work(N, H, H))
        if any(self.needs_grad):
            self.hs, self.w_ih, self.w_hh, self.h0, self.relu = hs, w_ih, w_hh, h0, relu
            self.xt = xt if self.needs_grad[1] else None  # only dL/dW_ih reads the input
            self.biased = bool(biases)
        return _swap(hs)

    def backward(self, grad):
        hs, w_hh = self.hs, self.w_hh
        L, N, H = hs.shape
        g_h = _swap(grad)
        slope = (hs > 0).astype(hs.dtype) if self.relu else 1 - hs * hs
        dz = xp.empty_like(hs)
        dh = xp.zeros((N, H), dtype=hs.dtype)
        for t in range(L - 1, -1, -1):
            dh += g_h[t]
            xp.multiply(dh, slope[t], out=dz[t])
            dh = dz[t] @ w_hh
        dz = dz.reshape(L * N, H)
        weights, biases = _gradients(self, dz, self.h0, hs)
        return weights + (dh,) + biases


class GRULayer(Function):
    """One GRU layer over a sequence (Cho et al., 2014), PyTorch's gate order (reset, update,
    new) and its placement of the reset gate (after the hidden projection: ONNX's
    ``linear_before_reset``).

    Inputs: ``x`` ``(N, L, in)``, ``w_ih`` ``(3H, in)``, ``w_hh`` ``(3H, H)``, ``h0`` ``(N, H)``,
    optionally ``b_ih`` and ``b_hh`` ``(3H,)`` (both or neither). Output ``(N, L, H)``: the hidden
    states.

    p_t = x_t W_ih^T + b_ih, q_t = h_{t-1} W_hh^T + b_hh; r = sigmoid(p_r + q_r),
    z = sigmoid(p_z + q_z), n = tanh(p_n + r q_n); h_t = (1 - z) n + z h_{t-1}. The sigmoids are
    tanh(x/2)/2 + 1/2, with the reset and update rows of both weights and of b_ih + b_hh halved
    once before the loop (exact); b_hh's new-gate part, which r scales, is added each step.

    Backward, from dh_t (the output's gradient plus what step t+1 sends back): with
    a = (1 - z)(1 - n^2), dp = dh [a q_n r(1 - r), (h_{t-1} - n) z(1 - z), a] and
    dq = dh [a q_n r(1 - r), (h_{t-1} - n) z(1 - z), a r]: the brackets depend only on the
    forward, so they are computed for all steps before the loop. Then dh_{t-1} = dh z + dq W_hh;
    dL/dx = dp W_ih, dL/dW_ih = sum_t dp_t^T x_t, dL/dW_hh = sum_t dq_t^T h_{t-1},
    dL/db_ih = sum dp, dL/db_hh = sum dq, dL/dh0 the carry at t = 0.
    """

    # the gates' factors read h0 and the loop back W_hh; dL/dx reads W_ih too, dL/dW_ih x
    # (x, W_ih, W_hh, h0, b_ih, b_hh)
    grad_reads = ((1, 2, 3), (0, 2, 3), (2, 3), (2, 3), (2, 3), (2, 3))

    def forward(self, x, w_ih, w_hh, h0, *biases):
        self.steps = x.shape[1]  # T dependent steps (the tour counts them)
        G = w_hh.shape[0]
        H = G // 3
        dt = x.dtype
        half = xp.full(G, 0.5, dtype=dt)  # r and z go through tanh at half their argument
        half[2 * H :] = 1.0
        bias = b_hn = None
        if biases:
            bias = biases[0].copy()
            bias[: 2 * H] += biases[1][: 2 * H]
            b_hn = biases[1][2 * H :]
        xt, pre, project = _project(x, w_ih, bias, half)  # (L, N, 3H): p, overwritten by the gates r, z, n
        L, N, _ = pre.shape
        w_t = xp.ascontiguousarray((w_hh * half[:, None]).T)  # (H, 3H)
        train = any(self.needs_grad)
        q_n = xp.empty((L, N, H), dtype=dt) if train else None
        hs = xp.empty((L, N, H), dtype=dt)
        h = h0

        def run(block, _):
            nonlocal h
            for t in range(*block):
                q = h @ w_t
                gates = pre[t]
                rz = gates[:, : 2 * H]
                rz += q[:, : 2 * H]
                xp.tanh(rz, out=rz)
                rz *= 0.5
                rz += 0.5
                r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
                qn = q[:, 2 * H :]
                if b_hn is not None:
                    qn += b_hn
                if train:
                    q_n[t] = qn
                n += r * qn
                xp.tanh(n, out=n)
                xp.subtract(h, n, out=hs[t])  # h_t = n + z (h_{t-1} - n)
                hs[t] *= z
                hs[t] += n
                h = hs[t]

        _pipeline(_blocks(L, N, G), project, run, lambda block: None, _step_work(N, H, G))
        if train:
            self.gates, self.q_n, self.hs, self.w_ih, self.w_hh = pre, q_n, hs, w_ih, w_hh
            self.xt = xt if self.needs_grad[1] else None  # only dL/dW_ih reads the input
            self.h0, self.biased = h0, bool(biases)
        return _swap(hs)

    def backward(self, grad):
        gates, hs, w_hh = self.gates, self.hs, self.w_hh
        L, N, G = gates.shape
        H = G // 3
        g_h = _swap(grad)
        r, z, n = gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H :]
        a = (1 - z) * (1 - n * n)
        by_dh = xp.empty((L, N, 3, H), dtype=gates.dtype)  # dq_t = dh_t * by_dh[t]
        xp.multiply(a * self.q_n, r * (1 - r), out=by_dh[:, :, 0])
        xp.multiply(_previous(self.h0, hs) - n, z * (1 - z), out=by_dh[:, :, 1])
        xp.multiply(a, r, out=by_dh[:, :, 2])
        dq = xp.empty((L, N, 3, H), dtype=gates.dtype)
        carried = xp.empty((L, N, H), dtype=gates.dtype)  # dh_t, kept for dp's n part
        dh = xp.zeros((N, H), dtype=gates.dtype)
        for t in range(L - 1, -1, -1):
            dh += g_h[t]
            carried[t] = dh
            xp.multiply(dh[:, None], by_dh[t], out=dq[t])
            dh = dh * z[t] + dq[t].reshape(N, G) @ w_hh

        def to_input_side(flat):  # dp equals dq but for the new gate, which r does not scale
            xp.multiply(carried, a, out=dq[:, :, 2])

        weights, biases = _gradients(self, dq.reshape(L * N, G), self.h0, hs, to_input_side=to_input_side)
        return weights + (dh,) + biases
