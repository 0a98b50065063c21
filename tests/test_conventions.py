"""Conventions, checked: public forwards and functionals document their shapes."""

from __future__ import annotations

import inspect
import re

import numformer.models as models
import numformer.nn as nn
import numformer.nn.functional as F

NOT_TENSOR_FUNCTIONS = {"attention_kernel"}  # a context manager choosing a kernel
SHAPE = re.compile(r"^\s*Shape( \(.*\))?:", re.M)  # a "Shape:" section, as PyTorch's docstrings have


def _modules():
    for namespace in (nn, models):
        for name in dir(namespace):
            obj = getattr(namespace, name)
            if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.forward is not nn.Module.forward:
                yield f"{namespace.__name__}.{name}", obj


def test_every_module_forward_has_a_shape_section():
    missing = [name for name, cls in _modules() if not SHAPE.search(inspect.getdoc(cls.forward) or "")]
    assert not missing, missing


def test_every_functional_has_a_shape_section():
    public = [
        name
        for name, fn in inspect.getmembers(F, inspect.isfunction)
        if not name.startswith("_") and fn.__module__ == F.__name__ and name not in NOT_TENSOR_FUNCTIONS
    ]
    assert len(public) > 10
    missing = [name for name in public if not SHAPE.search(inspect.getdoc(getattr(F, name)) or "")]
    assert not missing, missing
