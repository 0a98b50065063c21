"""``export``: arguments as ``torch.onnx.export``'s, traces at three sizes, the ONNX graph."""

from __future__ import annotations

import inspect
import itertools
import os
from pathlib import Path

import numpy as np

from numformer.backend import xp
from numformer.onnx.errors import OnnxExporterError, UnsupportedOperatorError
from numformer.onnx.graph import Graph
from numformer.onnx.mapping import TABLE, NotExportable
from numformer.onnx.tracer import Dim, Ref, Symbol, flatten_outputs, merge, trace
from numformer.tensor import Tensor

DEFAULT_OPSET = 17  # LayerNormalization's first; torch.onnx's default too
MIN_OPSET = 17


def export(
    model,
    args,
    f,
    *,
    kwargs: dict | None = None,
    export_params: bool = True,
    verbose: bool = False,
    input_names: list | None = None,
    output_names: list | None = None,
    dynamic_axes: dict | None = None,
    opset_version: int | None = None,
    do_constant_folding: bool = True,
):
    """Trace ``model(*args, **kwargs)`` and write it as an ONNX model to ``f``, as
    ``torch.onnx.export`` does (its arguments, names and meanings).

    The model is traced in eval mode (each module's mode restored after) under ``no_grad``; the
    graph's outputs are the forward's tensors, flattened (tuples, lists, named tuples; None
    skipped). With ``dynamic_axes`` the forward is also traced with those axes at other sizes
    (larger, or smaller where the forward refuses larger), and everything that depends on their
    sizes is computed from the inputs' shapes in the graph.

    Args:
        model: an ``nn.Module``.
        args: a tuple of the forward's positional arguments, or one tensor; a dict as its last
            item holds keyword arguments (as torch's). Every ``Tensor`` or NumPy array among them
            is a graph input, in order (positional, then keyword); other values (None, flags) are
            passed to the forward as they are.
        f: a path, or a binary file object.
        kwargs: keyword arguments of the forward (instead of a trailing dict in ``args``).
        export_params: must be True (the parameters are always initializers, under their
            state-dict names).
        verbose, do_constant_folding: accepted for torch's callers; they change nothing here
            (ONNX Runtime folds constants when it loads a model).
        input_names: the graph inputs' names (default: the forward's parameter names).
        output_names: the graph outputs' names (default ``output_0``, ``output_1``, ...).
        dynamic_axes: ``{name: {axis: "symbol"}}`` or ``{name: [axis, ...]}`` (symbols named
            ``{name}_dynamic_axes_{i}``): axes of inputs (and outputs, for their names) whose
            size may change; axes of one symbol must have one size in the example.
        opset_version: the ONNX opset, 17 (the default: LayerNormalization's first) or later;
            from 20 GELU is ONNX's ``Gelu``.

    Returns:
        The ``onnx.ModelProto`` written.

    Shape:
        The inputs' shapes are the example's, with the dynamic axes free.

    Raises:
        UnsupportedOperatorError: a primitive with no ONNX form (named, with the module it ran
            in). OnnxExporterError: the forward's path, or an array it computes outside the
            primitives, changes with the dynamic axes' sizes; an input the graph does not use
            (the forward took a path that ignores it for these example values); an output
            computed outside the primitives; a forward that fails at other sizes of its dynamic
            axes. ValueError: names, axes or an opset that do not fit; one array passed as two
            inputs. ImportError: the ``onnx`` package is missing (``pip install
            'numformer[onnx]'``).
    """
    onnx = import_onnx()
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(
            f"export: opset_version must be in [{MIN_OPSET}, {onnx.defs.onnx_opset_version()}] "
            f"(LayerNormalization needs {MIN_OPSET}), got {opset_version}"
        )
    if not export_params:
        raise ValueError("export: export_params=False is not supported (numformer always stores the parameters)")
    del verbose, do_constant_folding  # accepted for torch.onnx.export's callers; they change nothing here
    args, kwargs = _split_args(args, kwargs)
    names, values = _graph_inputs(model, args, kwargs, input_names)
    axes = _axes(dynamic_axes, names, output_names)
    proto = _build(onnx, model, args, kwargs, names, values, axes, list(output_names or ()), opset)
    if isinstance(f, (str, os.PathLike)):
        Path(f).write_bytes(proto.SerializeToString())
    else:
        f.write(proto.SerializeToString())
    return proto


def import_onnx():
    """The ``onnx`` package (imported here only, when an export runs).

    Returns:
        The ``onnx`` module.

    Raises:
        ImportError: it is not installed, with the pip command that installs it."""
    try:
        import onnx  # (its helper and numpy_helper modules come with it)
    except ImportError:
        raise ImportError("numformer.onnx needs the onnx package: pip install 'numformer[onnx]'") from None
    return onnx


def _split_args(args, kwargs) -> tuple[tuple, dict]:
    if not isinstance(args, tuple):
        args = (args,)
    if args and isinstance(args[-1], dict) and kwargs is None:
        args, kwargs = args[:-1], args[-1]
    return args, dict(kwargs or {})


