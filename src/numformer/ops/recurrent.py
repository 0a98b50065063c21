"""Recurrent layers' time loops, one primitive per layer with a hand-derived backward
(backpropagation through time).

Step t needs step t-1's state, so the loop over time is inherent (the seed's section 1). What
the kernel removes is the graph: recorded op by op, a sequence of L steps made ~15 L nodes,
and each step's slice of the input projections handed back a gradient the size of the whole
sequence (``GetItem``'s scatter), O(L^2) memory traffic in backward. Here forward runs the
loop on arrays, time-major so each step's rows are contiguous, and backward runs it in
reverse, with everything that does not depend on the carried gradient (the gates' derivatives)
computed for all steps at once before the loop. The input projections ``x W_ih^T + b_ih`` of
all steps are one GEMM outside (``Linear``), so a step costs one small GEMM against ``W_hh``
and a few elementwise passes.
"""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp
from numformer.ops._threads import matmul

# Gate values per block of steps in the LSTM's backward (TIME_TILE / (N 4H) steps a block, 512 KiB
# of float32): its factors, computed a block at a time, are still in cache when the loop reads them.
TIME_TILE = 1 << 17


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


def _hidden_grads(dz, first, states, needs, bias: int):
    """dL/dW_hh = sum_t dz_t^T h_{t-1} (one GEMM over every step; ``first`` is h_{-1}) and
    dL/db_hh = sum dz (None where not needed; ``bias`` is b_hh's input index)."""
    flat = dz.reshape(-1, dz.shape[-1])
    dw = matmul(flat.T, _previous(first, states).reshape(-1, states.shape[-1])) if needs[1] else None
    db = flat.sum(0) if len(needs) > bias and needs[bias] else None
    return dw, db


