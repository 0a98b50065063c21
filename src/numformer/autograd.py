"""Reverse-mode automatic differentiation: the graph, the primitive base class, and backward.

A primitive is a subclass of ``Function`` with a ``forward`` on arrays and a ``backward`` that
returns one gradient per tensor input (a vector-Jacobian product). ``Function.apply`` runs the
forward and, when gradients are wanted, records the call on the output tensor; when none is
wanted (``no_grad``, or no input requires grad) it runs the primitive's ``infer`` instead and
records nothing, so every module and model has one ``forward`` that is fast in inference.
``backward`` sorts the recorded graph topologically and runs each ``Function.backward`` in
reverse order, summing the gradients of tensors used more than once. Adding a primitive never
touches this file, and this file imports nothing of numformer but the backend.
"""

from __future__ import annotations

import contextlib
import functools

from numformer import backend
from numformer.backend import _active_type, xp

_grad_enabled = True
_NO_GRAD = tuple((False,) * n for n in range(8))  # needs_grad of an op recording nothing
_tracer = None  # on_apply of the ``tracing`` block in force (numformer.onnx's exporter), or None


def is_grad_enabled() -> bool:
    return _grad_enabled


def is_tracing() -> bool:
    """Whether a ``tracing`` block is recording primitives (PyTorch's ``torch.jit.is_tracing``):
    a model checks it before a shortcut that depends on its inputs' values, which a traced graph
    would otherwise bake in."""
    return _tracer is not None


@contextlib.contextmanager
def tracing(on_apply):
    """Inside the block, ``on_apply(cls, inputs, options, output)`` is told of every primitive
    ``Function.apply`` runs, after it ran (with or without a graph); nothing else changes."""
    global _tracer
    previous, _tracer = _tracer, on_apply
    try:
        yield
    finally:
        _tracer = previous


class _GradMode:
    """Context manager and decorator that sets whether operations record a graph."""

    enabled: bool

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return func(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801 - PyTorch's name
    """Disable graph recording inside a ``with`` block or a decorated function."""

    enabled = False


class enable_grad(_GradMode):  # noqa: N801 - PyTorch's name
    """Re-enable graph recording (inside ``no_grad``)."""

    enabled = True


class Function:
    """One differentiable primitive: ``forward`` on arrays, ``backward`` per tensor input.

    Subclasses implement ``forward(self, *arrays, **options) -> array`` and
    ``backward(self, grad) -> tuple`` (one array or ``None`` per positional input, in order).
    ``self.needs_grad[i]`` tells whether input ``i`` needs a gradient, so forward can skip saving
    what backward will not use. Whatever forward stores on ``self`` is freed after backward.

    ``infer(self, *arrays, **options)`` is the primitive's inference path, run by ``apply`` when
    no input needs a gradient: ``forward``'s result, keeping nothing for backward. It defaults to
    ``forward``; a kernel overrides it where inference can take a cheaper route (layer norm,
    GELU and attention do). Tests check the two agree: bit for bit, except attention without a
    mask, whose inference divides the output by the row sums instead of normalising the
    weights (equal to round-off).
    """

    inputs: tuple = ()
    needs_grad: tuple = ()

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def infer(self, *arrays, **options):
        return self.forward(*arrays, **options)

    @classmethod
    def inference(cls, *arrays, **options):
        """The primitive's inference path on arrays, recording nothing: what ``apply`` runs when
        no gradient is needed, without tensors (for ``GPT._decode_step``)."""
        fn = cls()
        fn.needs_grad = _NO_GRAD[len(arrays)] if len(arrays) < 8 else (False,) * len(arrays)
        return fn.infer(*arrays, **options)

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the primitive on tensors ``inputs``; record it when any input requires grad.

        The output is made by the first input (``Tensor._result``), so the engine never names
        the tensor class."""
        kind = _active_type[0]
        for t in inputs:
            if type(t.array) is not kind:  # another device (or a subclass): check, and switch xp
                _check_device(inputs)
                break
        fn = cls()
        out = None
        if _grad_enabled:
            for t in inputs:
                if t._requires_grad:
                    out = fn._record(inputs, options)
                    break
        if out is None:
            fn.needs_grad = _NO_GRAD[len(inputs)] if len(inputs) < 8 else (False,) * len(inputs)
            out = inputs[0]._result(fn.infer(*[t.array for t in inputs], **options), False)
        if _tracer is not None:
            _tracer(cls, inputs, options, out)
        return out

    def _record(self, inputs, options):
        self.needs_grad = tuple([t._requires_grad for t in inputs])
        result = inputs[0]._result(self.forward(*[t.array for t in inputs], **options), True)
        self.inputs = inputs
        result._fn = self
        return result

    @property
    def name(self) -> str:
        return type(self).__name__

    def release(self) -> None:
        """Drop inputs and saved arrays after backward (frees the activations)."""
        self.__dict__.clear()
        self.released = True


def _check_device(inputs) -> None:
    arrays = [t.array for t in inputs]
    if all(isinstance(a, _active_type[0]) for a in arrays):
        return  # array subclasses of the active type
    backend.enter_device(arrays)


def unbroadcast(grad, shape: tuple):
    """Sum ``grad`` over the dimensions that broadcasting added or stretched to reach ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _toposort(root) -> list:
    """Tensors reachable from ``root`` through recorded functions, parents before children."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        fn = node._fn
        if fn is not None:
            if getattr(fn, "released", False):
                raise RuntimeError(
                    "backward: the graph was already freed by an earlier backward(); "
                    "pass retain_graph=True to the first call to backward twice"
                )
            for parent in fn.inputs:
                if parent.requires_grad and id(parent) not in seen:
                    stack.append((parent, False))
    return order


def backward(root, grad, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) * grad into ``leaf.grad`` for every leaf that requires grad."""
    if type(root.array) is not _active_type[0]:  # the graph's device (one per graph: apply checks)
        _check_device([root])
    grads = {id(root): grad}
    handed_out = set()  # ids of arrays already stored in some .grad (never share one in place)
    for node in reversed(_toposort(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        fn = node._fn
        if fn is None or node._retains_grad:
            _accumulate(node, g, handed_out)
        if fn is None:
            continue
        input_grads = fn.backward(g)
        for parent, pg in zip(fn.inputs, input_grads):
            if pg is None or not parent.requires_grad:
                continue
            key = id(parent)
            grads[key] = grads[key] + pg if key in grads else pg
        if not retain_graph:
            fn.release()


def _accumulate(node, g, handed_out: set) -> None:
    if not isinstance(g, xp.ndarray):  # a NumPy scalar from a 0-d op: .grad is always an array
        g = xp.asarray(g)
    if g.dtype != node.array.dtype:
        g = g.astype(node.array.dtype)
    if node.grad is None:
        # The optimiser and clipping update .grad in place, so it must own its memory.
        if id(g) in handed_out or not g.flags.writeable or g.base is not None:
            g = g.copy()
        handed_out.add(id(g))
        node.grad = node._result(g, False)
    else:
        node.grad.array = xp.add(node.grad.array, g)
