"""Reverse-mode automatic differentiation: the graph, the primitive base class, and backward.

A primitive is a subclass of ``Function`` with a ``forward`` on arrays and a ``backward`` that
returns one gradient per tensor input (a vector-Jacobian product). ``Function.apply`` runs the
forward and, when gradients are wanted, records the call as a node of the graph; when none is
wanted (``no_grad``, or no input requires grad) it runs the primitive's ``infer`` instead and
records nothing, so every module and model has one ``forward`` that is fast in inference.

The graph is made of the recorded calls (PyTorch's ``grad_fn`` nodes), not of tensors: each
node keeps, per input, the node that made it (and which of its outputs) or, for a leaf, the
leaf tensor itself. So an in-place operation can give a tensor a new node while the nodes that
used its old value keep pointing at the old one. ``backward`` sorts the nodes topologically and
runs each ``Function.backward`` in reverse order, summing the gradients of values used more
than once; a primitive may return several outputs (``forward`` returns a tuple; ``backward``
then gets one gradient per output, None for those no gradient reached).

Version counters, as PyTorch's: every in-place change of a tensor's values bumps the counter it
shares with its views. A node records the counters of the inputs (``saves_inputs``) and outputs
(``saves_output``) its backward reads, and ``backward`` refuses, naming the node, to use a value
that was changed after it was saved: never a wrong gradient.

Adding a primitive never touches this file, and this file imports nothing of numformer but the
backend.
"""

from __future__ import annotations

import contextlib
import functools
import threading

from numformer import backend
from numformer.backend import _active_type, xp


class _ThreadModes(threading.local):
    """The grad mode and the inference_mode blocks entered, per thread, as PyTorch keeps them:
    a thread's ``no_grad`` never changes what another thread records; a new thread starts with
    grad enabled and no block."""

    grad_enabled = True

    def __init__(self):
        self.inference = []  # the modes of the inference_mode blocks entered, innermost last


_modes = _ThreadModes()
_NO_GRAD = tuple((False,) * n for n in range(8))  # needs_grad of an op recording nothing
_tracer = None  # on_apply of the ``tracing`` block in force (numformer.onnx's exporter), or None


def is_grad_enabled() -> bool:
    """Whether operations record a graph now (False inside ``no_grad``), as PyTorch's.

    Returns:
        The current grad mode."""
    return _modes.grad_enabled


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
        self._previous = _modes.grad_enabled
        _modes.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _modes.grad_enabled = self._previous
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return func(*args, **kwargs)

        return wrapper


class _NoArgGradMode(_GradMode):
    """A grad mode that also decorates without parentheses (``@no_grad`` as ``@no_grad()``)."""

    def __new__(cls, func=None):
        self = super().__new__(cls)
        return self(func) if callable(func) else self


class no_grad(_NoArgGradMode):  # noqa: N801 - PyTorch's name
    """Disable graph recording inside a ``with`` block or a decorated function."""

    enabled = False


class enable_grad(_NoArgGradMode):  # noqa: N801 - PyTorch's name
    """Re-enable graph recording (inside ``no_grad``)."""

    enabled = True


class inference_mode(_GradMode):  # noqa: N801 - PyTorch's name
    """PyTorch's ``inference_mode(mode=True)``: numformer's ``no_grad`` (``mode=False`` changes
    nothing); also a decorator, with or without parentheses.

    Args:
        mode: True records nothing inside the block; False leaves the grad mode as it is.

    Examples:
        >>> import numformer as nf
        >>> w = nf.ones(2, requires_grad=True)
        >>> with nf.inference_mode():
        ...     y = w * 2
        >>> y.requires_grad
        False
    """

    def __new__(cls, mode=True):
        self = super().__new__(cls)
        if callable(mode):  # @inference_mode
            self._mode = True
            return self(mode)
        return self

    def __init__(self, mode=True):
        self._mode = bool(mode)

    def __enter__(self):
        self.enabled = False if self._mode else _modes.grad_enabled
        _modes.inference.append(self._mode)
        return super().__enter__()

    def __exit__(self, *exc):
        _modes.inference.pop()
        return super().__exit__(*exc)

    def __call__(self, func):
        mode = self._mode

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with inference_mode(mode):
                return func(*args, **kwargs)

        return wrapper


def is_inference_mode_enabled() -> bool:
    """Whether the innermost ``inference_mode`` block in force has ``mode=True``.

    Returns:
        True inside ``inference_mode()``, False elsewhere."""
    return bool(_modes.inference) and _modes.inference[-1]


