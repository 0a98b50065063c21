"""Each primitive's ONNX form: ``TABLE``, one entry per primitive class of ``numformer.ops``.

An entry is a function ``(graph, node) -> value`` that adds the ONNX nodes computing the
primitive's output from its inputs (``graph.input(node, j)``) and options (``node.options``;
arrays there are ``Ref``s, sizes that follow the inputs ``Dim``s), and returns its name (for a
primitive of several outputs, a tuple of names in the outputs' order: attention with
``need_weights`` gives its output and its weights); or a ``NotExportable`` naming why the
primitive has none. ``GetItem`` (basic indexing, a view) and ``Index`` (advanced indexing, a
copy) share ``_select``. The fused kernels become their standard
decompositions (attention: ``MatMul``, ``Softmax``, ``MatMul``) or ONNX's own operators
(``LayerNormalization``, ``Gelu`` from opset 20, ``LSTM``, ``RNN``, ``GRU``, ``Conv``,
``MaxPool``, ``AveragePool``).

The recurrent layers share ``_recurrent``: ONNX's operator reads the layer's input and its
input weights where the layer's ``projected`` input is ``Linear``'s output (nn.LSTM, nn.RNN and
nn.GRU project all steps at once), with the gates reordered by ONNX ops on the state-dict
initializers (PyTorch's LSTM gates i, f, g, o are ONNX's i, o, f, c; its GRU's r, z, n are
ONNX's z, r, h, and PyTorch applies the reset gate after the hidden projection, ONNX's
``linear_before_reset=1``). A bidirectional layer's reverse direction is the same operator on
the reversed sequence (``Slice`` with step -1), as numformer runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numformer.onnx.errors import OnnxExporterError, UnsupportedOperatorError
from numformer.onnx.tracer import Dim, Ref
from numformer.ops import activation as AC
from numformer.ops import attention as A
from numformer.ops import conv as CV
from numformer.ops import dropout as D
from numformer.ops import elementwise as E
from numformer.ops import embedding as EM
from numformer.ops import gated as GA
from numformer.ops import linalg as LA
from numformer.ops import loss as LO
from numformer.ops import masks as M
from numformer.ops import normalization as N
from numformer.ops import normalize as NZ
from numformer.ops import pad as PD
from numformer.ops import recurrent as RC
from numformer.ops import reduce as R
from numformer.ops import rotary as RO
from numformer.ops import shape as S
from numformer.ops import softmax as SM

INT64_MAX, INT64_MIN = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min)  # open slice ends


@dataclass(frozen=True)
class NotExportable:
    """A primitive with no ONNX form, and why."""

    reason: str


def _i64(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _dtype(node, j: int = 0):
    return node.in_arrays[j].dtype


# --- elementwise ------------------------------------------------------------------------------


def _same_op(op_type: str):
    """A primitive that is one ONNX operator of the same inputs."""

    def emit(g, node):
        return g.add(op_type, [g.input(node, j) for j in range(len(node.inputs))])

    emit.__name__ = f"_{op_type.lower()}"
    return emit


def _pow_scalar(g, node):
    return g.add("Pow", [g.input(node, 0), g.scalar_like(node.options["exponent"], _dtype(node))])


def _gelu(g, node):
    return _gelu_of(g, g.input(node, 0), node.options.get("approximate", "none"), _dtype(node))


def _gelu_of(g, x, approximate: str, dt):
    """Exact: x (1 + erf(x / sqrt 2)) / 2; tanh form: x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2,
    in the node order ONNX Runtime fuses back into one kernel; ONNX's ``Gelu`` from opset 20."""
    if g.opset >= 20:
        return g.add("Gelu", [x], approximate=approximate)
    if approximate == "tanh":
        cube = g.add("Mul", [g.add("Mul", [x, x]), x])
        inner = g.add("Add", [x, g.add("Mul", [cube, g.scalar_like(0.044715, dt)])])
        t = g.add("Tanh", [g.add("Mul", [inner, g.scalar_like(math.sqrt(2 / math.pi), dt)])])
    else:
        t = g.add("Erf", [g.add("Div", [x, g.scalar_like(math.sqrt(2), dt)])])
    return g.add("Mul", [g.add("Mul", [x, g.add("Add", [t, g.scalar_like(1, dt)])]), g.scalar_like(0.5, dt)])


def _where(g, node):
    condition = g.value(node.options["condition"], node.where)
    return g.add("Where", [condition, g.input(node, 0), g.input(node, 1)])


def _clip(g, node):
    dt = _dtype(node)
    bounds = [g.scalar_like(node.options[k], dt) if node.options.get(k) is not None else "" for k in ("min", "max")]
    return g.add("Clip", [g.input(node, 0), *bounds])


def _cast(g, node):
    return g.add("Cast", [g.input(node, 0)], to=g.tensor_type(node.out.dtype))


