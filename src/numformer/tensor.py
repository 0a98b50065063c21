"""``Tensor``: a NumPy array that remembers how it was made, so gradients can flow back.

Methods and argument names follow PyTorch (``dim``, ``keepdim``); each method is a thin call
to one primitive in ``numformer.ops``. Python scalars take the tensor's dtype, so a float32
tensor stays float32 through every op (NumPy's promotion of float64 scalars never leaks in).
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from numformer import autograd, backend
from numformer.backend import (
    Device,
    as_dtype,
    device_of,
    get_default_dtype,
    is_floating,
    module_of,
    to_device,
    to_numpy,
    xp,
)
from numformer.ops import elementwise as E
from numformer.ops import linalg as LA
from numformer.ops import reduce as R
from numformer.ops import shape as S
from numformer.ops import softmax as SM

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _to_array(data, dtype=None):
    """NumPy array from ``data``; Python floats get the default dtype, as in ``torch.tensor``."""
    if isinstance(data, Tensor):
        data = data.array
    if dtype is not None:
        return xp.asarray(data, dtype=as_dtype(dtype))
    arr = xp.asarray(data)
    if arr.dtype == np.float64 and not isinstance(data, (np.ndarray, np.generic)):
        arr = arr.astype(get_default_dtype())
    return arr


class Tensor:
    """An n-dimensional array with optional gradient tracking.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is anything ``numpy.asarray``
    takes. Only floating tensors may require gradients. ``.grad`` is a Tensor (or None) filled
    by ``backward``; it accumulates across calls until zeroed. ``.data`` is the same values as a
    tensor outside the graph (sharing memory), as in PyTorch; ``.array`` is the backing array
    itself (NumPy's, or CuPy's on a GPU): the one accessor numformer's own code uses for it.
    """

    __slots__ = ("array", "_grad", "_requires_grad", "_fn", "_out", "_vc", "_base", "__weakref__")
    __array_priority__ = 1000  # numpy_array * tensor -> Tensor.__rmul__, not an object array

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.array = _to_array(data, dtype)
        self._grad = self._fn = self._vc = self._base = None
        self._out = 0
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, requires_grad: bool) -> Tensor:
        """Make an op's output without copying or converting ``array``."""
        t = cls.__new__(cls)
        t.array = array if isinstance(array, xp.ndarray) else xp.asarray(array)
        t._grad = t._fn = t._vc = t._base = None
        t._out, t._requires_grad = 0, requires_grad
        return t

    @classmethod
    def _wrap_on(cls, array, requires_grad: bool) -> Tensor:
        """A tensor around ``array`` as it is, whatever its device."""
        t = cls.__new__(cls)
        t.array = array
        t._grad = t._fn = t._vc = t._base = None
        t._out, t._requires_grad = 0, requires_grad
        return t

    def _result(self, array, requires_grad: bool) -> Tensor:
        """An op's output tensor (``Function.apply`` calls this on its first input): always a
        plain ``Tensor``, also when ``self`` is a ``Parameter``."""
        t = Tensor.__new__(Tensor)
        t.array = array if isinstance(array, xp.ndarray) else xp.asarray(array)
        t._grad = t._fn = t._vc = t._base = None
        t._out, t._requires_grad = 0, requires_grad
        return t

    def _view(self, array, requires_grad: bool) -> Tensor:
        """An output that may share this tensor's memory (a view): it shares its version
        counter, and remembers this tensor as its base when gradients flow through it."""
        t = self._result(array, requires_grad)
        t._vc = self._counter()
        if requires_grad:
            t._base = self._base if self._base is not None else self
        return t

    # --- versions: every in-place change bumps the counter a tensor shares with its views -----
    def _counter(self) -> list:
        if self._vc is None:
            self._vc = [0]
        return self._vc

    @property
    def _version(self) -> int:
        """How many times this tensor's values were changed in place (PyTorch's ``_version``)."""
        return 0 if self._vc is None else self._vc[0]

    def _saved_version(self) -> tuple:
        """What a node records of a tensor its backward reads: (counter, version, shape, dtype)."""
        counter = self._counter()
        return counter, counter[0], self.array.shape, self.array.dtype

    def _bump(self) -> None:
        """Record an in-place change of this tensor's values."""
        self._counter()[0] += 1

    # --- data and gradient ------------------------------------------------------------------
    @property
    def data(self) -> Tensor:
        """The same values as a tensor that is not part of any graph (memory shared, as
        PyTorch's ``.data``): ``p.data.add_(...)`` changes ``p`` without recording anything
        (nor bumping the version ``backward`` checks, as in PyTorch). Assigning ``p.data = t``
        makes ``p`` hold ``t``'s values (its array, shared)."""
        return Tensor._wrap_on(self.array, False)

    @data.setter
    def data(self, value) -> None:
        array = value.array if isinstance(value, Tensor) else None
        if array is None:
            raise TypeError(f"data: expected a Tensor, got {type(value).__name__}")
        self.array = array

    @property
    def grad(self) -> Tensor | None:
        """The gradient ``backward`` accumulated into this tensor (a Tensor of its shape), or None."""
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(f"assigned grad has data of a different size: {value.shape}, expected {self.shape}")
        self._grad = value

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not is_floating(self.array.dtype):
            raise TypeError(
                f"requires_grad: only floating-point tensors can require gradients, got dtype {self.array.dtype}"
            )
        if not value and self._fn is not None:
            raise RuntimeError("requires_grad: cannot turn off gradients of a non-leaf tensor; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._fn is None

    @property
    def grad_fn(self):
        return self._fn

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep theirs)."""
        if self._fn is None:
            return
        import weakref

        if "retained" not in vars(self._fn):
            self._fn.retained = {}
        self._fn.retained[self._out] = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        fn = self._fn
        return fn is not None and self._out in vars(fn).get("retained", {})

    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Compute gradients of this tensor with respect to every leaf that requires them.

        ``gradient`` (same shape as this tensor) is the upstream gradient; it may be omitted
        only for a one-element tensor, where it is 1. ``create_graph`` (higher-order gradients)
        is not supported: it raises.
        """
        if create_graph:
            raise NotImplementedError(
                "backward: create_graph=True (higher-order gradients) is not supported by numformer"
            )
        if not self.requires_grad:
            raise RuntimeError(
                "element 0 of tensors does not require grad and does not have a grad_fn: "
                "did you create its inputs with requires_grad=True, or run under no_grad()?"
            )
        if gradient is None:
            if self.array.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; "
                    f"this tensor has shape {self.shape}: pass gradient= of that shape"
                )
            gradient = xp.ones(self.shape, dtype=self.dtype)
        else:
            gradient = _to_array(gradient, self.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"backward: gradient must have the tensor's shape {self.shape}, got {gradient.shape}")
        autograd.backward(self, gradient, retain_graph=bool(retain_graph))

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory and the version counter, as in PyTorch)."""
        t = Tensor._wrap_on(self.array, False)
        t._vc = self._counter()
        return t

    def detach_(self) -> Tensor:
        """Cut this tensor from the graph, in place: it becomes a leaf that does not require grad."""
        self._fn, self._requires_grad, self._base = None, False, None
        return self

    def zero_grad(self) -> None:
        self._grad = None

    def __deepcopy__(self, memo):
        """A new leaf with copied data and no gradient (as PyTorch's deepcopy of a parameter)."""
        new = type(self).__new__(type(self))
        Tensor.__init__(new, self.array.copy(), requires_grad=self.requires_grad)
        memo[id(self)] = new
        return new

    # --- array-like views -------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def dim(self) -> int:
        return self.array.ndim

    def size(self, dim: int | None = None):
        return self.array.shape if dim is None else self.array.shape[dim]

    def numel(self) -> int:
        return int(self.array.size)

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (shared, not copied).

        Raises:
            TypeError: the tensor is on another device than the CPU (``.cpu().numpy()`` copies
            it to the host first, as in PyTorch)."""
        if not isinstance(self.array, np.ndarray):
            raise TypeError(f"numpy(): the tensor is on {self.device}; copy it to the host with .cpu().numpy() first")
        return self.array

    @property
    def device(self) -> Device:
        """Where the data lives: ``device(type='cpu')`` or ``device(type='cuda', index=0)``."""
        return device_of(self.array)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python number, got shape {self.shape}")
        return self.array.item()

    def tolist(self):
        return self.array.tolist()

    # --- Python's and NumPy's protocols, with PyTorch's semantics ---------------------------
    def _one_element(self, what: str):
        if self.array.size != 1:
            raise ValueError(
                f"{what}: only one element tensors can be converted to Python scalars, got shape {self.shape}"
            )
        return self.array.item()

    def __bool__(self) -> bool:
        if self.array.size == 0:
            raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
        if self.array.size > 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous (shape {self.shape})")
        return bool(self.array.item())

    def __float__(self) -> float:
        return float(self._one_element("float()"))

    def __int__(self) -> int:
        return int(self._one_element("int()"))

    def __index__(self) -> int:
        if self.array.dtype.kind not in "iub" or self.array.size != 1:
            raise TypeError(
                f"only integer tensors of a single element can be converted to an index, got {self.dtype} {self.shape}"
            )
        return int(self.array.item())

    def __format__(self, spec: str) -> str:
        """A 0-d tensor formats as its number (``f"{loss:.3f}"``); others only without a spec."""
        if self.ndim == 0:
            return format(self.array.item(), spec)
        if spec:
            raise TypeError(f"unsupported format string {spec!r} passed to Tensor.__format__ (shape {self.shape})")
        return repr(self)

    def __array__(self, dtype=None, copy=None):
        """The data as a NumPy array (a view where possible, as ``numpy()``): NumPy does not track
        gradients, so results computed from it are plain arrays."""
        data = backend.to_numpy(self.array)
        if dtype is not None and data.dtype != dtype:
            return data.astype(dtype)
        return data.copy() if copy else data

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy's ufuncs on tensors run as numformer ops, with gradients: ``np.exp(t)`` is
        ``t.exp()``, ``np.add(a, t)`` is ``a + t``. Any other ufunc, a method other than a plain
        call (``reduce``, ``accumulate``), or ``out=``/``where=`` raises TypeError."""
        name = ufunc.__name__
        if method != "__call__" or kwargs:
            raise TypeError(
                f"numpy.{name}.{method}{' with ' + ', '.join(kwargs) if kwargs else ''} is not supported on numformer "
                "Tensors: use numformer's ops, or .numpy() to leave the graph"
            )
        if name in _UNARY_UFUNCS and len(inputs) == 1:
            return _UNARY_UFUNCS[name](inputs[0])
        if name in _BINARY_UFUNCS and len(inputs) == 2:
            a, b = inputs
            forward, reflected = _BINARY_UFUNCS[name]
            return getattr(a, forward)(b) if isinstance(a, Tensor) else getattr(b, reflected)(a)
        raise TypeError(f"numpy.{name} has no numformer op: use numformer's ops, or .numpy() to leave the graph")

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(to_numpy(self.array), separator=", ", precision=4, prefix="tensor(")
        extra = ""
        if self.dtype != get_default_dtype() and is_floating(self.dtype):
            extra += f", dtype={self.dtype}"
        if self._fn is not None:
            extra += f", grad_fn=<{self._fn.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    # --- dtype ------------------------------------------------------------------------------
    def to(self, *args, device=None, dtype=None) -> Tensor:
        """A tensor on ``device`` and/or of ``dtype`` (``t.to("cuda")``, ``t.to(np.float64)``,
        ``t.to("cuda", np.float32)``, ``t.to(device=..., dtype=...)``); ``self`` when nothing
        changes. A cast is differentiable; a move copies a leaf (keeping ``requires_grad``).

        Raises:
            RuntimeError: moving a tensor computed in a graph (move its leaves instead), or a
            device that is not available."""
        for arg in args:
            if isinstance(arg, Device) or (isinstance(arg, str) and arg.partition(":")[0] in ("cpu", "cuda")):
                device = arg
            else:
                dtype = arg
        t = self
        if device is not None and Device(device) != t.device:
            if t._fn is not None and t._requires_grad:
                raise RuntimeError(
                    "to(device): this tensor was computed in a graph; move the leaves (inputs, parameters) instead"
                )
            t = Tensor._wrap_on(to_device(t.array, device), t._requires_grad)
        if dtype is None:
            return t
        dtype = as_dtype(dtype)
        if dtype == t.dtype:
            return t
        if t.requires_grad and not is_floating(dtype):  # no gradient through an integer cast
            return Tensor._wrap_on(t.array.astype(dtype), False)
        return E.Cast.apply(t, dtype=dtype)  # a primitive also without a graph: traced forwards see it

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def long(self) -> Tensor:
        return self.to(np.int64)

    def bool(self) -> Tensor:
        return self.to(np.bool_)

    # --- arithmetic -------------------------------------------------------------------------
    def _operand(self, other) -> Tensor:
        """``other`` as a Tensor; Python and NumPy scalars take this tensor's dtype."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float, np.number)) and not isinstance(other, bool):
            if is_floating(self.dtype) or isinstance(other, (int, np.integer)):
                dtype = self.dtype
            else:  # a float with an integer tensor: the default float dtype, as in PyTorch
                dtype = get_default_dtype() if isinstance(other, float) else other.dtype
            if isinstance(self.array, xp.ndarray):
                return Tensor._wrap(xp.asarray(other, dtype=dtype), False)
            return Tensor._wrap_on(module_of(self.array).asarray(other, dtype=dtype), False)  # on self's device
        return Tensor(other)

    def _binary(self, op, other, name, reverse=False):
        other = self._operand(other)
        a, b = (other, self) if reverse else (self, other)
        if a.array.dtype != b.array.dtype or (op is E.Div and a.array.dtype.kind != "f"):
            a, b = _promote(a, b, true_division=op is E.Div)
        try:
            return op.apply(a, b)
        except ValueError as err:
            if "broadcast" not in str(err):
                raise
            raise ValueError(f"{name}: input shape {a.shape} and other shape {b.shape} do not broadcast") from None

    def __add__(self, other):
        return self._binary(E.Add, other, "add")

    def __radd__(self, other):
        return self._binary(E.Add, other, "add", reverse=True)

    def __sub__(self, other):
        return self._binary(E.Sub, other, "sub")

    def __rsub__(self, other):
        return self._binary(E.Sub, other, "sub", reverse=True)

    def __mul__(self, other):
        return self._binary(E.Mul, other, "mul")

    def __rmul__(self, other):
        return self._binary(E.Mul, other, "mul", reverse=True)

    def __truediv__(self, other):
        return self._binary(E.Div, other, "div")

    def __rtruediv__(self, other):
        return self._binary(E.Div, other, "div", reverse=True)

    def __neg__(self):
        return E.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            return E.PowScalar.apply(self, exponent=exponent)
        return self._binary(E.Pow, exponent, "pow")

    def __rpow__(self, base):
        return self._binary(E.Pow, base, "pow", reverse=True)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(self._operand(other), self)

    def add(self, other):
        return self + other

    def sub(self, other):
        return self - other

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def neg(self):
        return -self

    def pow(self, exponent):
        return self**exponent

    def matmul(self, other):
        return matmul(self, other)

    # --- comparisons (never differentiable; give bool tensors, as PyTorch) -------------------
    def _compare(self, other, fn):
        other = other.array if isinstance(other, Tensor) else other
        return Tensor._wrap(fn(self.array, other), False)

    def __eq__(self, other):
        return self._compare(other, xp.equal)

    def __ne__(self, other):
        return self._compare(other, xp.not_equal)

    def __lt__(self, other):
        return self._compare(other, xp.less)

    def __le__(self, other):
        return self._compare(other, xp.less_equal)

    def __gt__(self, other):
        return self._compare(other, xp.greater)

    def __ge__(self, other):
        return self._compare(other, xp.greater_equal)

    def __invert__(self):
        return Tensor._wrap(~self.array, False)

    def all(self, dim=None, keepdim: bool = False):
        """Whether every element (along ``dim``) is nonzero: a bool tensor."""
        axis = _axes(dim, self.ndim, "all")
        return Tensor._wrap(xp.asarray(xp.all(self.array, axis=axis, keepdims=keepdim)), False)

    def any(self, dim=None, keepdim: bool = False):
        """Whether any element (along ``dim``) is nonzero: a bool tensor."""
        axis = _axes(dim, self.ndim, "any")
        return Tensor._wrap(xp.asarray(xp.any(self.array, axis=axis, keepdims=keepdim)), False)

    def isfinite(self):
        return Tensor._wrap(xp.isfinite(self.array), False)

    def isnan(self):
        return Tensor._wrap(xp.isnan(self.array), False)

    def isinf(self):
        return Tensor._wrap(xp.isinf(self.array), False)

    # --- unary maths ------------------------------------------------------------------------
    def exp(self):
        return E.Exp.apply(_floating(self))

    def log(self):
        return E.Log.apply(_floating(self))

    def sqrt(self):
        return E.Sqrt.apply(_floating(self))

    def abs(self):
        return E.Abs.apply(self)

    def tanh(self):
        return E.Tanh.apply(_floating(self))

    def sigmoid(self):
        return E.Sigmoid.apply(_floating(self))

    def relu(self):
        return E.Relu.apply(self)

    def softmax(self, dim: int = -1):
        return SM.Softmax.apply(self, axis=_axes(dim, self.ndim, "softmax")[0])

    def log_softmax(self, dim: int = -1):
        return SM.LogSoftmax.apply(self, axis=_axes(dim, self.ndim, "log_softmax")[0])

    def clamp(self, min=None, max=None):  # noqa: A002 - PyTorch's argument names
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return E.Clip.apply(self, min=min, max=max)

    clip = clamp

    def masked_fill(self, mask, value):
        return masked_fill(self, mask, value)

    # --- reductions -------------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False):
        return R.Sum.apply(self, axis=_axes(dim, self.ndim, "sum"), keepdims=keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return R.Mean.apply(self, axis=_axes(dim, self.ndim, "mean"), keepdims=keepdim)

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction: int | None = None):
        """Variance over ``dim``; ``correction=1`` (default) is unbiased, as in PyTorch."""
        if correction is None:
            correction = 0 if unbiased is False else 1
        axis = _axes(dim, self.ndim, "var")
        return R.Var.apply(self, axis=axis, keepdims=keepdim, correction=correction)

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction: int | None = None):
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def max(self, dim: int | None = None, keepdim: bool = False):
        """Max of all elements, or ``(values, indices)`` along ``dim`` (as PyTorch)."""
        if dim is None:
            return R.Max.apply(self, axis=None)
        axis = _axes(dim, self.ndim, "max")
        values = R.Max.apply(self, axis=axis, keepdims=keepdim)
        indices = xp.argmax(self.array, axis=axis[0], keepdims=keepdim)
        return MaxResult(values, Tensor._wrap(indices, False))

    def min(self, dim: int | None = None, keepdim: bool = False):
        if dim is None:
            return -R.Max.apply(-self, axis=None)
        values, indices = (-self).max(dim, keepdim)
        return MaxResult(-values, indices)

    def argmax(self, dim: int | None = None, keepdim: bool = False):
        if dim is None:
            return Tensor._wrap(xp.asarray(xp.argmax(self.array)), False)
        return Tensor._wrap(xp.argmax(self.array, axis=dim, keepdims=keepdim), False)

    # --- shape ------------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        target = (
            tuple(shape)
            if min(shape, default=0) >= 0 and math.prod(shape) == self.array.size
            else _resolve_shape(tuple(shape), self.shape)
        )
        if target == self.shape:
            return self
        return S.Reshape.apply(self, shape=target)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = start_dim % self.ndim, end_dim % self.ndim
        shape = self.shape[:start] + (-1,) + self.shape[end + 1 :]
        return self.reshape(shape)

    def permute(self, *dims):
        ndim = self.array.ndim
        dims = tuple([d % ndim for d in shape_arg(dims)])
        if sorted(dims) != list(range(ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {self.ndim} dims")
        if dims == tuple(range(ndim)):
            return self
        return S.Permute.apply(self, axes=dims)

    def transpose(self, dim0: int, dim1: int):
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(*axes)

    @property
    def T(self):  # noqa: N802 - PyTorch's name
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self):  # noqa: N802 - PyTorch's name
        return self.transpose(-2, -1)

    def unsqueeze(self, dim: int):
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim: int | None = None):
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dim = dim % self.ndim
        if self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1 :])

    def expand(self, *shape):
        shape = tuple(s if s != -1 else self.shape[i - len(shape) + self.ndim] for i, s in enumerate(shape_arg(shape)))
        try:
            np.broadcast_shapes(self.shape, shape)
        except ValueError:
            raise ValueError(f"expand: shape {self.shape} cannot expand to {shape}") from None
        return S.BroadcastTo.apply(self, shape=shape)

    def split(self, split_size_or_sections, dim: int = 0):
        return split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0):
        size = -(-self.shape[dim] // chunks)
        return split(self, size, dim)

    def __getitem__(self, index):
        index = _index_arg(index)
        op = S.GetItem if S.is_basic_index(index) else S.Index  # a view, or a copy
        return op.apply(self, index=index)


def _resolve_shape(shape: tuple, current: tuple) -> tuple:
    """``shape`` with its one ``-1`` filled in; error unless it holds as many elements."""
    numel = math.prod(current)
    known = math.prod(s for s in shape if s != -1)
    if shape.count(-1) > 1 or any(s < -1 for s in shape):
        raise ValueError(f"reshape: invalid shape {shape} (at most one -1, no other negatives)")
    if -1 in shape:
        if known == 0 or numel % known:
            raise ValueError(f"reshape: cannot reshape tensor of shape {current} ({numel} elements) into shape {shape}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise ValueError(f"reshape: cannot reshape tensor of shape {current} ({numel} elements) into shape {shape}")
    return tuple(int(s) for s in shape)


def shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _axes(dim, ndim: int, op: str):
    """Normalise a PyTorch ``dim`` (None, int, or tuple) to a tuple of non-negative axes."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise ValueError(f"{op}: dim {d} is out of range for a tensor with {ndim} dims")
        out.append(int(d) % max(ndim, 1))
    return tuple(out)


def _index_arg(index):
    """Turn Tensor indices into arrays so NumPy indexing rules apply unchanged."""
    if isinstance(index, Tensor):
        return index.array
    if isinstance(index, tuple):
        return tuple(i.array if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return xp.asarray(index)
    return index


# --- functions over several tensors ----------------------------------------------------------


def _floating(t: Tensor) -> Tensor:
    """``t``, or an integer ``t`` in the default float dtype (PyTorch's promotion for exp, /, ...)."""
    return t if is_floating(t.dtype) else t.to(get_default_dtype())


def _promote(a: Tensor, b: Tensor, true_division: bool = False) -> tuple:
    """PyTorch's type promotion between an integer and a floating tensor: the integer one takes the
    floating dtype (NumPy would widen int64 with float32 to float64); integer true division runs in
    the default float dtype."""
    fa, fb = is_floating(a.dtype), is_floating(b.dtype)
    if fa and not fb:
        return a, b.to(a.dtype)
    if fb and not fa:
        return a.to(b.dtype), b
    if true_division and not fa:
        return _floating(a), _floating(b)
    return a, b


_UNARY_UFUNCS = {
    "exp": Tensor.exp,
    "log": Tensor.log,
    "sqrt": Tensor.sqrt,
    "absolute": Tensor.abs,
    "tanh": Tensor.tanh,
    "negative": Tensor.__neg__,
    "isfinite": Tensor.isfinite,
    "isnan": Tensor.isnan,
    "isinf": Tensor.isinf,
    "positive": lambda t: t,
    "square": lambda t: t * t,
    "reciprocal": lambda t: 1.0 / t,
}
_BINARY_UFUNCS = {  # ufunc: (method of a tensor first operand, method of a tensor second operand)
    "add": ("__add__", "__radd__"),
    "subtract": ("__sub__", "__rsub__"),
    "multiply": ("__mul__", "__rmul__"),
    "true_divide": ("__truediv__", "__rtruediv__"),
    "divide": ("__truediv__", "__rtruediv__"),
    "power": ("__pow__", "__rpow__"),
    "matmul": ("__matmul__", "__rmatmul__"),
    "equal": ("__eq__", "__eq__"),
    "not_equal": ("__ne__", "__ne__"),
    "less": ("__lt__", "__gt__"),
    "less_equal": ("__le__", "__ge__"),
    "greater": ("__gt__", "__lt__"),
    "greater_equal": ("__ge__", "__le__"),
}


def array_of(value):
    """The array behind a Tensor (``value.array``), or ``value`` as an array of xp's module (a
    list, a NumPy array, a number): for arguments that may be either, such as masks and ids."""
    return value.array if isinstance(value, Tensor) else xp.asarray(value)


def as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def matmul(a, b) -> Tensor:
    """``a @ b`` with NumPy's batching and broadcasting; checks the inner dimensions."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dim, got shapes {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(
            f"matmul: input dtype {a.dtype} and other dtype {b.dtype} differ; "
            f"cast one with .to() (mixed precision here is usually a bug)"
        )
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: input shape {a.shape} and other shape {b.shape} are not aligned: "
            f"input's last dim {k_a} != other's {'first' if b.ndim == 1 else 'second-to-last'} "
            f"dim {k_b}"
        )
    try:
        return LA.MatMul.apply(a, b)
    except ValueError:
        raise ValueError(
            f"matmul: batch dims of input shape {a.shape} and other shape {b.shape} do not broadcast"
        ) from None


def where(condition, input, other) -> Tensor:  # noqa: A002 - PyTorch's argument names
    """Elementwise ``input if condition else other``; ``condition`` is boolean (no gradient)."""
    cond = condition.array if isinstance(condition, Tensor) else xp.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a boolean tensor, got dtype {cond.dtype}")
    a = as_tensor(input) if not isinstance(input, (int, float)) else None
    b = as_tensor(other) if not isinstance(other, (int, float)) else None
    if a is None and b is None:
        raise TypeError("where: at least one of input and other must be a tensor")
    a = a if a is not None else b._operand(input)
    b = b if b is not None else a._operand(other)
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: condition shape {cond.shape}, input shape {a.shape} and other shape {b.shape} do not broadcast"
        ) from None
    return E.Where.apply(a, b, condition=cond)


def masked_fill(input, mask, value) -> Tensor:  # noqa: A002
    """Fill ``input`` with ``value`` where ``mask`` is True; ``mask`` must broadcast to it."""
    m = mask.array if isinstance(mask, Tensor) else xp.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a boolean tensor, got dtype {m.dtype}")
    if not _broadcasts(m, input) or np.broadcast_shapes(m.shape, input.shape) != input.shape:
        raise ValueError(f"masked_fill: mask shape {m.shape} does not broadcast to input shape {input.shape}")
    fill = Tensor._wrap(xp.asarray(value, dtype=input.dtype), False)
    return E.Where.apply(fill, input, condition=m)


def _broadcasts(a, b) -> bool:
    try:
        np.broadcast_shapes(a.shape, b.shape)
        return True
    except ValueError:
        return False


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    _check_same_rank("cat", tensors, dim, skip_dim=True)
    return S.Cat.apply(*tensors, axis=dim % tensors[0].ndim)


concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    _check_same_rank("stack", tensors, dim, skip_dim=False)
    return S.Stack.apply(*tensors, axis=dim % (tensors[0].ndim + 1))


def _check_same_rank(op, tensors, dim, skip_dim):
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    first = tensors[0].shape
    for i, t in enumerate(tensors[1:], 1):
        a, b = list(first), list(t.shape)
        if skip_dim and len(a) == len(b) and a:
            a.pop(dim % len(a))
            b.pop(dim % len(b))
        if a != b:
            raise ValueError(f"{op}: tensor 0 has shape {first} but tensor {i} has shape {t.shape} (dim={dim})")


def split(tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Split along ``dim`` into chunks of one size (last may be smaller) or of listed sizes."""
    n = tensor.shape[dim]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - s) for s in range(0, n, size)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} sum to {sum(sizes)}, but dim {dim} has size {n}")
    out, start = [], 0
    prefix = (slice(None),) * (dim % tensor.ndim)
    for size in sizes:
        out.append(tensor[prefix + (slice(start, start + size),)])
        start += size
    return tuple(out)
