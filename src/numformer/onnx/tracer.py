"""Tracing a forward into nodes: what each primitive was given, traced at several input sizes.

One trace runs the model's forward under ``no_grad`` inside ``autograd.tracing``: every
primitive ``Function.apply`` runs is recorded with where each of its inputs came from (a
``Ref``): a graph input, an earlier primitive's output (which of its outputs, for a primitive
of several: attention and its weights), a parameter or buffer (by its state-dict name), a
reshape made with NumPy of one of those (found by its memory), or a constant (an array the
forward computed outside the primitives). Arrays in a primitive's options (token ids for
``Embedding``, masks for attention, conditions for ``Where``) are resolved the same way, by
identity. Each module's ``forward`` is wrapped for the trace (an instance attribute, removed
after) to name the innermost module each primitive ran in; unlike forward hooks this leaves the
fused paths (``F.linear_relu``, ``F.linear_gelu``, ``add_and_norm``) as they run. The version counters and
views of the engine play no part: the trace only reads what each primitive was given and made.

With dynamic axes the forward is traced three times, each dynamic axis at three sizes
(``sizes``), and the traces are merged into one list of ``Node``s: the same primitives in the same
order (else the forward's path depends on the size: an error), an integer option that differs
becomes a ``Dim`` (its three values; the graph computes it from the inputs' shapes), a constant
that differs is an error unless it is one value filling a shape that follows the inputs (a
``Fill``), and every other option must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from numformer.autograd import no_grad, tracing
from numformer.backend import xp
from numformer.onnx.errors import OnnxExporterError
from numformer.ops.attention import BlockedAttention, ScaledDotProductAttention
from numformer.tensor import Tensor

# Primitives that compute the same function by different kernels: the forward may pick either
# at different sizes (attention's "auto"), and both export alike.
SAME_FUNCTION = {BlockedAttention: ScaledDotProductAttention}


@dataclass(frozen=True)
class Dim:
    """An integer that follows the inputs' sizes: its value in each trace."""

    values: tuple

    @property
    def value(self) -> int:
        """Its value in the first trace (the example inputs')."""
        return self.values[0]


@dataclass(frozen=True)
class Symbol:
    """A named dynamic axis (``dynamic_axes``' name) and where to read its size: graph input
    ``input`` (its name), axis ``axis``; ``values`` its size in each trace."""

    name: str
    input: str
    axis: int
    values: tuple


@dataclass
class Ref:
    """Where an array comes from. ``kind``: ``"input"`` (``key`` its index), ``"op"`` (``key`` the
    index of the node that made it, ``out`` which of its outputs), ``"param"`` (a state-dict
    name), ``"view"`` (``key`` the ``Ref`` of an array of which this one is a reshaped view, of
    shape ``shape``: a buffer as ``(1, C, 1)``, a mask reshaped with NumPy), ``"const"``
    (``array``) or ``"fill"`` (``array`` a 0-d value filling ``shape``, whose dims may be
    ``Dim``s). An option's ``Ref`` also holds the (first trace's) array in ``array``."""

    kind: str
    key: object = None
    array: object = None
    shape: tuple = ()
    out: int = 0

    def same_source(self, other: Ref) -> bool:
        """Whether ``other`` names the same input, node output, parameter or view."""
        if self.kind != other.kind:
            return False
        if self.kind == "view":
            return self.key.same_source(other.key)
        return self.key == other.key and self.out == other.out


@dataclass
class Record:
    """One primitive call of one trace."""

    cls: type
    inputs: list  # a Ref per tensor input
    options: dict
    outputs: tuple  # its output tensors (one, or several: attention and its weights)
    in_arrays: list  # the inputs' arrays (dtype and shape)
    module: str = ""


@dataclass
class Node:
    """One primitive call of the merged traces: what a mapping in ``numformer.onnx.mapping``
    emits ONNX nodes for. ``inputs`` and array options are ``Ref``s; integer options that follow
    the inputs' sizes are ``Dim``s. ``in_arrays`` and ``outs`` (one array per output) are the
    first trace's arrays (for dtypes and ranks)."""

    index: int
    cls: type
    inputs: list
    options: dict
    module: str
    in_arrays: list
    outs: tuple

    @property
    def out(self):
        """The first output's array (the only one, for most primitives)."""
        return self.outs[0]

    @property
    def where(self) -> str:
        return f"{self.cls.__name__} (in module {self.module})"