def _log1p(g, node):
    return g.add("Log", [g.add("Add", [g.input(node, 0), g.scalar_like(1, _dtype(node))])])


def _expm1(g, node):
    return g.add("Sub", [g.add("Exp", [g.input(node, 0)]), g.scalar_like(1, _dtype(node))])


def _stepwise(g, node):
    """floor, ceil, rint (ONNX's Round: halves to even, as NumPy's), sign; trunc as
    sign(x) floor(|x|)."""
    x, name = g.input(node, 0), node.options["name"]
    if name == "trunc":
        return g.add("Mul", [g.add("Sign", [x]), g.add("Floor", [g.add("Abs", [x])])])
    return g.add({"floor": "Floor", "ceil": "Ceil", "rint": "Round", "sign": "Sign"}[name], [x])


def _fill(g, node):
    x = g.input(node, 0)
    return g.add("Expand", [g.scalar_like(node.options["value"], _dtype(node)), g.shape(x)])


def _gather(g, node):
    index = g.value(node.options["index"], node.where)
    return g.add("GatherElements", [g.input(node, 0), index], axis=int(node.options["dim"]))


def _scatter(reduction: str):
    def emit(g, node):
        if node.in_arrays[1].shape != node.options["index"].shape:
            raise UnsupportedOperatorError(
                f"{node.where}: scatter with a source larger than its index has no single ONNX operator"
            )
        index = g.value(node.options["index"], node.where)
        extra = {} if reduction == "none" else {"reduction": reduction}
        return g.add(
            "ScatterElements", [g.input(node, 0), index, g.input(node, 1)], axis=int(node.options["dim"]), **extra
        )

    return emit


def _cumsum(g, node):
    return g.add("CumSum", [g.input(node, 0), g.const(_i64(node.options["axis"]))])


# --- reductions -------------------------------------------------------------------------------


def _reduction(op_type: str):
    """Sum, mean or max over ``axis`` (None: all); integer or boolean inputs are first cast to
    the result's dtype, as NumPy's reductions promote them."""

    def emit(g, node):
        x = g.input(node, 0)
        if _dtype(node) != node.out.dtype:
            x = g.add("Cast", [x], to=g.tensor_type(node.out.dtype))
        return g.reduce(op_type, x, node.options.get("axis"), node.options.get("keepdims", False))

    emit.__name__ = f"_{op_type.lower()}"
    return emit


def _prod(g, node):
    return g.reduce("ReduceProd", g.input(node, 0), (node.options["axis"],), node.options.get("keepdims", False))


def _einsum(g, node):
    """ONNX's Einsum of the explicit subscripts (``...`` and an implicit output spelled out)."""
    subs, out = LA.einsum_subscripts(node.options["equation"], [a.shape for a in node.in_arrays])
    inputs = [g.input(node, j) for j in range(len(node.inputs))]
    return g.add("Einsum", inputs, equation=",".join(subs) + "->" + out)


def _var(g, node):
    """sum((x - mean)^2) / max(n - correction, 0), n the count of the reduced elements (from the
    shape, so it follows dynamic axes)."""
    x, dt = g.input(node, 0), node.out.dtype
    axis, keepdims = node.options.get("axis"), node.options.get("keepdims", False)
    rank = node.in_arrays[0].ndim
    axes = list(range(rank)) if axis is None else list(axis)
    centred = g.add("Sub", [x, g.reduce("ReduceMean", x, axis, True)])
    squares = g.reduce("ReduceSum", g.add("Mul", [centred, centred]), axis, keepdims)
    sizes = g.add("Gather", [g.shape(x), g.const(_i64(axes))], axis=0)
    count = g.add("Cast", [g.reduce("ReduceProd", sizes, None, False)], to=g.tensor_type(dt))
    correction = g.scalar_like(node.options.get("correction", 1), dt)
    denominator = g.add("Max", [g.add("Sub", [count, correction]), g.scalar_like(0, dt)])
    return g.add("Div", [squares, denominator])


# --- shapes -----------------------------------------------------------------------------------


def _reshape(g, node):
    """Reshape to the traced shape; one size no formula of the inputs' sizes reaches (a pooled
    length, (L + 4) // 2) becomes ONNX's -1, which the element count fixes."""
    shape = list(node.options["shape"])
    unknown = [i for i, d in enumerate(shape) if isinstance(d, Dim) and not _reachable(g, d)]
    if len(unknown) == 1:
        shape[unknown[0]] = -1
    return g.add("Reshape", [g.input(node, 0), g.ints(shape)])


def _reachable(g, d: Dim) -> bool:
    """Whether the graph can compute size ``d`` from the inputs' sizes."""
    try:
        g.dim(d)
    except OnnxExporterError:
        return False
    return True


def _permute(g, node):
    return g.add("Transpose", [g.input(node, 0)], perm=list(node.options["axes"]))


def _broadcast_to(g, node):
    return g.add("Expand", [g.input(node, 0), g.ints(node.options["shape"])])


