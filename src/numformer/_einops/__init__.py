"""einops (``rearrange``, ``repeat``, ``reduce``, ``einsum``, ``pack``/``unpack``) on numformer
tensors, without touching einops.

einops finds a backend for a tensor by walking the subclasses of its ``AbstractBackend`` whose
``framework_name`` module is imported; so numformer's backend only has to be *defined*
(``numformer._einops.backend``) by the time einops first meets a numformer tensor. numformer
never imports einops itself: importing numformer calls ``install``, which defines the backend
at once if einops is already loaded, and otherwise puts a finder on ``sys.meta_path`` that lets
``einops._backends`` load as it always does and then defines the backend beside it. Without
einops installed the finder never fires.

einops' layers (``einops.layers.torch``) subclass ``torch.nn.Module`` and cannot hold
numformer's parameters; ``numformer.nn.einops`` builds the same layers (``Rearrange``,
``Reduce``, ``EinMix``) from einops' own framework-neutral mixins on ``numformer.nn.Module``.
"""

from __future__ import annotations

import sys
from importlib.abc import Loader, MetaPathFinder

_BACKENDS = "einops._backends"  # the module whose AbstractBackend numformer's backend subclasses


def install() -> None:
    """Make einops know numformer's tensors: now if einops' backends are loaded, else as soon as
    they are. Idempotent."""
    if _BACKENDS in sys.modules:
        _register()
    elif not any(isinstance(finder, _BackendsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BackendsFinder())


def _register() -> None:
    from numformer._einops import backend  # noqa: F401 - defining the subclass is the registration


class _BackendsFinder(MetaPathFinder):
    """Finds ``einops._backends`` through the other finders, as Python would, and hands back
    its spec with a loader that defines numformer's backend after running the module."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _BACKENDS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfter(spec.loader)
                return spec
        return None


class _RegisterAfter(Loader):
    """The original loader, with numformer's backend defined once the module has run."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # get_source, get_filename, ... of the original loader
        return getattr(self._loader, name)