@dataclass
class Traced:
    """The merged traces: the nodes, the graph outputs (``Ref``s), their shapes and dtypes, and
    the dynamic axes' ``Symbol``s."""

    nodes: list
    outputs: list
    output_shapes: list
    output_dtypes: list
    symbols: list = field(default_factory=list)


def _named(model) -> tuple[dict, dict]:
    """State-dict names of the model's parameters and buffers (non-persistent ones too), by the
    id of the tensor and by the id of its array."""
    by_tensor, by_array = {}, {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        by_tensor.setdefault(id(t), name)
        by_array.setdefault(id(t.array), name)
    return by_tensor, by_array


def _memory(array) -> tuple:
    """Where a C-ordered array's elements lie: its first byte (host or device), its length and
    its dtype."""
    interface = getattr(array, "__array_interface__", None) or array.__cuda_array_interface__
    return (interface["data"][0], array.nbytes, array.dtype.str)


class _Tracer:
    """Records one forward; ``on_apply`` is ``autograd.tracing``'s callback."""

    def __init__(self, model, inputs: list):
        self.records: list[Record] = []
        self.by_tensor: dict[int, Ref] = {}
        self.by_array: dict[int, Ref] = {}
        self.keep = []  # everything an id was taken of stays alive (ids are never reused meanwhile)
        self.param_by_tensor, self.param_by_array = _named(model)
        self.params = dict(list(model.named_parameters()) + list(model.named_buffers()))
        self.by_memory: dict[tuple, Ref] = {}  # (address, bytes, dtype) -> Ref, for ``reshaped``
        for name, t in self.params.items():
            self.remember(t.array, Ref("param", name))
        for i, value in enumerate(inputs):
            ref = Ref("input", i)
            if isinstance(value, Tensor):
                self.by_tensor[id(value)] = ref
                value = value.array
            self.by_array[id(value)] = ref
            self.remember(value, ref)
            self.keep.append(value)
        self.stack = []  # names of the modules whose forward is running, innermost last

    def on_apply(self, cls, inputs, options, output) -> None:
        refs = [self.tensor_ref(t) for t in inputs]
        options = {k: self.option(v) for k, v in options.items()}
        index = len(self.records)
        module = self.stack[-1] if self.stack else "the model's forward"
        outputs = output if isinstance(output, tuple) else (output,)
        self.records.append(Record(cls, refs, options, outputs, [t.array for t in inputs], module))
        self.keep.append((inputs, outputs))
        for j, t in enumerate(outputs):
            self.by_tensor[id(t)] = Ref("op", index, out=j)
            self.by_array[id(t.array)] = Ref("op", index, out=j)
            self.remember(t.array, Ref("op", index, out=j))

    def tensor_ref(self, t) -> Ref:
        ref = self.by_tensor.get(id(t))
        if ref is not None:
            return ref
        if id(t) in self.param_by_tensor:
            return Ref("param", self.param_by_tensor[id(t)])
        return self.array_ref(t.array)

    def array_ref(self, array) -> Ref:
        """Where ``array`` comes from; the ``Ref`` holds the array itself (a mapping reads its
        dtype and rank: an index array's, a mask's)."""
        ref = self.by_array.get(id(array))
        if ref is not None:
            return Ref(ref.kind, ref.key, array=array, out=ref.out)
        if id(array) in self.param_by_array:
            return Ref("param", self.param_by_array[id(array)], array=array)
        source = self.reshaped(array)
        if source is not None:
            return Ref("view", source, array=array, shape=array.shape)
        self.keep.append(array)
        return Ref("const", array=array)

    def remember(self, array, ref: Ref) -> None:
        """Note where ``array``'s memory comes from, for ``reshaped``."""
        if isinstance(array, xp.ndarray) and array.flags.c_contiguous and array.size:
            self.by_memory.setdefault(_memory(array), ref)

    def reshaped(self, array):
        """The ``Ref`` of a known array (a graph input, a node's output, a parameter) of which
        ``array`` is a reshape made with NumPy, or None: both in C order over the same memory,
        of one dtype, so the same elements in the same order (BatchNorm's running mean as
        ``(1, C, 1)``, a grouped-query attention's mask as ``(N, Hkv, G, L, S)``). Everything
        remembered stays alive during the trace, so its memory is never another array's."""
        if not (isinstance(array, xp.ndarray) and array.flags.c_contiguous and array.size):
            return None
        ref = self.by_memory.get(_memory(array))
        return None if ref is None else Ref(ref.kind, ref.key, out=ref.out)

    def option(self, value):
        """An option with its arrays replaced by ``Ref``s, also inside tuples (an index)."""
        if isinstance(value, xp.ndarray):
            return self.array_ref(value)
        if isinstance(value, tuple):
            return tuple(self.option(v) for v in value)
        return value

    def entering(self, module, name: str):
        """``module.forward`` wrapped to put ``name`` on the stack of running modules, so each
        record knows the innermost module it ran in."""
        forward = module.forward

        def named_forward(*args, **kwargs):
            self.stack.append(name)
            try:
                return forward(*args, **kwargs)
            finally:
                self.stack.pop()

        return named_forward


def trace(model, args: tuple, kwargs: dict, inputs: list):
    """Run ``model(*args, **kwargs)`` once under ``no_grad``, recording every primitive.

    ``inputs`` are the graph inputs (tensors or arrays, each also somewhere in args/kwargs).
    Returns ``(records, output, output_refs)``: the ``Record``s, the forward's result and a
    ``Ref`` per output tensor."""
    tracer = _Tracer(model, inputs)
    modules = list(model.named_modules())
    own = {id(m): vars(m)["forward"] for _, m in modules if "forward" in vars(m)}  # a forward set on the instance
    for name, m in modules:  # an instance attribute, removed below: the class's forward is untouched
        m.forward = tracer.entering(m, f"{name} ({type(m).__name__})" if name else type(m).__name__)
    try:
        with no_grad(), tracing(tracer.on_apply):
            output = model(*args, **kwargs)
    finally:
        for _, m in modules:
            if id(m) in own:
                m.forward = own[id(m)]
            else:
                del m.forward
    output_refs = [_output_ref(tracer, t) for t in flatten_outputs(output)]
    return tracer.records, output, output_refs


def flatten_outputs(output) -> list:
    """The tensors of a forward's result, in order: a tensor, or tuples, lists (named tuples
    too) and dict values holding them; None entries are skipped (``GPT``'s missing loss).

    Raises:
        OnnxExporterError: an entry that is neither a tensor nor None (a NumPy array: an output
        computed outside the primitives)."""
    if output is None:
        return []
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in flatten_outputs(item)]
    raise OnnxExporterError(
        f"the forward returned a {type(output).__name__} where a Tensor was expected: an output must be "
        "computed by numformer's ops (a NumPy array left the graph)"
    )