class set_grad_enabled(_GradMode):  # noqa: N801 - PyTorch's name
    """``set_grad_enabled(mode)``: sets whether operations record a graph at once; used as a
    ``with`` block, the previous mode comes back at its end.

    Args:
        mode: True to record graphs, False not to.
    """

    def __init__(self, mode: bool):
        self._previous, self.enabled = _modes.grad_enabled, bool(mode)
        _modes.grad_enabled = self.enabled

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _modes.grad_enabled = self._previous
        return False

    def __call__(self, func):
        _modes.grad_enabled = self._previous  # as a decorator it changes nothing until called
        mode = self.enabled

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return func(*args, **kwargs)

        return wrapper


class Function:
    """One differentiable primitive: ``forward`` on arrays, ``backward`` per tensor input.

    Subclasses implement ``forward(self, *arrays, **options) -> array`` (or a tuple of arrays:
    several outputs) and ``backward(self, grad) -> tuple`` (one gradient per output; one array
    or ``None`` per positional input, in order). ``self.needs_grad[i]`` tells whether input
    ``i`` needs a gradient, so forward can skip saving what backward will not use. Whatever
    forward stores on ``self`` is freed after backward.

    Class attributes say what backward reads, for the version check: ``saves_inputs`` (True:
    every input; a tuple: those inputs' positions; False: none) and ``saves_output``;
    ``grad_reads`` (None, or per input the positions of the inputs its gradient reads) narrows
    the inputs to those the gradients needed read, as PyTorch saves for a product only the
    factor the other's gradient needs (``h * 10`` then ``h.mul_(2)`` is no error). ``view``
    marks a primitive whose output may share its first input's memory (reshape, permute,
    slicing): the output then shares the input's version counter.

    ``infer(self, *arrays, **options)`` is the primitive's inference path, run by ``apply`` when
    no input needs a gradient: ``forward``'s result, keeping nothing for backward. It defaults to
    ``forward``; a kernel overrides it where inference can take a cheaper route (layer norm,
    GELU and attention do). Tests check the two agree.
    """

    saves_inputs: bool | tuple = True
    grad_reads: tuple | None = None
    saves_output: bool = False
    view: bool = False
    needs_grad: tuple = ()
    parents: tuple = ()  # per input: (node, output index), a leaf tensor, or None
    n_outputs: int = 1

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

        Outputs are made by the first input (``Tensor._result``), so the engine never names
        the tensor class. Returns a tensor, or a tuple of them for a primitive of several
        outputs."""
        kind = _active_type[0]
        for t in inputs:
            if type(t.array) is not kind:  # another device (or a subclass): check, and switch xp
                _check_device(inputs)
                break
        fn = cls()
        out = None
        if _modes.grad_enabled:
            for t in inputs:
                if t._view_of is not None:  # a view whose base changed in place takes its new history
                    t._refresh_view()
            for t in inputs:
                if t._requires_grad:
                    out = fn._record(inputs, options)
                    break
        if out is None:
            fn.needs_grad = _NO_GRAD[len(inputs)] if len(inputs) < 8 else (False,) * len(inputs)
            out = fn.infer(*[t.array for t in inputs], **options)
            if cls.view:
                out = inputs[0]._view(out, False, (cls, options))
            elif type(out) is tuple:
                out = tuple(inputs[0]._result(o, False) for o in out)
            else:
                out = inputs[0]._result(out, False)
        if _tracer is not None:
            _tracer(cls, inputs, options, out)
        return out

    def _record(self, inputs, options):
        self.needs_grad = tuple([t._requires_grad for t in inputs])
        out = self.forward(*[t.array for t in inputs], **options)
        self.parents = tuple([_edge(t) for t in inputs])
        saved, reads = self.saves_inputs, self.grad_reads
        if reads is not None:  # only what the gradients needed read
            needed = {j for i, need in enumerate(self.needs_grad) if need for j in reads[i]}
            picked = [inputs[j] for j in sorted(needed)]
        else:
            picked = inputs if saved is True else [inputs[i] for i in saved] if saved else ()
        self.saved_versions = [t._saved_version() for t in picked]
        first = inputs[0]
        if type(out) is tuple:
            self.n_outputs = len(out)
            results = tuple(first._result(o, backend.is_floating(o.dtype)) for o in out)
        else:
            results = (first._view(out, True, (type(self), options)) if self.view else first._result(out, True),)
        for i, r in enumerate(results):
            r._fn, r._out = self, i
        if self.saves_output:
            self.saved_versions += [r._saved_version() for r in results]
        return results if self.n_outputs > 1 else results[0]

    @property
    def name(self) -> str:
        return type(self).__name__

    def release(self) -> None:
        """Drop inputs and saved arrays after backward (frees the activations)."""
        self.__dict__.clear()
        self.released = True


def _edge(t):
    """What a node keeps of its input ``t``: the node that made it and which output, the leaf
    itself when it requires grad, or None (no gradient flows there)."""
    if t._fn is not None:
        return (t._fn, t._out)
    return t if t._requires_grad else None


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


_EVERYWHERE = object()  # a PlacedGrad's part that is a full-size gradient (None is an index: a[None])


class PlacedGrad:
    """A gradient that is zero but at one place of its tensor: what a view (basic indexing,
    ``GetItem``) hands back. The engine sums a tensor's gradients as they come; where views'
    gradients meet, each is written at its place in one zero buffer (``q, k, v = qkv.split(d,
    2)``: one buffer and three writes, where full-size zero arrays added together cost two more
    buffers and two passes over them). The buffer is made when the tensor's gradient is used
    (``materialize``), in the order the parts came, so a gradient's values are the plain sum's (a zero
    may differ in sign).

    Args:
        shape: the tensor's shape.
        dtype: the tensor's dtype.
        index: the view's basic index into the tensor.
        grad: the view's gradient.
    """

    __slots__ = ("shape", "dtype", "parts")

    def __init__(self, shape: tuple, dtype, index, grad):
        self.shape, self.dtype, self.parts = shape, dtype, [(index, grad)]

    def materialize(self):
        """The whole gradient, as the plain sum of the parts in order would make it.

        Each view's gradient is rounded to the tensor's dtype (as its own zero buffer held it,
        and as PyTorch casts a gradient to its input's dtype), then written (the first part) or
        added (the rest) at its place. A part at ``_EVERYWHERE`` is a full-size gradient: added
        in place, after widening the sum's dtype where it is wider (the plain sum promotes from
        that part on, not before). One that broadcasts the sum to a larger shape goes on as the
        plain sum, each later view's gradient in a full-size zero array.

        Returns:
            The gradient array (of the tensor's shape but where a full part broadcast it)."""
        out = xp.zeros(self.shape, dtype=self.dtype)
        for i, (index, g) in enumerate(self.parts):
            if index is _EVERYWHERE:
                dtype = xp.result_type(out, g)
                if dtype != out.dtype:
                    out = out.astype(dtype)
                if xp.broadcast_shapes(out.shape, xp.shape(g)) == out.shape:
                    xp.add(out, g, out=out)
                else:
                    out = out + g
                continue
            g = xp.asarray(g, dtype=self.dtype)
            if out.shape != self.shape:  # a full part broadcast the sum: go on as the plain sum
                g, part = xp.zeros(self.shape, dtype=self.dtype), g
                g[index] = part
                out = out + g
            elif i == 0:
                out[index] = g
            else:
                out[index] += g
        return out


def _sum_grads(a, b):
    """``a + b``, two gradients of one tensor in the order they came; either may be a
    ``PlacedGrad``, which then takes the other as a part (and is returned)."""
    if type(a) is PlacedGrad:
        a.parts.extend(b.parts if type(b) is PlacedGrad else [(_EVERYWHERE, b)])
        return a
    if type(b) is PlacedGrad:
        b.parts.insert(0, (_EVERYWHERE, a))
        return b
    return a + b


def _toposort(root) -> list:
    """The nodes reachable from node ``root``, each after every node that uses its outputs."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        if getattr(node, "released", False):
            raise RuntimeError(
                "backward: the graph was already freed by an earlier backward(); "
                "pass retain_graph=True to the first call to backward twice"
            )
        seen.add(id(node))
        stack.append((node, True))
        for parent in node.parents:
            if type(parent) is tuple and id(parent[0]) not in seen:
                stack.append((parent[0], False))
    order.reverse()
    return order


def _check_versions(node) -> None:
    """Raise, as PyTorch does, when a value ``node``'s backward reads was changed in place."""
    for counter, version, shape, dtype in node.saved_versions:
        if counter[0] != version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: [{dtype} {list(shape)}] used by {node.name} is at version {counter[0]}; expected "
                f"version {version} instead. Change the in-place operation to an out-of-place one (x = x + y, "
                "not x += y; clone() before modifying)"
            )