def _cat(g, node):
    return g.add("Concat", [g.input(node, j) for j in range(len(node.inputs))], axis=int(node.options.get("axis", 0)))


def _stack(g, node):
    axis = g.const(_i64([node.options.get("axis", 0)]))
    parts = [g.add("Unsqueeze", [g.input(node, j), axis]) for j in range(len(node.inputs))]
    return g.add("Concat", parts, axis=int(node.options.get("axis", 0)))


def _parts(node) -> list:
    """The parts of an indexing node's index, as a list."""
    index = node.options["index"]
    return list(index) if isinstance(index, tuple) else [index]


def _getitem(g, node):
    """Basic indexing (``GetItem``: integers, slices, None, Ellipsis): ``_select``. An LSTM's
    states are read as ``LSTMStates`` says."""
    source = g.special(node.inputs[0])
    if isinstance(source, LSTMStates):
        return source.pick(node.options["index"], node.where)
    return _select(g, node, _parts(node))


def _index(g, node):
    """Advanced indexing (``Index``) with one integer array, the integers beside it adjacent to
    it: ``_select`` (the array a Gather). Boolean masks (the result's size depends on their
    values), several arrays, or integers apart from the array (NumPy then moves the indexed
    axes first) are refused."""
    parts = _parts(node)
    arrays = [p for p in parts if isinstance(p, Ref)]
    if any(p.array.dtype == np.bool_ for p in arrays) or any(isinstance(p, (bool, np.bool_)) for p in parts):
        raise UnsupportedOperatorError(f"{node.where}: indexing with a boolean mask (its size depends on the values)")
    advanced = [i for i, p in enumerate(parts) if isinstance(p, (Ref, int, np.integer, Dim))]
    if len(arrays) != 1 or advanced != list(range(advanced[0], advanced[-1] + 1)):
        raise UnsupportedOperatorError(
            f"{node.where}: indexing with several integer arrays, or with integers apart from the array "
            "(NumPy then moves the indexed axes first)"
        )
    return _select(g, node, parts)


def _select(g, node, parts: list) -> str:
    """NumPy indexing of ``node``'s input, part by part: ``None`` -> Unsqueeze, a slice ->
    Slice, an integer -> Gather of a 0-d index (the axis goes), an integer array (a ``Ref``) ->
    Gather (its axes replace the indexed one)."""
    x = g.input(node, 0)
    consumed = sum(p is not None and p is not Ellipsis for p in parts)
    fill = [slice(None)] * (node.in_arrays[0].ndim - consumed)
    parts = (
        parts[: parts.index(Ellipsis)] + fill + parts[parts.index(Ellipsis) + 1 :]
        if Ellipsis in parts
        else parts + fill
    )
    axis = 0
    for p in parts:
        if p is None:
            x = g.add("Unsqueeze", [x, g.const(_i64([axis]))])
            axis += 1
        elif isinstance(p, slice):
            if p != slice(None):
                x = _slice(g, x, p, axis)
            axis += 1
        elif isinstance(p, Ref):
            x = g.add("Gather", [x, g.value(p, node.where)], axis=axis)
            axis += len(p.shape) if p.kind == "fill" else p.array.ndim  # a fill's array is its 0-d value
        else:  # an integer (or one that follows the sizes): the axis goes
            x = g.add("Gather", [x, g.scalar(p)], axis=axis)
    return x


def _slice(g, x, s: slice, axis: int) -> str:
    step = 1 if s.step is None else s.step
    if isinstance(step, Dim):
        raise UnsupportedOperatorError("a slice whose step follows the input's size")
    start = s.start if s.start is not None else (0 if step > 0 else INT64_MAX)
    stop = s.stop if s.stop is not None else (INT64_MAX if step > 0 else INT64_MIN)
    return g.add("Slice", [x, g.ints([start]), g.ints([stop]), g.const(_i64([axis])), g.const(_i64([step]))])


# --- linear algebra, softmax, normalisation -----------------------------------------------------


def _linear(g, node):
    """x W^T (+ b) (then ReLU or GELU): MatMul against the transposed weight (ONNX Runtime folds
    the transpose of an initializer once)."""
    y = g.add("MatMul", [g.input(node, 0), g.add("Transpose", [g.input(node, 1)], perm=[1, 0])])
    if len(node.inputs) == 3:
        y = g.add("Add", [y, g.input(node, 2)])
    if node.options.get("gelu") is not None:
        return _gelu_of(g, y, node.options["gelu"], _dtype(node))
    return g.add("Relu", [y]) if node.options.get("relu") else y


def _softmax(g, node):
    """Softmax; a row that is all -inf gives zeros, as numformer's (ONNX's gives NaN)."""
    x, axis = g.input(node, 0), int(node.options.get("axis", -1))
    return _guard_dead_rows(g, x, g.add("Softmax", [x], axis=axis), axis, _dtype(node))