class LSTMLayer(Function):
    """One LSTM layer over a sequence, PyTorch's gate order (input, forget, cell, output).

    Inputs: ``projected`` ``(N, L, 4H)`` = x W_ih^T + b_ih for every step, ``w_hh`` ``(4H, H)``,
    ``h0`` and ``c0`` ``(N, H)``, optionally ``b_hh`` ``(4H,)``. Output ``(2, N, L, H)``: the hidden
    states h_t (``[0]``) and cell states c_t (``[1]``) of every step.

    z_t = p_t + h_{t-1} W_hh^T + b_hh; i, f, o = sigmoid(z), g = tanh(z); c_t = f c_{t-1} + i g;
    h_t = o tanh(c_t). The sigmoids are written through tanh, sigmoid(x) = tanh(x/2)/2 + 1/2,
    so one tanh pass covers all four gates (halving is exact in binary floating point, so
    W_hh and p are halved once, before the loop).

    Backward, from dh_t (the output's gradient plus dz_{t+1} W_hh) and dc_t (its gradient plus
    dc_{t+1} f_{t+1}): dc_t += dh_t o (1 - tanh^2 c_t); dz = [dc g i(1-i), dc c_{t-1} f(1-f),
    dc i (1-g^2), dh tanh(c_t) o(1-o)]; dc_{t-1} = dc_t f; dh_{t-1} = dz W_hh. dL/dp = dz,
    dL/dW_hh = sum_t dz_t^T h_{t-1}, dL/db_hh = sum dz, dL/dh0 and dL/dc0 the carries at t = 0.
    """

    saves_inputs = (1, 2, 3)  # backward reads W_hh, h0 and c0 (the gates are its own copies)

    def forward(self, projected, w_hh, h0, c0, *b_hh):
        self.steps = projected.shape[1]  # T dependent steps (the tour counts them)
        N, L, G = projected.shape
        H = G // 4
        dt = projected.dtype
        half = xp.full(G, 0.5, dtype=dt)
        half[2 * H : 3 * H] = 1.0  # the cell candidate g is a plain tanh
        shift = xp.full(G, 0.5, dtype=dt)
        shift[2 * H : 3 * H] = 0.0
        pre = _swap(projected)  # (L, N, 4H)
        if b_hh:
            pre += b_hh[0]
        pre *= half
        w_t = xp.ascontiguousarray((w_hh * half[:, None]).T)  # (H, 4H)
        train = any(self.needs_grad)
        gates = pre if train else None  # activated in place, kept for backward
        out = xp.empty((2, L, N, H), dtype=dt)
        hs, cs = out[0], out[1]
        h, c = h0, c0
        for t in range(L):
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
        if train:
            self.gates, self.hs, self.cs, self.w_hh, self.h0, self.c0 = gates, hs, cs, w_hh, h0, c0
        return _swap(out, 1)

    def backward(self, grad):
        gates, hs, w_hh = self.gates, self.hs, self.w_hh
        L, N, G = gates.shape
        H = G // 4
        g_h = _swap(grad[0])
        g_c = _swap(grad[1]) if xp.any(grad[1]) else None
        dz = xp.empty((L, N, 4, H), dtype=gates.dtype)
        dh = xp.zeros((N, H), dtype=gates.dtype)
        dc = xp.zeros((N, H), dtype=gates.dtype)
        span = max(1, TIME_TILE // (N * G))  # steps per block: its factors stay in cache
        for end in range(L, 0, -span):
            start = max(end - span, 0)
            by_dc, by_dh, dc_from_dh = self._factors(start, end)
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
        dz = dz.reshape(L, N, G)
        dw, db = _hidden_grads(dz, self.h0, hs, self.needs_grad, bias=4)
        dp = _swap(dz) if self.needs_grad[0] else None
        return (dp, dw, dh, dc) + ((db,) if len(self.needs_grad) > 4 else ())

    def _factors(self, start: int, end: int):
        """What multiplies the carried gradients at steps ``start:end``, for those steps at
        once: ``by_dc`` (dz_{i,f,g} = dc by_dc), ``by_dh`` (dz_o = dh by_dh) and
        ``dc_from_dh`` (dc += dh dc_from_dh)."""
        gates, cs = self.gates[start:end], self.cs[start:end]
        H = gates.shape[-1] // 4
        i, f, g, o = gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H : 3 * H], gates[..., 3 * H :]
        prev_c = _previous(self.c0 if start == 0 else self.cs[start - 1], cs)
        tanh_c = xp.tanh(cs)
        by_dc = xp.empty(cs.shape[:2] + (3, H), dtype=gates.dtype)
        xp.multiply(g, i * (1 - i), out=by_dc[:, :, 0])
        xp.multiply(prev_c, f * (1 - f), out=by_dc[:, :, 1])
        xp.multiply(i, 1 - g * g, out=by_dc[:, :, 2])
        return by_dc, tanh_c * o * (1 - o), o * (1 - tanh_c * tanh_c)


class RNNLayer(Function):
    """One Elman RNN layer over a sequence: h_t = act(p_t + h_{t-1} W_hh^T + b_hh), act tanh
    or relu.

    Inputs: ``projected`` ``(N, L, H)`` = x W_ih^T + b_ih for every step, ``w_hh`` ``(H, H)``,
    ``h0`` ``(N, H)``, optionally ``b_hh`` ``(H,)``; option ``relu``. Output ``(N, L, H)``.

    Backward: dz_t = (dL/dh_t + dz_{t+1} W_hh) act'(z_t), with act' = 1 - h^2 (tanh) or
    [h > 0] (relu), computed for all steps before the loop; dL/dp = dz, dL/dW_hh =
    sum_t dz_t^T h_{t-1}, dL/db_hh = sum dz, dL/dh0 = dz_0 W_hh.
    """

    saves_inputs = (1, 2)  # backward reads W_hh and h0

    def forward(self, projected, w_hh, h0, *b_hh, relu=False):
        self.steps = projected.shape[1]  # T dependent steps (the tour counts them)
        N, L, H = projected.shape
        hs = _swap(projected)  # each step's pre-activation, overwritten by its state
        if b_hh:
            hs += b_hh[0]
        w_t = xp.ascontiguousarray(w_hh.T)
        h = h0
        for t in range(L):
            z = hs[t]
            z += h @ w_t
            if relu:
                xp.maximum(z, 0, out=z)
            else:
                xp.tanh(z, out=z)
            h = z
        if any(self.needs_grad):
            self.hs, self.w_hh, self.h0, self.relu = hs, w_hh, h0, relu
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
        dw, db = _hidden_grads(dz, self.h0, hs, self.needs_grad, bias=3)
        dp = _swap(dz) if self.needs_grad[0] else None
        return (dp, dw, dh) + ((db,) if len(self.needs_grad) > 3 else ())