_after_backward: list = []  # callbacks for the end of the next backward (DistributedDataParallel's sync)


def after_backward(callback) -> None:
    """Run ``callback()`` once, when the next ``backward`` has accumulated every gradient (as
    PyTorch's engine's ``queue_callback``: DistributedDataParallel averages gradients then). A
    callback queued twice before that backward runs once."""
    if callback not in _after_backward:
        _after_backward.append(callback)


def backward(root, grad, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) * grad into ``leaf.grad`` for every leaf that requires grad,
    then run the callbacks ``after_backward`` queued."""
    try:
        _backward(root, grad, retain_graph)
    finally:
        callbacks, _after_backward[:] = list(_after_backward), []
    for callback in callbacks:
        callback()


def _backward(root, grad, retain_graph: bool) -> None:
    if type(root.array) is not _active_type[0]:  # the graph's device (one per graph: apply checks)
        _check_device([root])
    handed_out: set = set()
    if root._fn is None:  # a leaf: its own gradient
        _accumulate(root, grad, handed_out)
        return
    pending = {id(root._fn): {root._out: grad}}
    leaves: dict = {}  # id -> [leaf, summed gradient]
    order = _toposort(root._fn)
    complete = _leaves_complete_after(order)
    for i, node in enumerate(order):
        grads = pending.pop(id(node), None)
        if grads is not None:
            _run_node(node, grads, root, pending, leaves, retain_graph, handed_out)
        # a leaf no later node reaches has its whole gradient: accumulate it now, so hooks
        # after accumulation (DistributedDataParallel's buckets) run while backward goes on
        for leaf_id in complete.get(i, ()):
            entry = leaves.pop(leaf_id, None)
            if entry is not None:
                _accumulate(entry[0], entry[1], handed_out)


def _leaves_complete_after(order: list) -> dict:
    """{index in ``order``: ids of the leaves whose last contribution that node makes}."""
    last: dict = {}
    for i, node in enumerate(order):
        for parent in node.parents:
            if parent is not None and type(parent) is not tuple:
                last[id(parent)] = i
    complete: dict = {}
    for leaf_id, i in last.items():
        complete.setdefault(i, []).append(leaf_id)
    return complete


def _run_node(node, grads: dict, root, pending: dict, leaves: dict, retain_graph: bool, handed_out: set) -> None:
    """``node``'s backward on its outputs' gradients, its inputs' gradients handed on."""
    _check_versions(node)
    for index, g in grads.items():
        if type(g) is PlacedGrad:
            grads[index] = g.materialize()
    for index, hooks in getattr(node, "hooks", {}).items():
        if index in grads and hooks:
            grads[index] = _run_hooks(hooks, grads[index], root)
    for index, ref in getattr(node, "retained", {}).items():
        t = ref()
        if t is not None and index in grads:
            _accumulate(t, grads[index], handed_out)
    if node.n_outputs == 1:
        input_grads = node.backward(grads[0])
    else:
        input_grads = node.backward(*[grads.get(i) for i in range(node.n_outputs)])
    for parent, g in zip(node.parents, input_grads):
        if g is None or parent is None:
            continue
        if type(parent) is tuple:
            slot = pending.setdefault(id(parent[0]), {})
            slot[parent[1]] = _sum_grads(slot[parent[1]], g) if parent[1] in slot else g
        elif id(parent) in leaves:
            leaves[id(parent)][1] = _sum_grads(leaves[id(parent)][1], g)
        else:
            leaves[id(parent)] = [parent, g]
    if not retain_graph:
        node.release()