def _guard_dead_rows(g, scores: str, p: str, axis: int, dtype) -> str:
    dead = g.add("IsInf", [g.reduce("ReduceMax", scores, [axis], True)], detect_positive=0)
    return g.add("Where", [dead, g.scalar_like(0, dtype), p])


def _log_softmax(g, node):
    return g.add("LogSoftmax", [g.input(node, 0)], axis=int(node.options.get("axis", -1)))


def _layer_norm(g, node):
    """ONNX's LayerNormalization over the last ``ndim`` axes; ``has_residual``: of x + r."""
    o = node.options
    x = g.input(node, 0)
    j = 1
    if o.get("has_residual"):
        x, j = g.add("Add", [x, g.input(node, 1)]), 2
    ndim = int(o.get("ndim", 1))
    shape = node.in_arrays[0].shape[-ndim:]
    if o.get("has_weight", True):
        scale, j = g.input(node, j), j + 1
    else:
        scale = g.const(np.ones(shape, dtype=_dtype(node)))
    inputs = [x, scale] + ([g.input(node, j)] if o.get("has_bias", True) else [])
    return g.add("LayerNormalization", inputs, axis=-ndim, epsilon=float(o.get("eps", 1e-5)))


def _rms_norm(g, node):
    """x / sqrt(mean(x^2) + eps) (* weight) over the last ``ndim`` axes: Mul, ReduceMean, Add,
    Sqrt, Div (and Mul); ONNX's RMSNormalization only arrives with opset 23."""
    o, x, dt = node.options, g.input(node, 0), _dtype(node)
    rank, ndim = node.in_arrays[0].ndim, int(o.get("ndim", 1))
    mean_square = g.reduce("ReduceMean", g.add("Mul", [x, x]), list(range(rank - ndim, rank)), True)
    rms = g.add("Sqrt", [g.add("Add", [mean_square, g.scalar_like(o.get("eps", 1e-6), dt)])])
    y = g.add("Div", [x, rms])
    return g.add("Mul", [y, g.input(node, 1)]) if o.get("has_weight", True) else y


def _silu(g, node):
    x = g.input(node, 0)
    return g.add("Mul", [x, g.add("Sigmoid", [x])])


def _swiglu(g, node):
    """silu(gate) * up: Sigmoid, Mul, Mul."""
    gate = g.input(node, 0)
    return g.add("Mul", [g.add("Mul", [gate, g.add("Sigmoid", [gate])]), g.input(node, 1)])


def _rotary(g, node):
    """x cos + rotate_half(x) sin, rotate_half(x) = (-x2, x1): Slice, Neg, Concat, Mul, Add
    (cos and sin the node's constants)."""
    x = g.input(node, 0)
    axis, half = node.in_arrays[0].ndim - 1, node.in_arrays[0].shape[-1] // 2
    first, second = _slice(g, x, slice(0, half), axis), _slice(g, x, slice(half, None), axis)
    rotated = g.add("Concat", [g.add("Neg", [second]), first], axis=axis)
    cos, sin = (g.value(node.options[key], node.where) for key in ("cos", "sin"))
    return g.add("Add", [g.add("Mul", [x, cos]), g.add("Mul", [rotated, sin])])


def _causal_keep(g, length: str, keys: str) -> str:
    """True where key j <= query i: ``(L, S)`` booleans from 0-d sizes ``length`` and ``keys``."""
    zero, one = g.const(np.array(0, np.int64)), g.const(np.array(1, np.int64))
    rows = g.add("Unsqueeze", [g.add("Range", [zero, length, one]), g.const(_i64([1]))])
    cols = g.add("Unsqueeze", [g.add("Range", [zero, keys, one]), g.const(_i64([0]))])
    return g.add("LessOrEqual", [cols, rows])