def _output_ref(tracer: _Tracer, t: Tensor) -> Ref:
    ref = tracer.tensor_ref(t)
    if ref.kind == "const":
        raise OnnxExporterError(
            f"an output of shape {t.shape} was computed outside numformer's ops (NumPy on arrays), "
            "so the graph cannot compute it"
        )
    return ref


# --- merging the traces -----------------------------------------------------------------------


def merge(traces: list, output_refs: list, outputs: list, symbols: list) -> Traced:
    """One list of ``Node``s from the traces of the same forward at different sizes.

    ``traces``: each trace's records; ``output_refs``/``outputs``: each trace's output refs and
    tensors.

    Raises:
        OnnxExporterError: the traces ran different primitives (the path depends on the size),
        a constant or option differs in a way the graph cannot compute."""
    kind = lambda record: SAME_FUNCTION.get(record.cls, record.cls)  # noqa: E731
    first = traces[0]
    for other in traces[1:]:
        if len(other) != len(first) or any(kind(a) is not kind(b) for a, b in zip(first, other)):
            at = next((i for i, (a, b) in enumerate(zip(first, other)) if kind(a) is not kind(b)), None)
            at = min(len(first), len(other)) if at is None else at
            described = f"{first[at].cls.__name__} in {first[at].module}" if at < len(first) else "the end"
            raise OnnxExporterError(
                "the forward runs different primitives at another size of its dynamic axes (first at primitive "
                f"{at}: {described}): its path depends on the input's size, which one graph cannot follow"
            )
    if len({len(refs) for refs in output_refs}) != 1:
        raise OnnxExporterError("the forward returns a different number of tensors at another size")
    nodes = []
    for i, records in enumerate(zip(*traces)):
        record = records[0]
        where = f"{record.cls.__name__} (in module {record.module})"
        if len({len(r.inputs) for r in records}) != 1 or len({len(r.outputs) for r in records}) != 1:
            raise OnnxExporterError(f"{where} takes or gives a different number of tensors at another size")
        inputs = [
            _merge_refs([r.inputs[j] for r in records], f"input {j} of {where}") for j in range(len(record.inputs))
        ]
        keys = list(record.options)
        if len({r.cls for r in records}) > 1:  # kernels of one function: their own options (block sizes) go
            keys = [k for k in keys if all(k in r.options for r in records)]
        options = {
            key: _merge_option([r.options.get(key) for r in records], f"option {key!r} of {where}") for key in keys
        }
        outs = tuple(t.array for t in record.outputs)
        nodes.append(Node(i, kind(record), inputs, options, record.module, record.in_arrays, outs))
    refs = [_merge_refs(list(r), f"output {j}") for j, r in enumerate(zip(*output_refs))]
    shapes = [_shape([t.shape for t in ts]) for ts in zip(*outputs)]
    return Traced(nodes, refs, shapes, [t.dtype for t in outputs[0]], symbols)


