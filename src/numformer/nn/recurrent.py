"""Recurrent layers (seed section 1's baseline): ``RNN`` and ``LSTM``, PyTorch's parameters.

The time loop is inherent: step t needs step t-1's hidden state, which is exactly the
sequential bottleneck the seed contrasts with attention. Input projections for all steps are
still computed in one matrix multiply before the loop, and each layer's loop is one primitive
with a hand-derived backward (``ops.recurrent``: ``RNNLayer``, ``LSTMLayer``).

Layout: ``batch_first=False`` is the default, as PyTorch's: input ``(L, N, input_size)``;
``batch_first=True`` takes ``(N, L, input_size)``. The states ``(num_layers, N, hidden_size)`` are the same either way.
``bidirectional`` and ``proj_size`` are PyTorch options numformer does not have: asking for
them is an error, never a silent single-direction layer.
"""

from __future__ import annotations

import math
import numbers

from numformer.backend import xp
from numformer.nn import functional as F
from numformer.nn import init
from numformer.nn.checks import dtype_or_default
from numformer.nn.module import Module, Parameter
from numformer.ops.recurrent import LSTMLayer, RNNLayer
from numformer.tensor import Tensor, stack


class _RecurrentBase(Module):
    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        sizes = {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers}
        for arg, value in sizes.items():  # PyTorch: TypeError for a non-integer, ValueError below 1
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name}: {arg} must be an integer, got {type(value).__name__} {value!r}")
            if value < 1:
                raise ValueError(f"{name}: {arg} must be >= 1, got {value}")
        input_size, hidden_size, num_layers = (int(v) for v in sizes.values())
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"{name}: batch_first must be True or False, got {batch_first!r}")
        if bidirectional:
            raise ValueError(f"{name}: bidirectional=True is not supported (numformer's layers run one direction)")
        if proj_size:
            raise ValueError(f"{name}: proj_size is not supported, got {proj_size!r}")
        self.bidirectional, self.proj_size = False, 0  # PyTorch's attributes, for code that reads them
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        d, G = dtype_or_default(dtype), self.gates * hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size
            setattr(self, f"weight_ih_l{layer}", Parameter(xp.zeros((G, in_size), dtype=d)))
            setattr(self, f"weight_hh_l{layer}", Parameter(xp.zeros((G, hidden_size), dtype=d)))
            if bias:
                setattr(self, f"bias_ih_l{layer}", Parameter(xp.zeros(G, dtype=d)))
                setattr(self, f"bias_hh_l{layer}", Parameter(xp.zeros(G, dtype=d)))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _weights(self, layer):
        get = lambda name: getattr(self, f"{name}_l{layer}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def _prepare(self, x):
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: input must be a numformer Tensor, got {_kind(x)}")
        shape = tuple(x.shape)
        dtype = self._weights(0)[0].dtype
        if x.dtype != dtype:
            raise TypeError(f"{name}: input must be {dtype} like the weights, got {x.dtype} (see .to(dtype))")
        layout = "(N, L, " if self.batch_first else "(L, N, "
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input must be {layout}{self.input_size}) or (L, {self.input_size}), got shape {x.shape}"
            )
        batched = x.ndim == 3
        if not batched:
            x = x.unsqueeze(0)
        elif not self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[1] == 0:
            raise ValueError(f"{name}: the sequence must have at least one step, got shape {shape}")
        return x, batched

    def _initial(self, state, N, batched, dtype):
        if state is None:
            return [Tensor(xp.zeros((N, self.hidden_size), dtype=dtype))] * self.num_layers
        if not isinstance(state, Tensor):
            raise TypeError(f"{type(self).__name__}: initial state must be a numformer Tensor, got {_kind(state)}")
        expected = (self.num_layers, N, self.hidden_size) if batched else (self.num_layers, self.hidden_size)
        if state.shape != expected:
            hint = ""
            if batched and state.shape[1:2] != (N,):
                hint = f" (N = {N} is the input's dim {0 if self.batch_first else 1}: batch_first={self.batch_first})"
            raise ValueError(
                f"{type(self).__name__}: initial state must have shape {expected}, got {tuple(state.shape)}{hint}"
            )
        if state.dtype != dtype:
            raise TypeError(f"{type(self).__name__}: initial state must be {dtype} like the input, got {state.dtype}")
        state = state if batched else state.unsqueeze(1)
        return [state[i] for i in range(self.num_layers)]

    def _finish(self, out, finals, batched):
        h_n = stack(finals, dim=0)
        if not batched:
            return out.squeeze(0), h_n.squeeze(1)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n

    def _between_layers(self, x, layer):
        if layer < self.num_layers - 1:
            return F.dropout(x, self.dropout, self.training)
        return x

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first={self.batch_first}"