def _graph_inputs(model, args: tuple, kwargs: dict, input_names) -> tuple[list, list]:
    """The graph inputs' names and values: every tensor or array among ``args`` and ``kwargs``."""
    try:
        parameters = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        parameters = []
    found = [
        (parameters[i] if i < len(parameters) else f"input_{i}", v)
        for i, v in enumerate(args)
        if isinstance(v, (Tensor, xp.ndarray, np.ndarray))
    ]
    found += [(k, v) for k, v in kwargs.items() if isinstance(v, (Tensor, xp.ndarray, np.ndarray))]
    if not found:
        raise ValueError("export: args hold no Tensor or array: the graph would have no input")
    names = [name for name, _ in found]
    arrays = [id(_array(v)) for _, v in found]
    if len(set(arrays)) != len(arrays):
        twice = [name for (name, _), a in zip(found, arrays) if arrays.count(a) > 1]
        raise ValueError(
            f"export: the arguments {twice} are one array: one graph input can feed one argument only "
            "(pass copies for separate inputs, or a module that takes it once)"
        )
    if input_names is not None:
        if len(input_names) > len(found):
            raise ValueError(f"export: {len(input_names)} input_names for {len(found)} inputs ({', '.join(names)})")
        names[: len(input_names)] = list(input_names)
    if len(set(names)) != len(names):
        raise ValueError(f"export: input names must differ, got {names}")
    return names, [v for _, v in found]


def _axes(dynamic_axes, input_names: list, output_names) -> dict:
    """``dynamic_axes`` as ``{name: {axis: symbol}}``; a list of axes gets torch's names."""
    axes = {}
    for name, spec in (dynamic_axes or {}).items():
        if isinstance(spec, dict):
            axes[name] = {int(a): str(s) for a, s in spec.items()}
        else:
            axes[name] = {int(a): f"{name}_dynamic_axes_{i + 1}" for i, a in enumerate(spec)}
    unknown = sorted(set(axes) - set(input_names) - set(output_names or ()) - {f"output_{i}" for i in range(64)})
    if unknown:
        raise ValueError(f"export: dynamic_axes names {unknown}, which are neither inputs {input_names} nor outputs")
    return axes


def _symbols(names: list, values: list, axes: dict, signs=None) -> list:
    """A ``Symbol`` per dynamic axis name, its size in each of the three traces: the example's,
    then two more, the k-th symbol moved by k + 1 and 2k + 3 (up, or down where ``signs[k]`` is
    -1), so that no expression in one symbol's size fits another's at all three."""
    sizes, where = {}, {}
    for name, value in zip(names, values):
        shape = value.shape
        for axis, symbol in axes.get(name, {}).items():
            if not -len(shape) <= axis < len(shape):
                raise ValueError(f"export: dynamic axis {axis} of input {name!r} of shape {tuple(shape)}")
            axis %= len(shape)
            if symbol in sizes and sizes[symbol] != shape[axis]:
                raise ValueError(
                    f"export: dynamic axis {symbol!r} is {sizes[symbol]} long in {where[symbol][0]!r} but "
                    f"{shape[axis]} in {name!r}: one symbol, one size"
                )
            sizes.setdefault(symbol, shape[axis])
            where.setdefault(symbol, (name, axis))
    return [
        Symbol(symbol, where[symbol][0], where[symbol][1], (size, size + sign * (k + 1), size + sign * (2 * k + 3)))
        for k, ((symbol, size), sign) in enumerate(zip(sizes.items(), signs or [1] * len(sizes)))
    ]