def _shape(shapes: list) -> tuple:
    if len({len(s) for s in shapes}) != 1:
        raise OnnxExporterError(f"an array's rank changes with the input's size: shapes {shapes}")
    return tuple(d[0] if len(set(d)) == 1 else Dim(tuple(d)) for d in zip(*shapes))


def _merge_refs(refs: list, where: str) -> Ref:
    first = refs[0]
    if any(r.kind != first.kind for r in refs):
        kinds = sorted({r.kind for r in refs})
        raise OnnxExporterError(f"{where} comes from different places at different sizes ({', '.join(kinds)})")
    if first.kind in ("input", "op", "param", "view"):
        if any(not r.same_source(first) for r in refs):
            raise OnnxExporterError(f"{where} comes from different places at different sizes")
        if first.kind == "view":
            return Ref("view", first.key, array=first.array, shape=_shape([r.shape for r in refs]))
        return first
    arrays = [r.array for r in refs]
    if all(a.shape == arrays[0].shape and a.dtype == arrays[0].dtype for a in arrays) and all(
        np.array_equal(a, arrays[0], equal_nan=a.dtype.kind in "fc") for a in arrays[1:]
    ):
        return first
    flat = [a.reshape(-1) for a in arrays]
    uniform = all(f.size and (f == f[0]).all() for f in flat) and len({(f[0].item(), f.dtype) for f in flat}) == 1
    if uniform and len({a.ndim for a in arrays}) == 1:
        return Ref("fill", array=arrays[0].reshape(-1)[0].copy(), shape=_shape([a.shape for a in arrays]))
    shapes = " and ".join(str(a.shape) for a in arrays)
    raise OnnxExporterError(
        f"{where} is an array computed outside numformer's primitives (NumPy on the inputs or on shapes), "
        f"of shapes {shapes} in traces at different input sizes, and its values change with the size: a "
        "constant in the graph would be wrong at other sizes. Compute it with tensor ops (or a primitive of "
        "numformer.ops.masks) from the inputs"
    )


def _merge_option(values: list, where: str):
    first = values[0]
    if isinstance(first, Ref):
        return _merge_refs(values, where)
    if isinstance(first, (bool, np.bool_)) or first is None or isinstance(first, (str, float, np.floating)):
        if any(not _same(v, first) for v in values):
            raise OnnxExporterError(f"{where} changes with the input's size ({values}): not one graph")
        return first
    if isinstance(first, (int, np.integer)):
        ints = tuple(int(v) for v in values)
        return ints[0] if len(set(ints)) == 1 else Dim(ints)
    if isinstance(first, tuple):
        if len({len(v) for v in values}) != 1:
            raise OnnxExporterError(f"{where} changes its length with the input's size: {values}")
        return tuple(_merge_option(list(parts), where) for parts in zip(*values))
    if isinstance(first, slice):
        return slice(*(_merge_option([getattr(v, a) for v in values], where) for a in ("start", "stop", "step")))
    return first  # dtypes, generators: as the first trace's


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b


__all__ = ["Dim", "Node", "Ref", "Symbol", "Traced", "flatten_outputs", "merge", "trace"]
