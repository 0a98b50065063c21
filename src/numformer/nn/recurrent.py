"""Recurrent layers (seed section 1's baseline): ``RNN``, ``LSTM`` and ``GRU``, PyTorch's
parameters, names and layouts.

The time loop is inherent: step t needs step t-1's hidden state, which is exactly the
sequential bottleneck the seed contrasts with attention. Each layer is one primitive with a
hand-derived backward (``ops.recurrent``: ``RNNLayer``, ``LSTMLayer``, ``GRULayer``) that also
makes the input projections of all steps, large products outside the loop (a block of steps at
a time, on another thread while the loop runs the block before).

Layout: ``batch_first=False`` is the default, as PyTorch's: input ``(L, N, input_size)``;
``batch_first=True`` takes ``(N, L, input_size)``. The states ``(D num_layers, N, hidden_size)``
are the same either way (D = 2 when ``bidirectional``, else 1). ``bidirectional=True`` runs a
second layer over the reversed sequence (its parameters named ``..._reverse``, as PyTorch's)
and concatenates the two outputs, forward first. LSTM's ``proj_size`` is a PyTorch option
numformer does not have: asking for it is an error.
"""

from __future__ import annotations

import math
import numbers
import warnings

from numformer.backend import xp
from numformer.nn import functional as F
from numformer.nn import init
from numformer.nn.checks import FeaturesError, ShapeError, dtype_or_default
from numformer.nn.module import Module, Parameter
from numformer.ops.recurrent import GRULayer, LSTMLayer, RNNLayer
from numformer.tensor import Tensor, cat, stack