def _kind(value) -> str:
    """A value's type for an error message, with its module when it is not a builtin
    (``torch.Tensor``, ``numpy.ndarray``)."""
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"


class RNN(_RecurrentBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu.

    ``forward(input (L, N, input_size), hx (num_layers, N, H) = zeros)`` returns
    ``(output (L, N, H), h_n (num_layers, N, H))`` (with ``batch_first=True``: input and output
    ``(N, L, ...)``); unbatched ``(L, input_size)`` works too."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dtype=None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, dtype=dtype)

    def forward(self, input, hx=None):  # noqa: A002 - PyTorch's argument name
        """Run the sequence through every layer, one step at a time (the seed's section 1: T
        dependent steps).

        Shape: input ``(N, L, input_size)`` (or unbatched ``(L, input_size)``), hx
        ``(num_layers, N, hidden_size)`` (default zeros) -> ``(output (N, L, hidden_size),
        h_n (num_layers, N, hidden_size))``.

        Raises:
            ValueError: the last dim is not ``input_size``, no step, or hx has the wrong shape.
            TypeError: input or hx is not a Tensor, the input's dtype is not the weights', or
            hx's is not the input's."""
        x, batched = self._prepare(input)
        N = x.shape[0]
        hs = self._initial(hx, N, batched, x.dtype)
        finals = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer)
            projected = F.linear(x, w_ih, b_ih)  # all steps at once: (N, L, H)
            bias = () if b_hh is None else (b_hh,)
            out = RNNLayer.apply(projected, w_hh, hs[layer], *bias, relu=self.nonlinearity == "relu")
            finals.append(out[:, -1])
            x = self._between_layers(out, layer)
        return self._finish(x, finals, batched)


class LSTM(_RecurrentBase):
    """LSTM with PyTorch's gate order (input, forget, cell, output) in ``weight_ih_l{k}``
    ``(4H, in)``. ``forward(input, (h_0, c_0) = zeros)`` returns
    ``(output (L, N, H), (h_n, c_n))``, each state ``(num_layers, N, H)`` (with
    ``batch_first=True``: input and output ``(N, L, ...)``)."""

    gates = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype=None,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size, dtype=dtype
        )

    def forward(self, input, hx=None):  # noqa: A002 - PyTorch's argument name
        """Run the sequence through every layer (Hochreiter and Schmidhuber, 1997; PyTorch's gate
        order i, f, g, o).

        Shape: input ``(N, L, input_size)`` (or ``(L, input_size)``), hx ``(h_0, c_0)`` each
        ``(num_layers, N, hidden_size)`` (default zeros) -> ``(output (N, L, hidden_size),
        (h_n, c_n))``.

        Raises:
            ValueError: the last dim is not ``input_size``, no step, or a state has the wrong shape.
            TypeError: input or a state is not a Tensor, hx is not a (h_0, c_0) pair, the
            input's dtype is not the weights', or a state's is not the input's."""
        x, batched = self._prepare(input)
        N = x.shape[0]
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2 or any(v is None for v in hx)):
            got = (
                type(hx).__name__
                if not isinstance(hx, (tuple, list))
                else f"({', '.join(type(v).__name__ for v in hx)})"
            )
            raise TypeError(f"LSTM: hx must be a (h_0, c_0) pair of Tensors, got {got}")
        h0, c0 = (None, None) if hx is None else hx
        hs = self._initial(h0, N, batched, x.dtype)
        cs = self._initial(c0, N, batched, x.dtype)
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer)
            projected = F.linear(x, w_ih, b_ih)  # all steps at once: (N, L, 4H)
            bias = () if b_hh is None else (b_hh,)
            states = LSTMLayer.apply(projected, w_hh, hs[layer], cs[layer], *bias)  # (2, N, L, H): h, c
            out = states[0]
            finals_h.append(out[:, -1])
            finals_c.append(states[1, :, -1])
            x = self._between_layers(out, layer)
        out, h_n = self._finish(x, finals_h, batched)
        c_n = stack(finals_c, dim=0)
        return out, (h_n, c_n if batched else c_n.squeeze(1))