def _build(onnx, model, args, kwargs, names, values, axes, output_names, opset):
    """Trace, merge, map every primitive, and assemble the ``ModelProto``."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        merged = _traced(model, args, kwargs, names, values, axes)
    finally:
        for m, training in modes:  # parents first: each module ends in its own mode (as before)
            m.train(training)
    params = {name: t.array for name, t in list(model.named_parameters()) + list(model.named_buffers())}
    g = Graph(onnx, merged, params, names, opset)
    needed = _needed_nodes(merged)
    for node in merged.nodes:
        if node.index not in needed:
            continue
        entry = TABLE.get(node.cls)
        if entry is None:
            raise UnsupportedOperatorError(
                f"{node.where}: the primitive {node.cls.__module__}.{node.cls.__name__} has no ONNX mapping "
                "(numformer.onnx.mapping.TABLE)"
            )
        if isinstance(entry, NotExportable):
            raise UnsupportedOperatorError(f"{node.where} has no ONNX form: {entry.reason}")
        value = entry(g, node)
        if len(node.outs) > 1 and not (isinstance(value, tuple) and len(value) == len(node.outs)):
            raise UnsupportedOperatorError(
                f"{node.where} gave {len(node.outs)} outputs, which its mapping does not all compute"
            )
        g.values[node.index] = value
    helper = onnx.helper
    outputs = []
    for j, (ref, shape) in enumerate(zip(merged.outputs, merged.output_shapes)):
        name = output_names[j] if j < len(output_names) else f"output_{j}"
        g.nodes.append(helper.make_node("Identity", [g.value(ref, f"output {name!r}")], [name], name=f"/{name}"))
        dtype = merged.output_dtypes[j]
        dims = [_dim_name(d, axes.get(name, {}).get(i), merged.symbols) for i, d in enumerate(shape)]
        outputs.append(helper.make_tensor_value_info(name, g.tensor_type(dtype), dims))
    if len(output_names) > len(outputs):
        raise ValueError(f"export: {len(output_names)} output_names for {len(outputs)} outputs")
    nodes, used = _prune(g.nodes, [o.name for o in outputs])
    unused = [name for name in names if name not in used]
    if unused:
        raise OnnxExporterError(
            f"input(s) {unused} are not used by the traced forward: the model took a path that ignores them for "
            "these example values (or does not read them); export with example values that exercise them"
        )
    inputs = []
    for name, value in zip(names, values):
        shape = _array(value).shape
        symbol = {a % len(shape): s for a, s in axes.get(name, {}).items()}
        dims = [symbol.get(i, size) for i, size in enumerate(shape)]
        inputs.append(helper.make_tensor_value_info(name, g.tensor_type(_array(value).dtype), dims))
    initializers = [t for name, t in g.initializers.items() if name in used]
    clash = sorted({t.name for t in initializers} & (set(names) | {o.name for o in outputs}))
    if clash:
        raise ValueError(f"export: {clash} name both a graph input or output and a parameter: rename the input/output")
    graph = helper.make_graph(nodes, type(model).__name__, inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="numformer")
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    return proto


def _array(value):
    return value.array if isinstance(value, Tensor) else value


def _traced(model, args, kwargs, names, values, axes):
    """The merged traces: the example's, then (with dynamic axes) two more with every dynamic
    axis at other sizes: larger ones, or smaller ones for some axes where the forward refuses."""
    first = trace(model, args, kwargs, values)
    symbols = _symbols(names, values, axes)
    if not symbols:
        return merge([first[0]], [first[2]], [flatten_outputs(first[1])], [])
    failure = None
    # every axis larger first; where the forward refuses that (a context length), some smaller
    for signs in sorted(itertools.product((1, -1), repeat=len(symbols)), key=lambda signs: signs.count(-1)):
        symbols = _symbols(names, values, axes, signs)
        if any(v < 1 for s in symbols for v in s.values):
            continue
        try:
            others = [trace(model, *_at_size(args, kwargs, values, names, axes, symbols, k)) for k in (1, 2)]
        except OnnxExporterError:
            raise
        except Exception as err:  # noqa: BLE001 - the model's own refusal of a size, reported below
            failure = failure or err
            continue
        runs = [first, *others]
        return merge([r[0] for r in runs], [r[2] for r in runs], [flatten_outputs(r[1]) for r in runs], symbols)
    sizes = ", ".join(f"{s.name} {s.values[0]} -> {s.values[1]}, {s.values[2]}" for s in _symbols(names, values, axes))
    raise OnnxExporterError(
        f"the forward fails at other sizes of its dynamic axes ({sizes}; smaller ones too): "
        f"{type(failure).__name__}: {failure}"
    ) from failure


def _at_size(args, kwargs, values, names, axes, symbols, k):
    """``(args, kwargs, inputs)`` with every dynamic axis of every input at its ``k``-th size:
    the example's values repeated along the axis (or cut)."""
    size = {s.name: s.values[k] for s in symbols}
    resized = {}
    for name, value in zip(names, values):
        array = _array(value)
        for axis, symbol in axes.get(name, {}).items():
            n = size[symbol]
            array = xp.take(array, xp.arange(n) % array.shape[axis], axis=axis)
        resized[id(value)] = Tensor(array) if isinstance(value, Tensor) else array
    new_args = tuple(resized.get(id(a), a) for a in args)
    new_kwargs = {key: resized.get(id(v), v) for key, v in kwargs.items()}
    return new_args, new_kwargs, [resized[id(v)] for v in values]


def _needed_nodes(traced) -> set:
    """Indices of the nodes the outputs depend on (through inputs and array options)."""
    needed, stack = set(), [i for r in traced.outputs for i in _nodes_read(r)]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        node = traced.nodes[i]
        stack += [i for r in list(node.inputs) + list(_option_refs(node.options)) for i in _nodes_read(r)]
    return needed


def _nodes_read(ref: Ref) -> list:
    """The node ``ref`` reads an output of (through a view too), or none."""
    while ref.kind == "view":
        ref = ref.key
    return [ref.key] if ref.kind == "op" else []


def _option_refs(value):
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _option_refs(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _option_refs(v)


def _prune(nodes: list, outputs: list) -> tuple[list, set]:
    """The nodes the outputs need (in order), and every name they read."""
    used, kept = set(outputs), []
    for node in reversed(nodes):
        if any(o in used for o in node.output):
            kept.append(node)
            used.update(i for i in node.input if i)
    return kept[::-1], used


def _dim_name(d, given, symbols):
    """An output dim: its size if fixed, else the name ``dynamic_axes`` gave it, the symbol whose
    size it is, or None (dynamic, unnamed)."""
    if not isinstance(d, Dim):
        return int(d)
    if given is not None:
        return given
    return next((s.name for s in symbols if s.values == d.values), None)
