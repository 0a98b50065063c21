"""Testing helpers: float64 finite-difference gradient checks."""

from __future__ import annotations

import types

import numpy as np

from numformer.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-5, seed: int = 0) -> bool:
    """Compare ``backward`` against central differences for every input that requires grad.

    ``fn(*inputs)`` returns a Tensor (any shape). Inputs must be float64 tensors. The output is
    projected on a fixed random direction ``r`` so one backward checks the whole Jacobian-vector
    product: analytic d(sum(r * fn))/dx against (f(x + eps e_i) - f(x - eps e_i)) / (2 eps).
    Returns True or raises ``GradcheckError`` naming the input, the worst element and both values.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} must be float64 for finite differences, got {t.dtype}")
    for t in inputs:
        if isinstance(t, Tensor) and not t.array.flags.c_contiguous:
            t.array = t.array.copy(order="C")  # so the flat view below perturbs t itself
    out = fn(*inputs)
    r = np.random.default_rng(seed).standard_normal(out.shape)

    def scalar() -> float:
        return float(np.sum(fn(*inputs).array * r))

    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    (out * Tensor(r, dtype=np.float64)).sum().backward()
    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.array.astype(np.float64)
        numeric = np.zeros(t.shape)
        flat = t.array.reshape(-1)  # a view: perturb in place
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            plus = scalar()
            flat[j] = old - eps
            minus = scalar()
            flat[j] = old
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if (err > 0).any():
            worst = np.unravel_index(np.argmax(err), t.shape)
            raise GradcheckError(
                f"gradcheck: input {i} (shape {t.shape}) at index {worst}: analytic "
                f"{analytic[worst]:.10g} vs numerical {numeric[worst]:.10g}"
            )
    return True


# --- a stand-in array module: proves that every array call goes through the backend ----------


class BypassError(TypeError):
    """A NumPy function, or a raw NumPy array, met a stand-in array: some code path called the
    array library directly instead of through ``numformer.backend.xp``."""


def _unwrap(obj, allow_numpy: bool = False):
    if isinstance(obj, StandInArray):
        return obj._a
    if isinstance(obj, np.ndarray) and obj.ndim > 0 and not allow_numpy:
        raise BypassError(f"a NumPy array of shape {obj.shape} was mixed with stand-in arrays")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, allow_numpy) for o in obj)
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return StandInArray(obj)
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    if isinstance(obj, type):  # dtypes and scalar types as they are; constructors wrapped
        keep = issubclass(obj, (np.generic, np.dtype, BaseException)) or obj is np.errstate
        return obj if keep else _StandInProxy(obj)
    if isinstance(obj, (np.dtype, np.generic, int, float, complex, str, bool, type(None))):
        return obj
    if isinstance(obj, (types.ModuleType, np.random.Generator, np.random.BitGenerator)) or callable(obj):
        return _StandInProxy(obj)
    return obj


class _StandInProxy:
    """A NumPy function, ufunc, module or generator whose calls take and give stand-in arrays."""

    __slots__ = ("_target", "_allow_numpy")

    def __init__(self, target, allow_numpy: bool = False):
        self._target, self._allow_numpy = target, allow_numpy

    def __getattr__(self, name):
        return _wrap(getattr(self._target, name))

    def __call__(self, *args, **kwargs):
        allow = self._allow_numpy
        args = _unwrap(args, allow)
        kwargs = {k: _unwrap(v, allow) for k, v in kwargs.items()}
        return _wrap(self._target(*args, **kwargs))


def _operator(name, inplace=False):
    def method(self, *args):
        result = getattr(self._a, name)(*_unwrap(args))
        if inplace:
            return self
        return _wrap(result)

    method.__name__ = name
    return method


class StandInArray:
    """A NumPy array in a wrapper of another type, as a GPU array is: NumPy's functions refuse
    it (``__array_function__``, ``__array_ufunc__`` and ``__array__`` raise ``BypassError``), it
    refuses raw NumPy arrays as operands, and ``get()`` copies it to a NumPy array as CuPy's
    does. Attributes and methods are NumPy's, their array results wrapped again."""

    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, a: np.ndarray):
        self._a = a

    def __array_function__(self, func, types, args, kwargs):
        raise BypassError(f"numpy.{func.__name__} was called on a stand-in array: use numformer.backend.xp")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise BypassError(f"numpy.{ufunc.__name__} was called on a stand-in array: use numformer.backend.xp")

    def __array__(self, dtype=None, copy=None):
        raise BypassError("a stand-in array was converted to NumPy implicitly: use numformer.backend.to_numpy")

    def get(self) -> np.ndarray:
        return self._a.copy()

    def __getattr__(self, name):
        if name.startswith("__array") or name == "__dlpack__":  # NumPy's other ways in: closed
            raise AttributeError(name)
        return _wrap(getattr(self._a, name))

    def __setitem__(self, index, value):
        self._a[_unwrap(index)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(x) for x in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __repr__(self):
        return f"StandInArray({self._a!r})"


for _name in ("add sub mul truediv floordiv mod pow matmul and or xor lshift rshift").split():
    for _form in (f"__{_name}__", f"__r{_name}__"):
        setattr(StandInArray, _form, _operator(_form))
    setattr(StandInArray, f"__i{_name}__", _operator(f"__i{_name}__", inplace=True))
for _form in (
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__eq__",
    "__ne__",
    "__neg__",
    "__pos__",
    "__abs__",
    "__invert__",
    "__getitem__",
):
    setattr(StandInArray, _form, _operator(_form))


class _StandInModule(types.ModuleType):
    """NumPy's namespace with every array in and out wrapped as a ``StandInArray``."""

    def __init__(self):
        super().__init__("stand_in_arrays")
        for name in dir(np):
            if name.startswith("__"):
                continue
            value = getattr(np, name)
            if name in ("asarray", "array", "ascontiguousarray"):  # host -> "device" copies
                value = _StandInProxy(value, allow_numpy=True)
            else:
                value = _wrap(value)
            setattr(self, name, value)
        self.ndarray = StandInArray  # isinstance(x, xp.ndarray)


def stand_in_arrays() -> types.ModuleType:
    """A module with NumPy's API whose arrays are ``StandInArray``s, for
    ``numformer.backend.use_array_module``: a path that calls NumPy directly, or mixes a NumPy
    array into the computation, raises ``BypassError`` naming the function."""
    return _StandInModule()