def _attention(g, node):
    """softmax(q k^T scale + masks) v: q scaled first, as numformer's kernel; masked entries
    -inf, and a row with every key masked gives zeros (numformer's rule) instead of NaN. With
    ``need_weights``, the softmax is the node's second output. Inputs of any rank whose batch
    dims broadcast (grouped-query attention's ``(N, Hkv, G, L, E)`` queries against
    ``(N, Hkv, 1, S, E)`` keys) broadcast in ``MatMul`` as in NumPy."""
    o = node.options
    if o.get("dropout_p"):
        raise UnsupportedOperatorError(
            f"{node.where}: attention dropout is on (p = {o['dropout_p']}): export the model in eval mode"
        )
    q, k, v = (g.input(node, j) for j in range(3))
    dt = _dtype(node)
    rank = node.in_arrays[1].ndim
    perm = list(range(rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    scores = g.add(
        "MatMul", [g.add("Mul", [q, g.scalar_like(o.get("scale", 1.0), dt)]), g.add("Transpose", [k], perm=perm)]
    )
    minus_inf = g.scalar_like(-np.inf, dt)
    if o.get("float_mask") is not None:
        scores = g.add("Add", [scores, g.value(o["float_mask"], node.where)])
    keep = g.value(o["bool_mask"], node.where) if o.get("bool_mask") is not None else None
    if keep is not None:
        scores = g.add("Where", [keep, scores, minus_inf])
    if o.get("is_causal"):
        length = g.add("Squeeze", [g.size(q, -2), g.const(_i64([0]))])
        keys = g.add("Squeeze", [g.size(k, -2), g.const(_i64([0]))])
        scores = g.add("Where", [_causal_keep(g, length, keys), scores, minus_inf])
    p = g.add("Softmax", [scores], axis=-1)
    if o.get("float_mask") is not None:  # a row may be all -inf: found on the scores
        p = _guard_dead_rows(g, scores, p, -1, dt)
    elif keep is not None:  # (the causal kernel never comes with a mask) found on the mask: far smaller
        anyone = g.reduce("ReduceMax", g.add("Cast", [keep], to=g.tensor_type(np.int32)), [-1], True)
        dead = g.add("Equal", [anyone, g.const(np.array(0, np.int32))])
        p = g.add("Where", [dead, g.scalar_like(0, dt), p])
    out = g.add("MatMul", [p, v])
    return (out, p) if o.get("need_weights") else out


def _embedding(g, node):
    return g.add("Gather", [g.input(node, 0), g.value(node.options["indices"], node.where)], axis=0)


def _mse(g, node):
    d = g.add("Sub", [g.input(node, 0), g.input(node, 1)])
    squares = g.add("Mul", [d, d])
    reduction = node.options.get("reduction", "mean")
    weight = node.options.get("weight")
    if weight is not None:
        w = g.value(weight, node.where)
        squares = g.add("Mul", [squares, w])
    if reduction == "none":
        return squares
    if reduction == "sum" or weight is None:
        return g.reduce("ReduceMean" if reduction == "mean" else "ReduceSum", squares, None, False)
    total_weight = g.reduce("ReduceSum", g.add("Expand", [w, g.shape(d)]), None, False)  # mean: over sum(w)
    return g.add("Div", [g.reduce("ReduceSum", squares, None, False), total_weight])


# --- activations, normalisation, padding --------------------------------------------------------


def _leaky_relu(g, node):
    return g.add("LeakyRelu", [g.input(node, 0)], alpha=float(node.options.get("negative_slope", 0.01)))


def _elu(g, node):
    """ELU, SELU (a scale) or CELU (an input scale 1 / alpha): ONNX has each."""
    x, o = g.input(node, 0), node.options
    alpha, scale, input_scale = o.get("alpha", 1.0), o.get("scale", 1.0), o.get("input_scale", 1.0)
    if input_scale != 1.0:
        return g.add("Celu", [x], alpha=float(alpha))
    if scale != 1.0:
        return g.add("Selu", [x], alpha=float(alpha), gamma=float(scale))
    return g.add("Elu", [x], alpha=float(alpha))


def _softplus(g, node):
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold (as numformer's)."""
    x, dt = g.input(node, 0), _dtype(node)
    beta, threshold = node.options.get("beta", 1.0), node.options.get("threshold", 20.0)
    bx = g.add("Mul", [x, g.scalar_like(beta, dt)])
    soft = g.add("Div", [g.add("Softplus", [bx]), g.scalar_like(beta, dt)])
    return g.add("Where", [g.add("Greater", [bx, g.scalar_like(threshold, dt)]), x, soft])


def _hardtanh(g, node):
    dt = _dtype(node)
    low, high = (g.scalar_like(node.options.get(k, d), dt) for k, d in (("min_val", -1.0), ("max_val", 1.0)))
    return g.add("Clip", [g.input(node, 0), low, high])


def _log_sigmoid(g, node):
    return g.add("Neg", [g.add("Softplus", [g.add("Neg", [g.input(node, 0)])])])


def _hardsigmoid(g, node):
    return g.add("HardSigmoid", [g.input(node, 0)], alpha=1 / 6, beta=0.5)


def _mish(g, node):
    """ONNX's Mish from opset 18; before: x tanh(softplus(x))."""
    x = g.input(node, 0)
    if g.opset >= 18:
        return g.add("Mish", [x])
    return g.add("Mul", [x, g.add("Tanh", [g.add("Softplus", [x])])])


def _normalize(g, node):
    """x / max(||x||_p, eps) along the axis: ReduceL2 (p = 2), ReduceL1 (p = 1), else
    Pow, ReduceSum, Pow."""
    x, o, dt = g.input(node, 0), node.options, _dtype(node)
    p, axis = o.get("p", 2.0), int(o.get("axis", 1))
    if p in (1.0, 2.0):
        op = "ReduceL2" if p == 2.0 else "ReduceL1"
        norm = (
            g.add(op, [x, g.const(_i64([axis]))], keepdims=1)
            if g.opset >= 18
            else g.add(op, [x], axes=[axis], keepdims=1)
        )
    else:
        powered = g.add("Pow", [g.add("Abs", [x]), g.scalar_like(p, dt)])
        norm = g.add("Pow", [g.reduce("ReduceSum", powered, [axis], True), g.scalar_like(1 / p, dt)])
    return g.add("Div", [x, g.add("Max", [norm, g.scalar_like(o.get("eps", 1e-12), dt)])])


def _pad(g, node):
    """ONNX's Pad (constant, reflect, edge; negative amounts crop); circular as Slice and Concat
    per padded dim (ONNX's "wrap" is opset 19's)."""
    x, o = g.input(node, 0), node.options
    pads, mode = [tuple(int(v) for v in pair) for pair in o["pads"]], o.get("mode", "constant")
    if mode == "circular":
        for axis, (before, after) in enumerate(pads):
            parts = []
            if before:
                parts.append(_slice(g, x, slice(-before, None), axis))
            parts.append(x)
            if after:
                parts.append(_slice(g, x, slice(0, after), axis))
            x = g.add("Concat", parts, axis=axis) if len(parts) > 1 else x
        return x
    amounts = g.const(_i64([b for b, _ in pads] + [a for _, a in pads]))
    if mode == "constant":
        return g.add("Pad", [x, amounts, g.scalar_like(o.get("value", 0), _dtype(node))], mode="constant")
    return g.add("Pad", [x, amounts], mode={"reflect": "reflect", "replicate": "edge"}[mode])


# --- convolution and pooling -------------------------------------------------------------------


def _pads(pairs) -> list:
    """((top, bottom), (left, right)) as ONNX's [top, left, bottom, right]."""
    return [int(p[0]) for p in pairs] + [int(p[1]) for p in pairs]


def _conv(g, node):
    o = node.options
    inputs = [g.input(node, j) for j in range(len(node.inputs))]
    return g.add(
        "Conv",
        inputs,
        kernel_shape=[int(k) for k in node.in_arrays[1].shape[2:]],
        strides=[int(v) for v in o.get("stride", (1, 1))],
        dilations=[int(v) for v in o.get("dilation", (1, 1))],
        pads=_pads(o.get("padding", ((0, 0), (0, 0)))),
        group=int(o.get("groups", 1)),
    )


def _max_pool(g, node):
    o = node.options
    if o.get("return_indices"):
        raise UnsupportedOperatorError(
            f"{node.where}: max pooling's return_indices (ONNX's indices count over the whole tensor, PyTorch's "
            "over each channel)"
        )
    padding = [int(v) for v in o["padding"]]
    return g.add(
        "MaxPool",
        [g.input(node, 0)],
        kernel_shape=[int(k) for k in o["kernel"]],
        strides=[int(v) for v in o["stride"]],
        dilations=[int(v) for v in o["dilation"]],
        pads=padding + padding,
        ceil_mode=int(bool(o.get("ceil_mode", False))),
    )


def _avg_pool(g, node):
    o = node.options
    if o.get("divisor_override"):
        raise UnsupportedOperatorError(f"{node.where}: average pooling's divisor_override has no ONNX form")
    padding = [int(v) for v in o["padding"]]
    return g.add(
        "AveragePool",
        [g.input(node, 0)],
        kernel_shape=[int(k) for k in o["kernel"]],
        strides=[int(v) for v in o["stride"]],
        pads=padding + padding,
        ceil_mode=int(bool(o.get("ceil_mode", False))),
        count_include_pad=int(bool(o.get("count_include_pad", True))),
    )


# --- recurrent layers -------------------------------------------------------------------------


class LSTMStates:
    """What an ``LSTMLayer`` node's output ``(2, N, L, H)`` becomes: ONNX's LSTM gives every
    step's hidden state and only the last cell state, so only ``[0]`` (the hidden states),
    ``[0, :, -1]`` and ``[1, :, -1]`` (the last step's) can be read from it; any other use is an
    error, never a wrong value."""

    def __init__(self, hidden: str, last_hidden: str, last_cell: str, where: str):
        self.hidden, self.last_hidden, self.last_cell, self.where = hidden, last_hidden, last_cell, where

    def pick(self, index, where: str) -> str:
        if index == 0 or index == (0,):
            return self.hidden
        if isinstance(index, tuple) and len(index) == 3 and index[1] == slice(None) and index[2] == -1:
            if index[0] == 0:
                return self.last_hidden
            if index[0] == 1:
                return self.last_cell
        raise UnsupportedOperatorError(f"{where}: reads {index!r} of {self.whole_name()}")

    def whole_name(self) -> str:
        return (
            f"the states of {self.where}, of which ONNX's LSTM gives every hidden state but only the last cell "
            "state ([0], [0, :, -1] and [1, :, -1] can be read)"
        )

    def whole(self, where: str):
        raise UnsupportedOperatorError(f"{where} uses {self.whole_name()}")


def _reorder(g, w: str, gates: int, size: int, order) -> str:
    """``w``'s ``gates`` blocks of ``size`` rows (axis 0) in ``order``."""
    if list(order) == list(range(gates)):
        return w
    blocks = g.add("Split", [w, g.const(_i64([size] * gates))], outputs=gates, axis=0)
    return g.add("Concat", [blocks[i] for i in order], axis=0)


def _recurrent(g, node, op_type: str, gates: int, order, state_inputs: int, **attributes):
    """ONNX's ``op_type`` (LSTM, RNN, GRU) for a layer primitive with inputs ``(x, w_ih, w_hh,
    <state_inputs initial states>, [b_ih, b_hh])``. Returns ``(Y, Y_h, Y_c)`` as ``(N, L, H)``,
    ``(N, H)``, ``(N, H)`` (Y_c only for an LSTM)."""
    H = node.in_arrays[2].shape[1]
    first = g.const(_i64([0]))
    W = g.add("Unsqueeze", [_reorder(g, g.input(node, 1), gates, H, order), first])
    R = g.add("Unsqueeze", [_reorder(g, g.input(node, 2), gates, H, order), first])
    B = ""
    if len(node.inputs) > 3 + state_inputs:
        both = [_reorder(g, g.input(node, 3 + state_inputs + j), gates, H, order) for j in range(2)]
        B = g.add("Unsqueeze", [g.add("Concat", both, axis=0), first])
    X = g.add("Transpose", [g.input(node, 0)], perm=[1, 0, 2])  # (L, N, in): the operator's default layout
    states = [g.add("Unsqueeze", [g.input(node, 3 + j), first]) for j in range(state_inputs)]
    outputs = 3 if op_type == "LSTM" else 2
    Y, *finals = g.add(op_type, [X, W, R, B, "", *states], outputs=outputs, hidden_size=H, **attributes)
    hidden = g.add("Transpose", [g.add("Squeeze", [Y, g.const(_i64([1]))])], perm=[1, 0, 2])
    return (hidden, *(g.add("Squeeze", [f, first]) for f in finals))


def _lstm(g, node):
    hidden, last_h, last_c = _recurrent(g, node, "LSTM", gates=4, order=(0, 3, 1, 2), state_inputs=2)
    return LSTMStates(hidden, last_h, last_c, node.where)


def _gru(g, node):
    hidden, _ = _recurrent(g, node, "GRU", gates=3, order=(1, 0, 2), state_inputs=1, linear_before_reset=1)
    return hidden


def _rnn(g, node):
    activation = "Relu" if node.options.get("relu") else "Tanh"
    hidden, _ = _recurrent(g, node, "RNN", gates=1, order=(0,), state_inputs=1, activations=[activation])
    return hidden


# --- masks and positions ----------------------------------------------------------------------


def _position_ids(g, node):
    ids = g.input(node, 0)
    start = g.scalar(node.options.get("offset", 0))
    length = g.add("Squeeze", [g.size(ids, -1), g.const(_i64([0]))])
    positions = g.add("Range", [start, g.add("Add", [start, length]), g.const(np.array(1, np.int64))])
    return g.add("Expand", [positions, g.shape(ids)])


def _equal_value(g, node) -> str:
    dt = _dtype(node)
    value = node.options["value"]
    as_dtype = np.asarray(value).astype(dt)
    if as_dtype != value:
        raise UnsupportedOperatorError(f"{node.where}: compares {dt} values with {value!r}, not one of them")
    return g.add("Equal", [g.input(node, 0), g.const(as_dtype)])


def _not_equal(g, node):
    return g.add("Not", [_equal_value(g, node)])


def _merge_masks(g, node):
    """The parts of ``MergeMasks`` as ONNX: boolean parts or'ed and negated, or a float sum."""
    o = node.options
    dt = np.dtype(o["dtype"])
    parts, j = [], 0
    if o["has_attn_mask"]:
        m = g.input(node, 0)
        if node.in_arrays[0].ndim == 2:
            m = g.add("Unsqueeze", [m, g.const(_i64([0, 1]))])
        else:
            m = g.add("Reshape", [m, g.ints((o["N"], o["H"], o["L"], o["S"]))])
        parts.append((m, node.in_arrays[0].dtype))
        j = 1
    elif o["is_causal"]:
        causal = g.add("Not", [_causal_keep(g, g.scalar(o["L"]), g.scalar(o["S"]))])
        parts.append((g.add("Unsqueeze", [causal, g.const(_i64([0, 1]))]), np.dtype(bool)))
    if o["has_key_padding_mask"]:
        parts.append((g.add("Unsqueeze", [g.input(node, j), g.const(_i64([1, 2]))]), node.in_arrays[j].dtype))
    if all(kind == np.bool_ for _, kind in parts):
        ignore = parts[0][0]
        for m, _ in parts[1:]:
            ignore = g.add("Or", [ignore, m])
        return g.add("Not", [ignore])
    total = None
    for m, kind in parts:
        if kind == np.bool_:
            term = g.add("Where", [m, g.scalar_like(-np.inf, dt), g.scalar_like(0, dt)])
        else:
            term = g.add("Cast", [m], to=g.tensor_type(dt))
        total = term if total is None else g.add("Add", [total, term])
    return total


# --- the table --------------------------------------------------------------------------------

_RANDOM = "random (dropout): export the model in eval mode (model.eval()), where dropout is the identity"
_LOSS = "a training loss (its targets are no input of a deployed model): export the forward without targets"

TABLE = {
    # elementwise
    E.Add: _same_op("Add"),
    E.Sub: _same_op("Sub"),
    E.Mul: _same_op("Mul"),
    E.Div: _same_op("Div"),
    E.Neg: _same_op("Neg"),
    E.Pow: _same_op("Pow"),
    E.PowScalar: _pow_scalar,
    E.Exp: _same_op("Exp"),
    E.Log: _same_op("Log"),
    E.Sqrt: _same_op("Sqrt"),
    E.Abs: _same_op("Abs"),
    E.Tanh: _same_op("Tanh"),
    E.Sigmoid: _same_op("Sigmoid"),
    E.Relu: _same_op("Relu"),
    E.Gelu: _gelu,
    E.Where: _where,
    E.Clip: _clip,
    E.Cast: _cast,
    E.Copy: _same_op("Identity"),
    E.Fill: _fill,
    E.Sin: _same_op("Sin"),
    E.Cos: _same_op("Cos"),
    E.Log1p: _log1p,
    E.Expm1: _expm1,
    E.Stepwise: _stepwise,
    E.Maximum: _same_op("Max"),
    E.Erf: _same_op("Erf"),
    E.Minimum: _same_op("Min"),
    # reductions
    R.Cumsum: _cumsum,
    R.Sum: _reduction("ReduceSum"),
    R.Mean: _reduction("ReduceMean"),
    R.Max: _reduction("ReduceMax"),
    R.Var: _var,
    R.Prod: _prod,
    # shapes
    LA.Einsum: _einsum,
    S.Reshape: _reshape,
    S.Permute: _permute,
    S.BroadcastTo: _broadcast_to,
    S.GetItem: _getitem,
    S.Index: _index,
    S.Cat: _cat,
    S.Stack: _stack,
    S.Gather: _gather,
    S.Scatter: _scatter("none"),
    S.ScatterAdd: _scatter("add"),
    S.SetItem: NotExportable(
        "index assignment (t[i] = v) inside a forward: build the value out of place (torch.where, cat) to export it"
    ),
    # linear algebra, softmax, normalisation, attention
    LA.MatMul: _same_op("MatMul"),
    LA.Linear: _linear,
    SM.Softmax: _softmax,
    SM.LogSoftmax: _log_softmax,
    N.LayerNorm: _layer_norm,
    N.RMSNorm: _rms_norm,
    GA.Silu: _silu,
    GA.SwiGLU: _swiglu,
    RO.Rotary: _rotary,
    A.ScaledDotProductAttention: _attention,
    A.BlockedAttention: _attention,
    EM.Embedding: _embedding,
    # recurrent layers
    RC.LSTMLayer: _lstm,
    RC.RNNLayer: _rnn,
    RC.GRULayer: _gru,
    # activations, normalisation, padding
    AC.LeakyRelu: _leaky_relu,
    AC.Elu: _elu,
    AC.Softplus: _softplus,
    AC.Hardtanh: _hardtanh,
    AC.LogSigmoid: _log_sigmoid,
    AC.Hardsigmoid: _hardsigmoid,
    AC.Hardswish: _same_op("HardSwish"),
    AC.Mish: _mish,
    AC.Softsign: _same_op("Softsign"),
    NZ.Normalize: _normalize,
    PD.Pad: _pad,
    # convolution and pooling
    CV.Conv2d: _conv,
    CV.MaxPool2d: _max_pool,
    CV.AvgPool2d: _avg_pool,
    # masks and positions
    M.PositionIds: _position_ids,
    M.Equal: _equal_value,
    M.NotEqual: _not_equal,
    M.MergeMasks: _merge_masks,
    # none
    D.Dropout: NotExportable(_RANDOM),
    LO.MSELoss: _mse,
    LO.CrossEntropy: NotExportable(_LOSS),
    LO.NLLLoss: NotExportable(_LOSS),
    LO.L1Loss: NotExportable(_LOSS),
    LO.SmoothL1Loss: NotExportable(_LOSS),
    LO.HuberLoss: NotExportable(_LOSS),
    LO.BinaryCrossEntropy: NotExportable(_LOSS),
    LO.BinaryCrossEntropyWithLogits: NotExportable(_LOSS),
    LO.KLDiv: NotExportable(_LOSS),
}