class GRULayer(Function):
    """One GRU layer over a sequence (Cho et al., 2014), PyTorch's gate order (reset, update,
    new) and its placement of the reset gate (after the hidden projection: ONNX's
    ``linear_before_reset``).

    Inputs: ``projected`` ``(N, L, 3H)`` = x W_ih^T + b_ih for every step, ``w_hh`` ``(3H, H)``,
    ``h0`` ``(N, H)``, optionally ``b_hh`` ``(3H,)``. Output ``(N, L, H)``: the hidden states.

    q_t = h_{t-1} W_hh^T + b_hh; r = sigmoid(p_r + q_r), z = sigmoid(p_z + q_z),
    n = tanh(p_n + r q_n); h_t = (1 - z) n + z h_{t-1}.

    Backward, from dh_t (the output's gradient plus what step t+1 sends back): with
    a = (1 - z)(1 - n^2), dp = dh [a q_n r(1 - r), (h_{t-1} - n) z(1 - z), a] and
    dq = dh [a q_n r(1 - r), (h_{t-1} - n) z(1 - z), a r]: the brackets depend only on the
    forward, so they are computed for all steps before the loop. Then dh_{t-1} = dh z + dq W_hh;
    dL/dW_hh = sum_t dq_t^T h_{t-1}, dL/db_hh = sum dq, dL/dh0 the carry at t = 0.
    """

    saves_inputs = (1, 2)  # backward reads W_hh and h0

    def forward(self, projected, w_hh, h0, *b_hh):
        self.steps = projected.shape[1]  # T dependent steps (the tour counts them)
        N, L, G = projected.shape
        H = G // 3
        dt = projected.dtype
        pre = _swap(projected)  # (L, N, 3H): p, overwritten by the gates r, z, n
        w_t = xp.ascontiguousarray(w_hh.T)  # (H, 3H)
        train = any(self.needs_grad)
        q_n = xp.empty((L, N, H), dtype=dt) if train else None
        hs = xp.empty((L, N, H), dtype=dt)
        h = h0
        for t in range(L):
            q = h @ w_t
            if b_hh:
                q += b_hh[0]
            gates = pre[t]
            rz = gates[:, : 2 * H]
            rz += q[:, : 2 * H]
            rz *= 0.5  # sigmoid(x) = tanh(x / 2) / 2 + 1/2, as the LSTM's
            xp.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
            if train:
                q_n[t] = q[:, 2 * H :]
            n += r * q[:, 2 * H :]
            xp.tanh(n, out=n)
            xp.subtract(h, n, out=hs[t])  # h_t = n + z (h_{t-1} - n)
            hs[t] *= z
            hs[t] += n
            h = hs[t]
        if train:
            self.gates, self.q_n, self.hs, self.w_hh, self.h0 = pre, q_n, hs, w_hh, h0
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
        dw, db = _hidden_grads(dq.reshape(L, N, G), self.h0, hs, self.needs_grad, bias=3)
        dp = None
        if self.needs_grad[0]:
            dq[:, :, 2] = carried * a  # dp equals dq but for the new gate, which r does not scale
            dp = _swap(dq.reshape(L, N, G))
        return (dp, dw, dh) + ((db,) if len(self.needs_grad) > 3 else ())