class HookHandle:
    """What ``Tensor.register_hook`` returns: ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _run_hooks(hooks, g, like):
    """``g`` passed through each hook in turn (a hook returning a tensor replaces it)."""
    for hook in list(hooks):
        result = hook(like._result(g, False))
        if result is not None:
            g = result.array if hasattr(result, "_fn") else xp.asarray(result)
    return g


def _accumulate(node, g, handed_out: set) -> None:
    if type(g) is PlacedGrad:
        g = g.materialize()
    hooks = getattr(node, "_hooks", None)
    if hooks:
        g = _run_hooks(hooks, g, node)
    if not isinstance(g, xp.ndarray):  # a NumPy scalar from a 0-d op: .grad is always an array
        g = xp.asarray(g)
    if g.dtype != node.array.dtype:
        g = g.astype(node.array.dtype)
    post_hooks = getattr(node, "_post_hooks", None)
    if node.grad is None:
        # The optimiser and clipping update .grad in place, so it must own its memory; so must
        # a gradient a post-accumulate hook sees while later nodes may still read the array.
        if post_hooks or id(g) in handed_out or not g.flags.writeable or g.base is not None:
            g = g.copy()
        handed_out.add(id(g))
        node.grad = node._result(g, False)
    else:
        node.grad.array = xp.add(node.grad.array, g)
    for hook in list(post_hooks or ()):
        if hook(node) is not None:
            raise RuntimeError("Tensor post accumulate grad hooks should return None.")
