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
from numformer.ops import shape as S

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


# How tensors print (``numformer.set_printoptions``): PyTorch's defaults.
PRINT_OPTIONS = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80, "suppress": None}


class Tensor:
    """An n-dimensional array with optional gradient tracking.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is anything ``numpy.asarray``
    takes. Only floating tensors may require gradients. ``.grad`` is a Tensor (or None) filled
    by ``backward``; it accumulates across calls until zeroed. ``.data`` is the same values as a
    tensor outside the graph (sharing memory), as in PyTorch; ``.array`` is the backing array
    itself (NumPy's, or CuPy's on a GPU): the one accessor numformer's own code uses for it.

    Args:
        data: the values: a NumPy (or CuPy) array, a nested list, a number, or a Tensor.
        requires_grad: record operations on this tensor so ``backward`` computes its gradient
            (floating dtypes only).
        dtype: the dtype to store (default: ``data``'s; Python floats become the default dtype,
            float32).

    Raises:
        TypeError: ``requires_grad`` on a non-floating dtype, or data NumPy cannot hold.

    Examples:
        >>> import numformer as nf
        >>> t = nf.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        >>> (t * t).sum().backward()
        >>> t.grad
        tensor([[2., 4.],
                [6., 8.]])
    """

    __slots__ = (
        "array",
        "_grad",
        "_requires_grad",
        "_fn",
        "_out",
        "_vc",
        "_view_of",
        "_view_version",
        "_view_no_grad",
        "_hooks",
        "_post_hooks",
        "__weakref__",
    )
    __array_priority__ = 1000  # numpy_array * tensor -> Tensor.__rmul__, not an object array

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.array = _to_array(data, dtype)
        self._grad = self._fn = self._vc = self._view_of = None
        self._out = 0
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, requires_grad: bool) -> Tensor:
        """Make an op's output without copying or converting ``array``."""
        t = cls.__new__(cls)
        t.array = array if isinstance(array, xp.ndarray) else xp.asarray(array)
        t._grad = t._fn = t._vc = t._view_of = None
        t._out, t._requires_grad = 0, requires_grad
        return t

    @classmethod
    def _wrap_on(cls, array, requires_grad: bool) -> Tensor:
        """A tensor around ``array`` as it is, whatever its device."""
        t = cls.__new__(cls)
        t.array = array
        t._grad = t._fn = t._vc = t._view_of = None
        t._out, t._requires_grad = 0, requires_grad
        return t

    def _result(self, array, requires_grad: bool) -> Tensor:
        """An op's output tensor (``Function.apply`` calls this on its first input): always a
        plain ``Tensor``, also when ``self`` is a ``Parameter``."""
        t = Tensor.__new__(Tensor)
        t.array = array if isinstance(array, xp.ndarray) else xp.asarray(array)
        t._grad = t._fn = t._vc = t._view_of = None
        t._out, t._requires_grad = 0, requires_grad
        return t

    def _view(self, array, requires_grad: bool, how: tuple | None = None) -> Tensor:
        """An output that may share this tensor's memory (a view). When it does, it shares this
        tensor's version counter and remembers ``how`` it was made from it ((primitive,
        options)), so an in-place change of the view can rewrite this tensor too."""
        t = self._result(array, requires_grad)
        if xp.may_share_memory(array, self.array):
            t._vc = self._counter()
            t._view_of = None if how is None else (self, *how)
            t._view_version = t._vc[0]  # the version its history reads (``_refresh_view``)
            # made under no_grad (or a view of such a view): PyTorch forbids giving it a history later
            t._view_no_grad = not autograd.is_grad_enabled() or (self._view_of is not None and self._view_no_grad)
        return t

    def _refresh_view(self, strict: bool = True) -> None:
        """Give a view whose base was changed in place after the view's history was recorded
        the base's new history, as PyTorch regenerates such a view's ``grad_fn``: the view's
        primitive applied again to the base. (The view's values already are the new ones: it
        shares the base's memory.) Without it, ``b = h[1:]; h.mul_(3)`` then ``b.sum()`` would
        differentiate through the old ``h``: a silently wrong gradient. The stale views of a
        chain of views of views are refreshed from the outermost down, in a loop (a chain may be
        deeper than Python's recursion limit). A ``retain_grad`` moves to the new history.

        Args:
            strict: raise PyTorch's error for a view made under ``no_grad`` whose base requires
                grad; else leave such a view as it is (what ``requires_grad`` reads).

        Raises:
            RuntimeError: (``strict``) a view made under ``no_grad`` whose base, requiring grad,
            was changed in place: PyTorch forbids it (a constant, or a part of the base?)."""
        if self._vc[0] == self._view_version:
            return
        chain, base = [self], self._view_of[0]
        while base._view_of is not None and base._view_version != base._vc[0]:
            chain.append(base)
            base = base._view_of[0]
        for view in reversed(chain):
            base, op, options = view._view_of
            if base._requires_grad:
                if view._view_no_grad:
                    if not strict:
                        return
                    raise RuntimeError(
                        "A view was created in no_grad mode and its base or another view of its base has been "
                        "modified inplace with grad mode enabled. Given that this use case is ambiguous and "
                        "error-prone, it is forbidden. You can clarify your code by moving both the view and the "
                        "inplace either both inside the no_grad block (if you don't want the inplace to be tracked) "
                        "or both outside (if you want the inplace to be tracked)."
                    )
                old, out = view._fn, view._out
                with autograd.enable_grad():
                    result = op.apply(base, **options)
                view._fn, view._out, view._requires_grad = result._fn, result._out, True
                if old is not None and vars(old).get("retained", {}).pop(out, None) is not None:
                    view.retain_grad()
            view._view_version = view._vc[0]

    def _current(self, strict: bool = False) -> Tensor:
        """This tensor, its history refreshed first if it is a view whose base changed in place
        since (``_refresh_view``): what reading ``requires_grad`` sees (not ``strict``), and
        what ``grad_fn``, a backward from it or an in-place change of it use (``strict``)."""
        if self._view_of is not None:
            self._refresh_view(strict)
        return self

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
        return self._current()._requires_grad

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
        return self._current()._fn is None

    @property
    def grad_fn(self):
        return self._current(strict=True)._fn

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep theirs)."""
        if self._current()._fn is None:
            return
        import weakref

        if "retained" not in vars(self._fn):
            self._fn.retained = {}
        self._fn.retained[self._out] = weakref.ref(self)

    def register_hook(self, hook):
        """Call ``hook(grad)`` with this tensor's gradient during each backward; a tensor it
        returns replaces the gradient (PyTorch's ``Tensor.register_hook``). Returns a handle
        whose ``remove()`` unregisters it.

        Raises:
            RuntimeError: a tensor that does not require grad."""
        if not self._current()._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._fn is None:
            hooks = getattr(self, "_hooks", None)
            if hooks is None:
                hooks = self._hooks = []
        else:
            if "hooks" not in vars(self._fn):
                self._fn.hooks = {}
            hooks = self._fn.hooks.setdefault(self._out, [])
        hooks.append(hook)
        return autograd.HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` after each backward has accumulated this leaf's gradient into
        ``.grad`` (PyTorch's ``Tensor.register_post_accumulate_grad_hook``): it runs as soon as
        the gradient is complete, while the rest of the backward goes on. Returns a handle whose
        ``remove()`` unregisters it.

        Args:
            hook: a callable taking the tensor and returning None (the backward raises
                ``RuntimeError`` otherwise, as PyTorch's).

        Raises:
            RuntimeError: a tensor that does not require grad, or one that is not a leaf."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        hooks = getattr(self, "_post_hooks", None)
        if hooks is None:
            hooks = self._post_hooks = []
        hooks.append(hook)
        return autograd.HookHandle(hooks, hook)

    @property
    def retains_grad(self) -> bool:
        fn = self._current()._fn
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
        self._current(strict=True)
        autograd.backward(self, gradient, retain_graph=bool(retain_graph))

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory and the version counter, as in PyTorch)."""
        t = Tensor._wrap_on(self.array, False)
        t._vc = self._counter()
        return t

    def detach_(self) -> Tensor:
        """Cut this tensor from the graph, in place: it becomes a leaf that does not require grad."""
        self._fn, self._requires_grad, self._view_of = None, False, None
        return self

    def zero_grad(self) -> None:
        self._grad = None

    # --- writing in place: PyTorch's in-place ops and index assignment ------------------------
    def _records_write(self, *others) -> bool:
        """Whether an in-place change must be recorded in the graph: gradients are on, and this
        tensor, or a tensor written into it, requires grad (a view whose base changed in place
        first taking the base's new history).

        Raises:
            RuntimeError: a view made under ``no_grad`` written with gradients on where the
            write would be recorded (it, a tensor written into it, or its base requires grad):
            PyTorch forbids it."""
        if not autograd.is_grad_enabled():
            return False
        for t in (self, *others):
            if isinstance(t, Tensor):
                t._current(strict=True)
        records = self._requires_grad or any(isinstance(o, Tensor) and o._requires_grad for o in others)
        if self._view_of is not None and self._view_no_grad:
            base = self
            while not records and base._view_of is not None:
                base = base._view_of[0]
                records = base._requires_grad
            if records:
                raise RuntimeError(
                    "A view was created in no_grad mode and is being modified inplace with grad mode enabled. "
                    "Given that this use case is ambiguous and error-prone, it is forbidden. You can clarify your "
                    "code by moving both the view and the inplace either both inside the no_grad block (if you "
                    "don't want the inplace to be tracked) or both outside (if you want the inplace to be tracked)."
                )
        return records

    def _snapshot(self) -> Tensor:
        """This tensor's present values (in memory of their own) and history: what a recorded
        in-place op is computed from, as the old value its backward may read."""
        self._current(strict=True)
        t = Tensor._wrap_on(self.array.copy(), self._requires_grad)
        t._fn, t._out = self._fn, self._out
        return t

    def _assign(self, result: Tensor) -> Tensor:
        """Make this tensor hold ``result``'s values in its own memory (so its views see them)
        and, when ``result`` has a history, take that history as its own. A view's base is
        rewritten too: ``result`` put back where the view reads (PyTorch's CopySlices).

        Raises:
            RuntimeError: a leaf that requires grad written while gradients are recorded, a
            result of another shape, or one whose dtype this tensor's cannot hold."""
        if result.shape != self.shape:
            raise RuntimeError(
                f"output with shape {list(self.shape)} doesn't match the broadcast shape {list(result.shape)}"
            )
        if not np.can_cast(result.dtype, self.dtype, casting="same_kind"):
            raise RuntimeError(f"result type {result.dtype} can't be cast to the desired output type {self.dtype}")
        if not self.array.flags.writeable:
            raise RuntimeError(
                "unsupported operation: more than one element of the written-to tensor refers to a single memory "
                "location (an expanded tensor); clone() it before writing into it"
            )
        if result._fn is not None:  # recorded: this tensor takes the result's history
            if self._fn is None and self._requires_grad:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
            if result.dtype != self.dtype:
                result = E.Cast.apply(result, dtype=self.dtype)
            if self._view_of is not None:
                base, op, options = self._view_of
                base._assign(_unview(base, op, options, result))
                result = op.apply(base, **options)  # this view read again from the rewritten base
            self._fn, self._out, self._requires_grad = result._fn, result._out, True
        xp.copyto(self.array, result.array, casting="unsafe")
        self._bump()
        if self._view_of is not None:  # its history (if any) is the one just taken
            self._view_version = self._vc[0]
        return self

    def _inplace(self, compute, *others) -> Tensor:
        """``self = compute(self, *others)`` in place: recorded from a snapshot of the old value
        when the graph needs it, else computed without a graph and copied in."""
        if self._records_write(*others):
            old = self._snapshot()
            result = compute(old, *others)
            if result._fn is None:  # a value that depends on nothing recorded: the old one's gradient is 0
                result = S.SetItem.apply(old, result, index=Ellipsis)
            return self._assign(result)
        with autograd.no_grad():
            return self._assign(compute(self, *others))

    def __setitem__(self, index, value) -> None:
        """``t[index] = value``: ints, slices, integer arrays and boolean masks; ``value`` a
        number or a tensor that broadcasts to the indexed part. Recorded in the graph as
        PyTorch records it: gradients reach ``value``, and ``t``'s other elements keep theirs."""
        index = _index_arg(index)
        if self._records_write(value):
            value = self._operand(value)
            if value.dtype != self.dtype:
                value = value.to(self.dtype)
            try:
                result = S.SetItem.apply(self._snapshot(), value, index=index)
            except (ValueError, IndexError) as err:
                raise _index_error(self.shape, index, err, value.shape) from None
            self._assign(result)
            return
        array = value.array if isinstance(value, Tensor) else value
        if not self.array.flags.writeable:
            self._assign(self)  # the error for an expanded tensor
        try:
            self.array[index] = array
        except (ValueError, IndexError) as err:
            raise _index_error(self.shape, index, err, getattr(array, "shape", ())) from None
        self._bump()

    def _fast(self, ufunc, other, alpha=None) -> Tensor | None:
        """``self = ufunc(self, other)`` straight into memory when nothing is recorded and the
        result keeps this tensor's shape and dtype (an optimiser's updates); else None."""
        if self._records_write(other) or not self.array.flags.writeable:
            return None
        b = other.array if isinstance(other, Tensor) else other
        if alpha is not None and alpha != 1:
            b = b * alpha
        if isinstance(b, xp.ndarray) and (
            np.broadcast_shapes(self.shape, b.shape) != self.shape or not np.can_cast(b.dtype, self.dtype, "same_kind")
        ):
            return None
        ufunc(self.array, b, out=self.array, casting="unsafe")
        self._bump()
        return self

    def add_(self, other, *, alpha=1) -> Tensor:
        done = self._fast(xp.add, other, alpha)
        return done if done is not None else self._inplace(lambda a, b: a.add(b, alpha=alpha), other)

    def sub_(self, other, *, alpha=1) -> Tensor:
        done = self._fast(xp.subtract, other, alpha)
        return done if done is not None else self._inplace(lambda a, b: a.sub(b, alpha=alpha), other)

    def mul_(self, other) -> Tensor:
        done = self._fast(xp.multiply, other)
        return done if done is not None else self._inplace(lambda a, b: a * b, other)

    def div_(self, other, *, rounding_mode=None) -> Tensor:
        if rounding_mode is None and is_floating(self.dtype):
            done = self._fast(xp.true_divide, other)
            if done is not None:
                return done
        return self._inplace(lambda a, b: a.div(b, rounding_mode=rounding_mode), other)

    def pow_(self, exponent) -> Tensor:
        return self._inplace(lambda a, e: a**e, exponent)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def fill_(self, value) -> Tensor:
        if isinstance(value, Tensor) and value.numel() != 1:
            raise RuntimeError(
                f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} dimensions."
            )
        if not self._records_write(value):
            xp.copyto(self.array, value.array if isinstance(value, Tensor) else value, casting="unsafe")
            self._bump()
            return self
        return self._inplace(lambda a, v: _full_like(a, v), value)

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def copy_(self, src, non_blocking: bool = False) -> Tensor:
        """This tensor's values from ``src`` (broadcast to this shape, cast to this dtype and
        device), in place; gradients flow to ``src``."""
        src = src if isinstance(src, Tensor) else Tensor(src)
        if not self._records_write(src):
            array = src.array if device_of(src.array) == self.device else to_device(src.array, self.device)
            xp.copyto(self.array, xp.broadcast_to(array, self.shape), casting="unsafe")
            self._bump()
            return self
        return self._inplace(lambda a, s: _set(a, Ellipsis, s.to(a.dtype).expand(a.shape)), src)

    def clamp_(self, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's argument names
        return self._inplace(lambda a: a.clamp(min, max))

    clip_ = clamp_

    def masked_fill_(self, mask, value) -> Tensor:
        return self._inplace(lambda a, v: masked_fill(a, mask, v), value)

    def index_fill_(self, dim: int, index, value) -> Tensor:
        where = (slice(None),) * (dim % self.ndim) + (array_of(index),)
        return self._inplace(lambda a, v: _set(a, where, v), value)

    def scatter_(self, dim: int, index, src=None, *, value=None, reduce=None) -> Tensor:
        """``src``'s values (or one ``value``) written at ``index`` along ``dim``, in place."""
        if reduce is not None:
            raise NotImplementedError("scatter_: reduce= is not supported by numformer; use scatter_add_")
        source = src if src is not None else value
        if source is None:
            raise TypeError("scatter_() missing 1 required argument: 'src' or 'value'")
        source = source if isinstance(source, Tensor) else self._operand(source)
        return self._inplace(lambda a, s: a.scatter(dim, index, s), source)

    def scatter_add_(self, dim: int, index, src) -> Tensor:
        return self._inplace(lambda a, s: a.scatter_add(dim, index, s), src)

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None) -> Tensor:
        """Fill with draws from U(a, b) (numformer's generator, or ``generator``'s)."""
        rng = backend.rng_of(generator)
        return self._fill_random(rng.uniform(a, b, self.shape))

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
        """Fill with draws from N(mean, std^2) (numformer's generator, or ``generator``'s)."""
        rng = backend.rng_of(generator)
        return self._fill_random(rng.normal(mean, std, self.shape))

    def bernoulli_(self, p: float = 0.5, *, generator=None) -> Tensor:
        rng = backend.rng_of(generator)
        return self._fill_random(rng.random(self.shape) < p)

    def exponential_(self, lambd: float = 1.0, *, generator=None) -> Tensor:
        rng = backend.rng_of(generator)
        return self._fill_random(rng.exponential(1.0 / lambd, self.shape))

    def _fill_random(self, values) -> Tensor:
        if self._records_write():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        xp.copyto(self.array, xp.asarray(np.asarray(values), dtype=self.dtype))
        self._bump()
        return self

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

    def cuda(self, device=None, non_blocking: bool = False) -> Tensor:
        return self.to("cuda" if device is None else device)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def pin_memory(self) -> Tensor:
        """``self``: numformer copies to the GPU from any host memory (PyTorch pins pages for
        asynchronous copies)."""
        return self

    def is_pinned(self) -> bool:
        return False

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
            return getattr(inputs[0], _UNARY_UFUNCS[name])()
        if name == "positive" and len(inputs) == 1:
            return inputs[0]
        if name in _BINARY_UFUNCS and len(inputs) == 2:
            a, b = inputs
            forward, reflected = _BINARY_UFUNCS[name]
            if isinstance(a, Tensor):
                return getattr(a, forward)(b)
            return getattr(b, reflected)(a) if reflected else getattr(b._operand(a), forward)(b)
        raise TypeError(f"numpy.{name} has no numformer op: use numformer's ops, or .numpy() to leave the graph")

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        values = to_numpy(self.array)
        # PyTorch's style: a fixed number of decimals unless every value is a whole number
        whole = not is_floating(self.dtype) or not values.size or not np.isfinite(values).all()
        whole = whole or bool((values == np.round(values)).all())
        body = np.array2string(
            values,
            separator=", ",
            prefix="tensor(",
            floatmode="maxprec" if whole else "fixed",
            precision=PRINT_OPTIONS["precision"],
            threshold=PRINT_OPTIONS["threshold"],
            edgeitems=PRINT_OPTIONS["edgeitems"],
            max_line_width=PRINT_OPTIONS["linewidth"],
            suppress_small=PRINT_OPTIONS["suppress"],
        )
        extra = ""
        if self.dtype != get_default_dtype() and is_floating(self.dtype):
            extra += f", dtype={self.dtype}"
        if self._current()._fn is not None:
            extra += f", grad_fn=<{self._fn.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    # --- dtype ------------------------------------------------------------------------------
    def to(self, *args, device=None, dtype=None, non_blocking: bool = False, copy: bool = False) -> Tensor:
        """A tensor on ``device`` and/or of ``dtype`` (``t.to("cuda")``, ``t.to(np.float64)``,
        ``t.to("cuda", np.float32)``, ``t.to(other)`` for ``other``'s device and dtype,
        ``t.to(device=..., dtype=...)``); ``self`` when nothing changes unless ``copy``. A cast is
        differentiable; a move copies a leaf (keeping ``requires_grad``). ``non_blocking`` is
        accepted: numformer's copies complete before ``to`` returns.

        Raises:
            RuntimeError: moving a tensor computed in a graph (move its leaves instead), or a
            device that is not available."""
        for arg in args:
            if isinstance(arg, Tensor):
                device, dtype = arg.device, arg.dtype
            elif isinstance(arg, Device) or (isinstance(arg, str) and arg.partition(":")[0] in ("cpu", "cuda")):
                device = arg
            else:
                dtype = arg
        t = self.clone() if copy else self
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

    def half(self) -> Tensor:
        return self.to(np.float16)

    def bfloat16(self) -> Tensor:
        return self.to("bfloat16")

    def long(self) -> Tensor:
        return self.to(np.int64)

    def int(self) -> Tensor:
        return self.to(np.int32)

    def short(self) -> Tensor:
        return self.to(np.int16)

    def char(self) -> Tensor:
        return self.to(np.int8)

    def byte(self) -> Tensor:
        return self.to(np.uint8)

    def bool(self) -> Tensor:
        return self.to(np.bool_)

    def type(self, dtype=None, non_blocking: bool = False):
        """This tensor cast to ``dtype`` (a dtype or a name such as "torch.LongTensor"), or,
        without one, the type's name ("numformer.FloatTensor")."""
        if dtype is None:
            return f"numformer.{_TENSOR_TYPE_NAMES.get(np.dtype(self.dtype), 'Tensor')}"
        name = dtype.rsplit(".", 1)[-1] if isinstance(dtype, str) else getattr(dtype, "__name__", None)
        return self.to(_TENSOR_TYPES.get(name, dtype))  # "torch.LongTensor", numformer.LongTensor

    def type_as(self, tensor) -> Tensor:
        return self.to(tensor.dtype)

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
        if self.dtype.kind not in "biu":
            raise TypeError(f"~ (bitwise_not) is only for integer and bool tensors, got {self.dtype}")
        return Tensor._wrap(~self.array, False)

    def _bitwise(self, fn, other, reverse: bool = False):
        other = other.array if isinstance(other, Tensor) else other
        if self.dtype.kind not in "biu" or getattr(xp.asarray(other), "dtype", np.dtype(bool)).kind not in "biu":
            raise TypeError(f"bitwise and logical operators (&, |, ^) need integer or bool tensors, got {self.dtype}")
        a, b = (other, self.array) if reverse else (self.array, other)
        return Tensor._wrap(xp.asarray(fn(a, b)), False)

    def __and__(self, other):
        return self._bitwise(xp.bitwise_and, other)

    def __rand__(self, other):
        return self._bitwise(xp.bitwise_and, other, True)

    def __or__(self, other):
        return self._bitwise(xp.bitwise_or, other)

    def __ror__(self, other):
        return self._bitwise(xp.bitwise_or, other, True)

    def __xor__(self, other):
        return self._bitwise(xp.bitwise_xor, other)

    def __rxor__(self, other):
        return self._bitwise(xp.bitwise_xor, other, True)

    def __floordiv__(self, other):
        return self.floor_divide(other)

    def __rfloordiv__(self, other):
        return self._operand(other).floor_divide(self)

    def __mod__(self, other):
        return self.remainder(other)

    def __rmod__(self, other):
        return self._operand(other).remainder(self)

    def masked_fill(self, mask, value):
        return masked_fill(self, mask, value)

    def where(self, condition, other):
        """``self`` where ``condition`` is True, else ``other`` (``torch.where(condition, self, other)``)."""
        return where(condition, self, other)

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

    def view(self, *shape):
        """``reshape`` that shares this tensor's memory (PyTorch's ``view``): writes through the
        result reach this tensor, and writes into this tensor show in it.

        Args:
            shape: the new shape (ints, or one tuple), one of them may be -1.

        Raises:
            RuntimeError: a shape this tensor's strides cannot give without a copy (a transposed
            tensor flattened): PyTorch's error, which points to ``reshape`` (that copies)."""
        out = self.reshape(*shape)
        if out is not self and out.array.size and not xp.may_share_memory(out.array, self.array):
            raise RuntimeError(
                "view size is not compatible with input tensor's size and stride (at least one dimension spans "
                "across two contiguous subspaces). Use .reshape(...) instead."
            )
        return out

    def permute(self, *dims):
        ndim = self.array.ndim
        dims = tuple([d % ndim for d in shape_arg(dims)])
        if sorted(dims) != list(range(ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {self.ndim} dims")
        if dims == tuple(range(ndim)):
            return self
        return S.Permute.apply(self, axes=dims)

    @property
    def T(self):  # noqa: N802 - PyTorch's name
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self):  # noqa: N802 - PyTorch's name
        return self.transpose(-2, -1)

    def expand(self, *shape):
        """A broadcast view of size ``shape`` (sizes or one sequence); -1 keeps a dim's size, new
        dims lead, as PyTorch's.

        Raises:
            RuntimeError: fewer sizes than dims, -1 in a new leading dim, or a size that does not
                broadcast (PyTorch's error kind)."""
        sizes = shape_arg(shape)
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise RuntimeError(
                f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to the number "
                f"of dimensions in the tensor ({self.ndim})"
            )
        if -1 in sizes[:lead]:
            raise RuntimeError(f"expand: -1 is not allowed in a leading, non-existing dimension (sizes {sizes})")
        target = tuple(self.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
        try:
            fits = np.broadcast_shapes(self.shape, target) == target
        except ValueError:
            fits = False
        if not fits:
            raise RuntimeError(f"expand: shape {self.shape} cannot expand to {target}")
        return S.BroadcastTo.apply(self, shape=target)

    def expand_as(self, other):
        return self.expand(other.shape)

    def view_as(self, other):
        return self.reshape(other.shape)

    def repeat(self, *sizes):
        """The tensor tiled ``sizes`` times along each dim (leading new dims allowed), in the graph."""
        sizes = shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError(
                "Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor"
            )
        x = self.reshape((1,) * (len(sizes) - self.ndim) + self.shape)
        # each dim d of size n: broadcast to (r, n) then merged, so the copies run one after another
        wide = x.reshape(tuple(v for n in x.shape for v in (1, n)))
        wide = wide.expand(tuple(v for r, n in zip(sizes, x.shape) for v in (r, n)))
        return wide.reshape(tuple(r * n for r, n in zip(sizes, x.shape)))

    def flip(self, *dims):
        """The tensor with the order of its elements along ``dims`` reversed."""
        return flip(self, shape_arg(dims))

    def contiguous(self, memory_format=None):
        """This tensor if its memory is in row-major order, else a row-major copy in the graph
        (PyTorch's ``contiguous``): what ``view`` needs after a transpose."""
        return self if self.array.flags.c_contiguous else E.Copy.apply(self)

    def is_contiguous(self, memory_format=None) -> bool:
        return bool(self.array.flags.c_contiguous)

    def nelement(self) -> int:
        return int(self.array.size)

    def element_size(self) -> int:
        return self.array.dtype.itemsize

    @property
    def itemsize(self) -> int:
        return self.array.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def ndimension(self) -> int:
        return self.ndim

    def stride(self, dim=None):
        """Steps in elements between neighbours along each dim (PyTorch's strides)."""
        steps = tuple(s // self.array.dtype.itemsize for s in self.array.strides)
        return steps if dim is None else steps[dim]

    def storage_offset(self) -> int:
        base = self.array.base if self.array.base is not None else self.array
        if not isinstance(base, np.ndarray) or not isinstance(self.array, np.ndarray):
            return 0
        return (self.array.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // self.itemsize

    def data_ptr(self) -> int:
        """The address of the first element (NumPy's; CuPy's device pointer on a GPU)."""
        if isinstance(self.array, np.ndarray):
            return self.array.__array_interface__["data"][0]
        return int(self.array.data.ptr)

    def share_memory_(self) -> Tensor:
        """``self``: numformer's worker processes receive batches, not shared tensors."""
        return self

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __contains__(self, element) -> bool:
        """Whether ``element`` (a number or a tensor) equals some element of this tensor."""
        value = element.array if isinstance(element, Tensor) else element
        return bool((self.array == value).any())

    def unflatten(self, dim: int, sizes) -> Tensor:
        """Dim ``dim`` split into ``sizes`` (one may be -1)."""
        d = dim % self.ndim
        return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d + 1 :])

    def split_with_sizes(self, split_sizes, dim: int = 0):
        return split(self, list(split_sizes), dim)

    def unfold(self, dimension: int, size: int, step: int) -> Tensor:
        """Every window of ``size`` elements ``step`` apart along ``dimension``, as a new last dim:
        ``(..., n, ...) -> (..., (n - size) // step + 1, ..., size)``."""
        d = dimension % self.ndim
        n = self.shape[d]
        if size > n or size < 1 or step < 1:
            raise RuntimeError(f"unfold: size {size} and step {step} do not fit dimension {d} of size {n}")
        starts = np.arange(0, n - size + 1, step)
        windows = self[(slice(None),) * d + ((starts[:, None] + np.arange(size)).reshape(-1),)]
        windows = windows.reshape(self.shape[:d] + (len(starts), size) + self.shape[d + 1 :])
        return windows.movedim(d + 1, -1)

    def fill_diagonal_(self, fill_value, wrap: bool = False) -> Tensor:
        """``fill_value`` written on the main diagonal (of a matrix, or of an n-d tensor whose dims are equal)."""
        n = min(self.shape)
        rows = np.arange(n)
        if wrap and self.ndim == 2 and self.shape[0] > self.shape[1] + 1:
            rows = np.arange(0, self.shape[0] // (self.shape[1] + 1) * (self.shape[1] + 1) + n)
            rows = rows[rows % (self.shape[1] + 1) < self.shape[1]]
            self[rows, rows % (self.shape[1] + 1)] = fill_value
            return self
        self[(rows,) * self.ndim] = fill_value
        return self

    def moveaxis(self, source, destination) -> Tensor:
        return self.movedim(source, destination)

    def sgn(self) -> Tensor:
        return self.sign()

    # --- new tensors like this one (dtype and device) ----------------------------------------
    def new_tensor(self, data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        array = data.array.copy() if isinstance(data, Tensor) else xp.asarray(data, dtype=as_dtype(dtype or self.dtype))
        return self._new(array.astype(as_dtype(dtype or self.dtype), copy=False), device, requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return self._new(xp.zeros(shape_arg(size), dtype=as_dtype(dtype or self.dtype)), device, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return self._new(xp.ones(shape_arg(size), dtype=as_dtype(dtype or self.dtype)), device, requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return self._new(xp.empty(shape_arg(size), dtype=as_dtype(dtype or self.dtype)), device, requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        array = xp.full(shape_arg((size,)), fill_value, dtype=as_dtype(dtype or self.dtype))
        return self._new(array, device, requires_grad)

    def _new(self, array, device, requires_grad: bool) -> Tensor:
        t = Tensor._wrap_on(to_device(array, device or self.device), False)
        t.requires_grad = requires_grad
        return t

    def __getitem__(self, index):
        index = _index_arg(index)
        op = S.GetItem if S.is_basic_index(index) else S.Index  # a view, or a copy
        try:
            return op.apply(self, index=index)
        except IndexError as err:
            raise _index_error(self.shape, index, err) from None


_TENSOR_TYPES = {
    "FloatTensor": np.float32,
    "DoubleTensor": np.float64,
    "HalfTensor": np.float16,
    "LongTensor": np.int64,
    "IntTensor": np.int32,
    "ShortTensor": np.int16,
    "CharTensor": np.int8,
    "ByteTensor": np.uint8,
    "BoolTensor": np.bool_,
}
_TENSOR_TYPE_NAMES = {np.dtype(v): k for k, v in _TENSOR_TYPES.items()}


def flip(input, dims):  # noqa: A002 - PyTorch's argument name
    """``input`` with the order of its elements along ``dims`` reversed (a view).

    Args:
        input: the tensor.
        dims: a dimension or a sequence of dimensions (negative counts from the end).

    Returns:
        A view of ``input``; gradients flow back reversed.

    Shape:
        ``(*)`` -> ``(*)``."""
    dims = {_axes(d, input.ndim, "flip")[0] for d in ((dims,) if isinstance(dims, int) else dims)}
    return input[tuple(slice(None, None, -1) if i in dims else slice(None) for i in range(input.ndim))]


def _unview(base: Tensor, op, options: dict, value: Tensor) -> Tensor:
    """``base`` with the part the view ``op(base, **options)`` reads replaced by ``value``:
    what an in-place change of the view does to its base."""
    if op is S.GetItem:
        return S.SetItem.apply(base._snapshot(), value, index=options["index"])
    if op is S.Reshape:
        return value.reshape(base.shape)
    if op is S.Permute:
        inverse = [0] * len(options["axes"])
        for i, axis in enumerate(options["axes"]):
            inverse[axis] = i
        return value.permute(*inverse)
    raise RuntimeError(
        f"unsupported operation: an in-place change of a view made by {op.__name__} (an expanded tensor) "
        "cannot be written back; clone() it first"
    )


def _set(t: Tensor, index, value) -> Tensor:
    """``t`` with ``t[index] = value``, out of place (``SetItem``)."""
    value = t._operand(value)
    return S.SetItem.apply(t, value.to(t.dtype) if value.dtype != t.dtype else value, index=index)


def _full_like(t: Tensor, value) -> Tensor:
    """``t``'s shape filled with ``value`` (a number, or a one-element tensor, whose gradient
    is then the sum of the result's), in ``t``'s dtype, with ``t`` as its input in the graph."""
    if isinstance(value, Tensor):
        return E.Copy.apply(value.reshape(()).to(t.dtype).expand(t.shape))
    return E.Fill.apply(t, value=value)


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


def _index_error(shape: tuple, index, err: Exception, value_shape=None) -> Exception:
    """PyTorch's error for ``t[index]`` (or ``t[index] = value`` with a value of ``value_shape``)
    where NumPy raised ``err``: in PyTorch's words and with shapes, never NumPy's message or the
    whole index printed. A mask of the wrong shape and an index out of range are IndexErrors, a
    value that does not broadcast to the indexed part a RuntimeError, as in PyTorch."""
    dim = 0
    for part in index if isinstance(index, tuple) else (index,):
        if part is Ellipsis:
            break  # dimensions after it are counted from the end: NumPy's message is kept
        if part is None:
            continue
        if getattr(part, "dtype", None) == np.bool_:
            expected = tuple(shape[dim : dim + part.ndim])
            for k, (got, size) in enumerate(zip(part.shape, expected)):
                if got != size:
                    return IndexError(
                        f"The shape of the mask {list(part.shape)} at index {k} does not match the shape of the "
                        f"indexed tensor {list(shape)} at index {dim + k}"
                    )
            dim += part.ndim
        else:
            dim += 1
    if isinstance(err, IndexError):
        return IndexError(str(err).replace(" axis ", " dimension "))
    if value_shape is not None:
        try:
            result = np.broadcast_to(np.empty((), dtype=bool), shape)[index].shape  # no copy of the data
        except (IndexError, ValueError, TypeError):
            return err
        return RuntimeError(
            f"shape mismatch: value tensor of shape {list(value_shape)} cannot be broadcast to indexing result "
            f"of shape {list(result)}"
        )
    return err


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


# NumPy's ufuncs that run as numformer's functions on tensors (``np.sin(t)`` is ``t.sin()``)
_UNARY_UFUNCS = {
    **{
        n: n
        for n in "exp log log1p expm1 log2 log10 sqrt square reciprocal sin cos tan tanh floor ceil trunc sign".split()
    },
    **{n: n for n in "isfinite isnan isinf logical_not".split()},
    "absolute": "abs",
    "negative": "neg",
    "rint": "round",
    "invert": "bitwise_not",
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
    "floor_divide": ("__floordiv__", "__rfloordiv__"),
    "remainder": ("__mod__", "__rmod__"),
    "maximum": ("maximum", None),
    "minimum": ("minimum", None),
    "logical_and": ("logical_and", None),
    "logical_or": ("logical_or", None),
    "logical_xor": ("logical_xor", None),
    "bitwise_and": ("__and__", "__rand__"),
    "bitwise_or": ("__or__", "__ror__"),
    "bitwise_xor": ("__xor__", "__rxor__"),
}


def array_of(value):
    """The array behind a Tensor (``value.array``), or ``value`` as an array of xp's module (a
    list, a NumPy array, a number): for arguments that may be either, such as masks and ids.

    Args:
        value: a Tensor, an array, a list or a number.

    Returns:
        An array of the active array module (no copy for a Tensor).

    Shape:
        that of ``value``."""
    return value.array if isinstance(value, Tensor) else xp.asarray(value)


def as_tensor(x) -> Tensor:
    """``x`` itself if it is a Tensor, else a new Tensor of its values.

    Args:
        x: a Tensor, an array, a list or a number.

    Returns:
        A Tensor (``x`` unchanged when it is one).

    Shape:
        that of ``x``."""
    return x if isinstance(x, Tensor) else Tensor(x)


def matmul(a, b) -> Tensor:
    """``a @ b`` with NumPy's batching and broadcasting; checks the inner dimensions.

    Args:
        a: the left operand (a Tensor or array), at least 1-D.
        b: the right operand, at least 1-D, of ``a``'s dtype.

    Returns:
        The product, in the operands' dtype.

    Shape:
        ``(*, n, k) @ (*, k, m)`` -> ``(*, n, m)`` with the batch dimensions broadcast; a 1-D
        operand is a vector (its dimension is dropped from the result), as ``numpy.matmul``.

    Raises:
        ValueError: a 0-d operand, or inner dimensions that differ.
        TypeError: operands of different dtypes (PyTorch raises RuntimeError)."""
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
    """Fill ``input`` with ``value`` where ``mask`` is True; ``mask`` must broadcast to it.

    Args:
        input: the tensor.
        mask: a boolean tensor or array broadcastable to ``input``.
        value: the number written where ``mask`` is True.

    Returns:
        A new tensor; the gradient is zero where filled.

    Shape:
        ``input`` ``(*)``, ``mask`` broadcastable to ``(*)`` -> ``(*)``.

    Raises:
        TypeError: a mask that is not boolean.
        ValueError: a mask that does not broadcast to ``input``."""
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
    """Join tensors along an existing dimension (``torch.cat``).

    Args:
        tensors: a non-empty sequence of tensors of one rank, equal in every other dimension.
        dim: the dimension to join along.

    Returns:
        The concatenation; each input's gradient is its slice of the output's.

    Shape:
        ``(*, n_i, *)`` each -> ``(*, sum n_i, *)``.

    Raises:
        ValueError: an empty sequence, or shapes that differ outside ``dim``."""
    tensors = [as_tensor(t) for t in tensors]
    _check_same_rank("cat", tensors, dim, skip_dim=True)
    return S.Cat.apply(*tensors, axis=dim % tensors[0].ndim)


concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dimension (``torch.stack``).

    Args:
        tensors: a non-empty sequence of tensors of the same shape.
        dim: where the new dimension goes (0 to the inputs' rank).

    Returns:
        The stacked tensor.

    Shape:
        ``k`` tensors ``(*)`` -> ``(k, *)`` (at ``dim``).

    Raises:
        ValueError: an empty sequence, or shapes that differ."""
    tensors = [as_tensor(t) for t in tensors]
    _check_same_rank("stack", tensors, dim, skip_dim=False)
    return S.Stack.apply(*tensors, axis=dim % (tensors[0].ndim + 1))


def _check_same_rank(op, tensors, dim, skip_dim):
    """PyTorch's checks and error kinds: an empty list (``cat``: ValueError, ``stack``:
    RuntimeError) and shapes that disagree (RuntimeError), each naming the shapes."""
    if not tensors:
        if op == "cat":
            raise ValueError("cat: expected a non-empty list of Tensors")
        raise RuntimeError(f"{op}: expected a non-empty list of Tensors")
    first = tensors[0].shape
    for i, t in enumerate(tensors[1:], 1):
        a, b = list(first), list(t.shape)
        if skip_dim and len(a) == len(b) and a:
            a.pop(dim % len(a))
            b.pop(dim % len(b))
        if a != b:
            raise RuntimeError(f"{op}: tensor 0 has shape {first} but tensor {i} has shape {t.shape} (dim={dim})")


def split(tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Split along ``dim`` into chunks of one size (last may be smaller) or of listed sizes.

    Args:
        tensor: the tensor to split.
        split_size_or_sections: the size of each chunk (an int), or the list of sizes.
        dim: the dimension to split.

    Returns:
        A tuple of views of ``tensor``.

    Shape:
        ``(*, n, *)`` -> chunks ``(*, n_i, *)`` with ``sum n_i = n``.

    Raises:
        ValueError: a non-positive size, or sections that do not sum to the dimension's size."""
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


# numformer.save/load (serialization.pickled: PyTorch's checkpoint format, a lower layer that cannot
# import this one) save Tensors as torch tensors and rebuild loaded ones here; bfloat16 is the backend's.
from numformer.serialization import pickled as _pickled  # noqa: E402

_pickled.register_tensor_type(
    Tensor, lambda a, grad, dev: Tensor._wrap_on(to_device(a, dev), False).requires_grad_(grad)
)
_pickled.register_dtype("bfloat16", backend.bfloat16)