class RNNBase(Module):
    """What ``RNN``, ``LSTM`` and ``GRU`` share (PyTorch's ``nn.RNNBase``, for ``isinstance``;
    construct the subclasses): arguments and their checks, parameters named and initialised as
    PyTorch's (U(-1/sqrt(H), 1/sqrt(H))), the layout of inputs and states, and the loop over
    layers and directions.

    Args:
        input_size: the features of each input step.
        hidden_size: H, the features of the hidden state.
        num_layers: stacked layers (each takes the previous one's output sequence).
        bias: learn ``b_ih`` and ``b_hh``.
        batch_first: input and output are ``(N, L, *)``; the default, as PyTorch's, is ``(L, N, *)``.
        dropout: dropout on each layer's output but the last (training only).
        bidirectional: a second pass reads the sequence backwards; outputs concatenate (D = 2).
        proj_size: LSTM only: project the hidden state to this size (0: none).
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the parameters' floating dtype.
    """

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
        device=None,
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
        if not isinstance(bidirectional, bool):
            raise TypeError(f"{name}: bidirectional must be True or False, got {bidirectional!r}")
        if proj_size:
            raise ValueError(f"{name}: proj_size is not supported, got {proj_size!r}")
        if dropout and num_layers == 1:  # as PyTorch warns
            warnings.warn(
                f"{name}: dropout applies between stacked layers (after each but the last), so dropout={dropout} "
                "with num_layers=1 drops nothing",
                UserWarning,
                stacklevel=3,
            )
        self.proj_size = 0  # PyTorch's attribute, for code that reads it
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        directions = 2 if bidirectional else 1
        d, G = dtype_or_default(dtype), self.gates * hidden_size
        for layer in range(num_layers):  # PyTorch's order: per layer, per direction, w_ih w_hh b_ih b_hh
            in_size = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                setattr(self, f"weight_ih_l{layer}{suffix}", Parameter(xp.zeros((G, in_size), dtype=d)))
                setattr(self, f"weight_hh_l{layer}{suffix}", Parameter(xp.zeros((G, hidden_size), dtype=d)))
                if bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", Parameter(xp.zeros(G, dtype=d)))
                    setattr(self, f"bias_hh_l{layer}{suffix}", Parameter(xp.zeros(G, dtype=d)))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)
        if device is not None:
            self.to(device)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def flatten_parameters(self) -> None:
        """PyTorch's cuDNN weight-packing call: here a no-op (the weights are used as they are)."""

    def _weights(self, layer, direction=0):
        suffix = "_reverse" if direction else ""
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}", None)  # noqa: E731
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
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:  # PyTorch: ValueError, RuntimeError
            error = ValueError if x.ndim not in (2, 3) else FeaturesError
            raise error(
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

    def _initial(self, state, N, batched, dtype, name: str = "hx"):
        """The initial states of every layer and direction, each ``(N, H)``, from ``state``
        (``name`` in errors: ``hx``, or the LSTM's ``h_0`` and ``c_0``); zeros when None."""
        count = self.num_layers * self.num_directions
        cls = type(self).__name__
        if state is None:
            return [Tensor(xp.zeros((N, self.hidden_size), dtype=dtype))] * count
        if not isinstance(state, Tensor):
            raise TypeError(f"{cls}: initial state {name} must be a numformer Tensor, got {_kind(state)}")
        expected = (count, N, self.hidden_size) if batched else (count, self.hidden_size)
        if state.shape != expected:
            hint = ""
            if batched and state.shape[1:2] != (N,):
                hint = f" (N = {N} is the input's dim {0 if self.batch_first else 1}: batch_first={self.batch_first})"
            raise ShapeError(  # PyTorch: RuntimeError
                f"{cls}: initial state {name} must have shape {expected}, got {tuple(state.shape)}{hint}"
            )
        if state.dtype != dtype:
            raise TypeError(f"{cls}: initial state {name} must be {dtype} like the input, got {state.dtype}")
        state = state if batched else state.unsqueeze(1)
        return [state[i] for i in range(count)]

    def _run(self, x, states: list):
        """Every layer and direction over ``x`` ``(N, L, in)``: (output ``(N, L, D H)``, per
        kind of state the final ones, ``D num_layers`` of ``(N, H)`` in PyTorch's order)."""
        finals = [[] for _ in states]
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                seq = x if direction == 0 else x.flip(1)  # the reverse direction reads the sequence backwards
                out, last = self._layer(seq, self._weights(layer, direction), [s[k] for s in states])
                outputs.append(out if direction == 0 else out.flip(1))
                for kind, value in zip(finals, last):
                    kind.append(value)
            x = outputs[0] if len(outputs) == 1 else cat(outputs, dim=-1)
            x = self._between_layers(x, layer)
        return x, finals

    def _layer(self, x, weights, states):
        """One layer in one direction: (output ``(N, L, H)``, [final state per kind])."""
        raise NotImplementedError

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
        text = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first={self.batch_first}"
        return text + (", bidirectional=True" if self.bidirectional else "")


def _ordered(weights, states) -> list:
    """A layer primitive's inputs after ``x`` (``ops.recurrent``): W_ih, W_hh, the initial
    states, then b_ih and b_hh when the layer has biases."""
    w_ih, w_hh, b_ih, b_hh = weights
    return [w_ih, w_hh, *states] + ([] if b_ih is None else [b_ih, b_hh])


def _kind(value) -> str:
    """A value's type for an error message, with its module when it is not a builtin
    (``torch.Tensor``, ``numpy.ndarray``)."""
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu.

    ``forward(input (L, N, input_size), hx (D num_layers, N, H) = zeros)`` returns
    ``(output (L, N, D H), h_n (D num_layers, N, H))`` (with ``batch_first=True``: input and
    output ``(N, L, ...)``; D = 2 when ``bidirectional``); unbatched ``(L, input_size)`` works
    too.

    Args:
        input_size: the features of each input step.
        hidden_size: H, the features of the hidden state.
        num_layers: stacked layers (each takes the previous one's output sequence).
        nonlinearity: ``"tanh"`` or ``"relu"``.
        bias: learn ``b_ih`` and ``b_hh``.
        batch_first: input and output are ``(N, L, *)``; the default, as PyTorch's, is ``(L, N, *)``.
        dropout: dropout on each layer's output but the last (training only).
        bidirectional: a second pass reads the sequence backwards; outputs concatenate (D = 2).
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the parameters' floating dtype.
    """

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
        device=None,
        dtype=None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device=device,
            dtype=dtype,
        )

    def forward(self, input, hx=None):  # noqa: A002 - PyTorch's argument name
        """Run the sequence through every layer, one step at a time (the seed's section 1: T
        dependent steps).

        Shape: input ``(L, N, input_size)`` (``(N, L, input_size)`` with ``batch_first``, or
        unbatched ``(L, input_size)``), hx ``(D num_layers, N, hidden_size)`` (default zeros) ->
        ``(output (L, N, D hidden_size), h_n (D num_layers, N, hidden_size))``.

        Raises:
            ValueError: the input is not 2-D or 3-D, or has no step.
            ShapeError: (a RuntimeError, as PyTorch raises, and a ValueError) the last dim is not
            ``input_size`` (``FeaturesError``), or hx has the wrong shape.
            TypeError: input or hx is not a Tensor, the input's dtype is not the weights', or
            hx's is not the input's."""
        x, batched = self._prepare(input)
        hs = self._initial(hx, x.shape[0], batched, x.dtype)
        out, (finals,) = self._run(x, [hs])
        return self._finish(out, finals, batched)

    def _layer(self, x, weights, states):
        out = RNNLayer.apply(x, *_ordered(weights, states), relu=self.nonlinearity == "relu")
        return out, [out[:, -1]]


class LSTM(RNNBase):
    """LSTM with PyTorch's gate order (input, forget, cell, output) in ``weight_ih_l{k}``
    ``(4H, in)``. ``forward(input, (h_0, c_0) = zeros)`` returns
    ``(output (L, N, D H), (h_n, c_n))``, each state ``(D num_layers, N, H)`` (with
    ``batch_first=True``: input and output ``(N, L, ...)``; D = 2 when ``bidirectional``).

    Hochreiter and Schmidhuber, 1997; one primitive per layer runs the loop over time, with a
    hand-derived backward through time.

    Args:
        input_size: the features of each input step.
        hidden_size: H, the features of the hidden state.
        num_layers: stacked layers (each takes the previous one's output sequence).
        bias: learn ``b_ih`` and ``b_hh``.
        batch_first: input and output are ``(N, L, *)``; the default, as PyTorch's, is ``(L, N, *)``.
        dropout: dropout on each layer's output but the last (training only).
        bidirectional: a second pass reads the sequence backwards; outputs concatenate (D = 2).
        proj_size: project the hidden state to this size (0: none; PyTorch's LSTMP).
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the parameters' floating dtype.

    Shape:
        input ``(L, N, input_size)`` (``(N, L, input_size)`` with ``batch_first``) -> output
        ``(L, N, D * H)``, ``h_n`` and ``c_n`` ``(D * num_layers, N, H)``.

    Examples:
        >>> import numformer as nf
        >>> lstm = nf.nn.LSTM(input_size=3, hidden_size=5, num_layers=2, batch_first=True)
        >>> out, (h, c) = lstm(nf.randn(4, 7, 3))
        >>> out.shape, h.shape, c.shape
        ((4, 7, 5), (2, 4, 5), (2, 4, 5))
    """

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
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device=device,
            dtype=dtype,
        )

    def forward(self, input, hx=None):  # noqa: A002 - PyTorch's argument name
        """Run the sequence through every layer (Hochreiter and Schmidhuber, 1997; PyTorch's gate
        order i, f, g, o).

        Shape: input ``(L, N, input_size)`` (``(N, L, input_size)`` with ``batch_first``, or
        ``(L, input_size)``), hx ``(h_0, c_0)`` each ``(D num_layers, N, hidden_size)`` (default
        zeros) -> ``(output (L, N, D hidden_size), (h_n, c_n))``.

        Raises:
            ValueError: the input is not 2-D or 3-D, or has no step.
            ShapeError: (a RuntimeError, as PyTorch raises, and a ValueError) the last dim is not
            ``input_size`` (``FeaturesError``), or a state has the wrong shape.
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
        hs = self._initial(h0, N, batched, x.dtype, "h_0")
        cs = self._initial(c0, N, batched, x.dtype, "c_0")
        out, (finals_h, finals_c) = self._run(x, [hs, cs])
        out, h_n = self._finish(out, finals_h, batched)
        c_n = stack(finals_c, dim=0)
        return out, (h_n, c_n if batched else c_n.squeeze(1))

    def _layer(self, x, weights, states):
        both = LSTMLayer.apply(x, *_ordered(weights, states))  # (2, N, L, H): h, c
        out = both[0]
        return out, [out[:, -1], both[1, :, -1]]


class GRU(RNNBase):
    """GRU (Cho et al., 2014) with PyTorch's gate order (reset, update, new) in
    ``weight_ih_l{k}`` ``(3H, in)`` and its reset gate applied after the hidden projection:
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h.
    ``forward(input, hx = zeros)`` returns ``(output (L, N, D H), h_n (D num_layers, N, H))``
    (with ``batch_first=True``: input and output ``(N, L, ...)``; D = 2 when
    ``bidirectional``).

    Args:
        input_size: the features of each input step.
        hidden_size: H, the features of the hidden state.
        num_layers: stacked layers (each takes the previous one's output sequence).
        bias: learn ``b_ih`` and ``b_hh``.
        batch_first: input and output are ``(N, L, *)``; the default, as PyTorch's, is ``(L, N, *)``.
        dropout: dropout on each layer's output but the last (training only).
        bidirectional: a second pass reads the sequence backwards; outputs concatenate (D = 2).
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the parameters' floating dtype.
    """

    gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device=device,
            dtype=dtype,
        )

    def forward(self, input, hx=None):  # noqa: A002 - PyTorch's argument name
        """Run the sequence through every layer, one step at a time.

        Shape: input ``(L, N, input_size)`` (``(N, L, input_size)`` with ``batch_first``, or
        unbatched ``(L, input_size)``), hx ``(D num_layers, N, hidden_size)`` (default zeros) ->
        ``(output (L, N, D hidden_size), h_n (D num_layers, N, hidden_size))``.

        Raises:
            ValueError: the input is not 2-D or 3-D, or has no step.
            ShapeError: (a RuntimeError, as PyTorch raises, and a ValueError) the last dim is not
            ``input_size`` (``FeaturesError``), or hx has the wrong shape.
            TypeError: input or hx is not a Tensor, the input's dtype is not the weights', or
            hx's is not the input's."""
        x, batched = self._prepare(input)
        hs = self._initial(hx, x.shape[0], batched, x.dtype)
        out, (finals,) = self._run(x, [hs])
        return self._finish(out, finals, batched)

    def _layer(self, x, weights, states):
        out = GRULayer.apply(x, *_ordered(weights, states))
        return out, [out[:, -1]]
