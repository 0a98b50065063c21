"""``Graph``: builds the ONNX graph that the mappings (``numformer.onnx.mapping``) add nodes to.

Values are names. ``value(ref)`` turns a ``Ref`` into a name, adding what it needs on first
use: a parameter or buffer becomes an initializer under its state-dict name, a constant an
initializer of its own, a ``Fill`` an ``Expand`` of its value to a shape computed from the
inputs, a view a ``Reshape`` of what it views. A node of several outputs (attention and its
weights) has its mapping's names in order, and a ``Ref`` picks one by its ``out``.

``dim(d)`` computes a ``Dim`` (an integer that follows the inputs' sizes) from the dynamic axes:
the size of one (``Shape`` then ``Gather``), that size plus a constant, times a constant, or the
product of two sizes; the three traced values must all fit.
"""

from __future__ import annotations

import itertools

import numpy as np

from numformer.backend import to_numpy
from numformer.onnx.errors import OnnxExporterError
from numformer.onnx.tracer import Dim, Ref, Traced


class Graph:
    """An ONNX graph under construction for ``traced``; ``onnx`` is the ``onnx`` module.

    ``params``: the model's parameters and buffers by state-dict name (arrays);
    ``inputs``: the graph inputs' names, in order; ``opset``: the default domain's version."""

    def __init__(self, onnx, traced: Traced, params: dict, inputs: list, opset: int):
        self.onnx, self.helper = onnx, onnx.helper
        self.traced, self.params, self.inputs, self.opset = traced, params, inputs, opset
        self.nodes = []
        self.initializers = {}  # name -> TensorProto
        self.values = {}  # node index -> what its mapping returned (a name, a tuple of names, a special value)
        self._cache = {}
        self._count = itertools.count()

    # --- names and nodes ----------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A new name; they start with "/" (as torch.onnx's), apart from the inputs', outputs' and
        parameters' names."""
        return f"/{hint}_{next(self._count)}"

    def add(self, op_type: str, inputs: list, outputs: int = 1, **attributes):
        """Add one node; returns its output's name (a list of names when ``outputs`` > 1).
        An input of ``""`` is an omitted optional input."""
        names = [self.fresh(op_type) for _ in range(outputs)]
        self.nodes.append(
            self.helper.make_node(op_type, list(inputs), names, name=self.fresh(f"{op_type}_node"), **attributes)
        )
        return names[0] if outputs == 1 else names

    def const(self, array) -> str:
        """An initializer holding ``array`` (one per distinct value, dtype and shape)."""
        array = np.array(array, order="C")  # a copy (never 1-D for 0-d, as ascontiguousarray)
        key = ("const", array.dtype.str, array.shape, array.tobytes())
        if key not in self._cache:
            name = self.fresh("const")
            self.initializers[name] = self.onnx.numpy_helper.from_array(array, name)
            self._cache[key] = name
        return self._cache[key]

    def scalar_like(self, value, dtype) -> str:
        """A 0-d constant of ``dtype``."""
        return self.const(np.asarray(value, dtype=dtype))

    # --- values -------------------------------------------------------------------------------
    def value(self, ref: Ref, where: str = "") -> str:
        """The name of what ``ref`` refers to.

        Raises:
            UnsupportedOperatorError: it is a primitive's output that only some uses can read
            (an LSTM's cell states: ``LSTMStates``)."""
        if ref.kind == "input":
            return self.inputs[ref.key]
        if ref.kind == "op":
            value = self.values[ref.key]
            if isinstance(value, tuple):
                return value[ref.out]
            if not isinstance(value, str):
                return value.whole(where)
            return value
        if ref.kind == "param":
            if ref.key not in self.initializers:
                array = np.array(to_numpy(self.params[ref.key]), order="C")
                self.initializers[ref.key] = self.onnx.numpy_helper.from_array(array, ref.key)
            return ref.key
        if ref.kind == "view":
            return self.add("Reshape", [self.value(ref.key, where), self.ints(ref.shape)])
        if ref.kind == "fill":
            return self.add("Expand", [self.const(ref.array), self.ints(ref.shape)])
        return self.const(to_numpy(ref.array))

    def special(self, ref: Ref):
        """What ``ref`` refers to, also a special value (``LSTMStates``), for the mappings that
        read one."""
        if ref.kind == "op" and not isinstance(self.values[ref.key], tuple):
            return self.values[ref.key]
        return self.value(ref)

    def input(self, node, j: int) -> str:
        """The name of ``node``'s ``j``-th tensor input."""
        return self.value(node.inputs[j], node.where)

    def producer(self, ref: Ref):
        """The ``Node`` whose output ``ref`` is, or None."""
        return self.traced.nodes[ref.key] if ref.kind == "op" else None

    # --- shapes -------------------------------------------------------------------------------
    def shape(self, name: str) -> str:
        key = ("shape", name)
        if key not in self._cache:
            self._cache[key] = self.add("Shape", [name])
        return self._cache[key]

    def size(self, name: str, axis: int) -> str:
        """``name``'s size along ``axis``, 1-D of one int64."""
        key = ("size", name, axis)
        if key not in self._cache:
            self._cache[key] = self.add("Gather", [self.shape(name), self.const(np.array([axis], np.int64))], axis=0)
        return self._cache[key]

    def dim(self, d: Dim) -> str:
        """``d`` computed from the dynamic axes' sizes, 1-D of one int64.

        Raises:
            OnnxExporterError: no size of one axis, plus or times a constant, and no product of
            two fits its three traced values."""
        key = ("dim", d.values)
        if key in self._cache:
            return self._cache[key]
        symbols = self.traced.symbols
        found = None
        for s in symbols:
            if s.values == d.values:
                found = self.size(s.input, s.axis)
                break
        if found is None:
            for s in symbols:
                c = d.values[0] - s.values[0]
                if all(v - sv == c for v, sv in zip(d.values, s.values)):
                    found = self.add("Add", [self.size(s.input, s.axis), self.const(np.array([c], np.int64))])
                    break
        if found is None:
            for s in symbols:
                k = d.values[0] // s.values[0] if s.values[0] else 0
                if k > 1 and all(v == k * sv for v, sv in zip(d.values, s.values)):
                    found = self.add("Mul", [self.size(s.input, s.axis), self.const(np.array([k], np.int64))])
                    break
        if found is None:
            for s, t in itertools.combinations_with_replacement(symbols, 2):
                if all(v == a * b for v, a, b in zip(d.values, s.values, t.values)):
                    found = self.add("Mul", [self.size(s.input, s.axis), self.size(t.input, t.axis)])
                    break
        if found is None:
            raise OnnxExporterError(
                f"a size that follows the inputs' sizes ({', '.join(map(str, d.values))} in the traces) is not one "
                "dynamic axis, one plus or times a constant, or a product of two: numformer.onnx cannot compute it"
            )
        self._cache[key] = found
        return found

    def ints(self, items) -> str:
        """A 1-D int64 value of ``items`` (ints and ``Dim``s)."""
        items = list(items)
        if not any(isinstance(i, Dim) for i in items):
            return self.const(np.array(items, dtype=np.int64))
        pieces, run = [], []
        for item in items:
            if isinstance(item, Dim):
                if run:
                    pieces.append(self.const(np.array(run, dtype=np.int64)))
                    run = []
                pieces.append(self.dim(item))
            else:
                run.append(int(item))
        if run:
            pieces.append(self.const(np.array(run, dtype=np.int64)))
        return pieces[0] if len(pieces) == 1 else self.add("Concat", pieces, axis=0)

    def scalar(self, item) -> str:
        """A 0-d int64 value of an int or ``Dim``."""
        if not isinstance(item, Dim):
            return self.const(np.array(int(item), dtype=np.int64))
        return self.add("Squeeze", [self.dim(item), self.const(np.array([0], np.int64))])

    def reduce(self, op: str, x: str, axes, keepdims: bool) -> str:
        """``op`` (ReduceSum, ReduceMean, ReduceMax, ReduceProd) over ``axes`` (None: all), with the
        axes an input where the opset takes them so (ReduceSum from 13, the others from 18)."""
        if axes is None:
            return self.add(op, [x], keepdims=int(keepdims))
        axes = [int(a) for a in axes]
        if op == "ReduceSum" or self.opset >= 18:
            return self.add(op, [x, self.const(np.array(axes, np.int64))], keepdims=int(keepdims))
        return self.add(op, [x], axes=axes, keepdims=int(keepdims))

    def tensor_type(self, dtype) -> int:
        return self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
