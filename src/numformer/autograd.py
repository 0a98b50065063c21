"""Reverse-mode automatic differentiation: the graph, the primitive base class, and backward.

A primitive is a subclass of ``Function`` with a ``forward`` on arrays and a ``backward`` that
returns one gradient per tensor input (a vector-Jacobian product). ``Function.apply`` runs the
forward and, when gradients are wanted, records the call on the output tensor. ``backward`` sorts
the recorded graph topologically and runs each ``Function.backward`` in reverse order, summing
the gradients of tensors used more than once. Adding a primitive never touches this file.
"""

from __future__ import annotations

import functools

from numformer.backend import xp
from numformer.parallel import binary

_grad_enabled = True
_Tensor = None  # bound by numformer.tensor at import (the engine knows Tensor only as a factory)


def _bind_tensor(cls) -> None:
    global _Tensor
    _Tensor = cls


def is_grad_enabled() -> bool:
    return _grad_enabled


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
    """

    inputs: tuple = ()
    needs_grad: tuple = ()

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the primitive on tensors ``inputs``; record it when any input requires grad."""
        fn = cls()
        if _grad_enabled:
            fn.needs_grad = needs = tuple([t.requires_grad for t in inputs])
            requires = True in needs
        else:
            fn.needs_grad, requires = (False,) * len(inputs), False
        out = fn.forward(*[t.data for t in inputs], **options)
        result = _Tensor._wrap(out, requires)
        if requires:
            fn.inputs = inputs
            result._fn = fn
        else:
            fn.__dict__.clear()
        return result

    @classmethod
    def infer(cls, *arrays, **options):
        """Run the primitive's forward on arrays and record nothing: no tensors, no graph, no
        state kept for backward. For hot inference loops: a decoding step calls ~50 primitives
        on a few rows each, and through tensors and modules it took 1.5x as long at batch 1.
        Inputs must already be valid: the checks live in ``numformer.nn.functional`` and in
        the layers' ``infer`` methods."""
        fn = cls()
        fn.needs_grad = (False,) * len(arrays)
        return fn.forward(*arrays, **options)

    @property
    def name(self) -> str:
        return type(self).__name__

    def release(self) -> None:
        """Drop inputs and saved arrays after backward (frees the activations)."""
        self.__dict__.clear()
        self.released = True


def unbroadcast(grad, shape: tuple):
    """Sum ``grad`` over the dimensions that broadcasting added or stretched to reach ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
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
    if g.dtype != node.data.dtype:
        g = g.astype(node.data.dtype)
    if node.grad is None:
        # The optimiser and clipping update .grad in place, so it must own its memory.
        if id(g) in handed_out or not g.flags.writeable or g.base is not None:
            g = g.copy()
        handed_out.add(id(g))
        node.grad = g
    else:
        node.grad = binary(xp.add, node.grad, g)  # split over threads when large


def graph_depth(root, counts=("Linear", "MatMul", "ScaledDotProductAttention")) -> int:
    """The longest chain of dependent ops named in ``counts`` that produced ``root``.

    Ops on one chain must run one after another; ops on different chains may run in parallel.
    An RNN over T steps has depth about T; attention over T positions has a depth independent
    of T (seed section 1). The graph must still exist (before ``backward`` frees it).
    """
    depth: dict[int, int] = {}
    for node in _toposort(root):
        fn = node._fn
        if fn is None:
            depth[id(node)] = 0
            continue
        below = max((depth.get(id(p), 0) for p in fn.inputs), default=0)
        depth[id(node)] = below + (type(fn).__name__ in counts)
    return depth[id(root)]
