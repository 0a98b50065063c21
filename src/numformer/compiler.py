"""``numformer.compile``: PyTorch's ``torch.compile`` for programs that call it.

numformer has no graph compiler: its speed comes from fused kernels chosen at every call, so
``compile(model)`` returns ``model`` itself and the program runs as it would uncompiled (PyTorch's
guarantee for a compiled model is the same results, which this keeps).
"""

from __future__ import annotations

__all__ = ["compile", "disable", "is_compiling"]


def compile(
    model=None,
    *,
    fullgraph: bool = False,
    dynamic=None,
    backend="inductor",
    mode=None,
    options=None,
    disable: bool = False,
):  # noqa: A001 - PyTorch's name
    """``model`` (a module or function) unchanged; with no model, a decorator that leaves what
    it decorates unchanged (``@numformer.compile`` and ``@numformer.compile(mode=...)``).

    Args:
        model: the module or function.
        fullgraph, dynamic, backend, mode, options, disable: accepted, as PyTorch's.

    Raises:
        TypeError: a model that is not callable."""
    if model is None:
        return lambda fn: compile(fn)
    if not callable(model):
        raise TypeError(f"compile: expected a module or a function, got {type(model).__name__}")
    return model


def disable(fn=None, recursive: bool = True):
    """``torch.compiler.disable``: ``fn`` unchanged."""
    return (lambda f: f) if fn is None else fn


def is_compiling() -> bool:
    return False
