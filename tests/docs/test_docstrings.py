"""Every public name is documented the way the API reference renders it (Google style): a
docstring, an ``Args:`` section naming each argument where it takes any, and a ``Shape:``
section where it takes tensors (for a module, on its ``forward``).

The public API is what the reference documents: the names exported by the modules in
``MODULES``. Files whose names are still missing sections are listed in ``PENDING`` with the
reason; the test fails as soon as a listed file is complete (take it off the list) or a file
not listed falls short."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import numformer as nf

SRC = Path(nf.__file__).resolve().parent

MODULES = [
    "numformer",
    "numformer.nn",
    "numformer.nn.functional",
    "numformer.nn.init",
    "numformer.nn.utils",
    "numformer.nn.parallel",
    "numformer.optim",
    "numformer.optim.lr_scheduler",
    "numformer.utils.data",
    "numformer.models",
    "numformer.train",
    "numformer.distributed",
    "numformer.interop",
]

# Argument names that carry tensors: a function taking one states shapes.
TENSOR_ARGS = {
    "input",
    "x",
    "query",
    "key",
    "value",
    "src",
    "tgt",
    "memory",
    "target",
    "tensor",
    "tensors",
    "other",
    "logits",
    "input_ids",
    "idx",
    "attn_mask",
    "hx",
    "condition",
    "index",
    "indices",
}

# Files whose public names still lack sections, relative to src/numformer, with the reason.
PENDING = {
    # empty: every public name is documented (a file may be listed here, with its reason, while
    # it is being rewritten)
}


def _arguments(fn) -> list[str]:
    """The named arguments of ``fn`` (not self, not ``*args``/``**kwargs``, not private ones such
    as ``_stacklevel``), or [] if unknown."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [p.name for p in signature.parameters.values() if p.kind not in skip]
    return [n for n in names if n not in ("self", "cls") and not n.startswith("_")]


def _section(doc: str, title: str) -> str | None:
    """The text of the Google-style section ``title`` (``Args``, ``Shape``), or None."""
    match = re.search(rf"^{title}:[ \t]*(.*?)(?=^\S[^\n]*:\s*$|\Z)", doc, re.M | re.S)
    return match.group(1) if match else None


def _problems(obj) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    if not doc:
        return ["no docstring"]
    problems = []
    if inspect.isclass(obj):
        init = vars(obj).get("__init__") or next(
            (
                vars(k)["__init__"]
                for k in obj.__mro__[1:]
                if "__init__" in vars(k) and k.__module__.startswith("numformer")
            ),
            None,
        )
        arguments = _arguments(init) if init is not None else []
        args = (_section(doc, "Args") or "") + (_section(inspect.getdoc(init) or "", "Args") or "") if init else ""
        if arguments and not args:
            problems.append("no Args: section")
        problems += [f"Args: does not name {a!r}" for a in arguments if args and not re.search(rf"\b{a}\b", args)]
        if issubclass(obj, nf.nn.Module) and "forward" in vars(obj):
            forward = inspect.getdoc(obj.forward) or ""
            if "Shape:" not in forward and "Shape:" not in doc:
                problems.append("forward has no Shape: section")
        return problems
    arguments = _arguments(obj)
    args = _section(doc, "Args")
    if arguments and args is None:
        problems.append("no Args: section")
    elif args is not None:
        problems += [f"Args: does not name {a!r}" for a in arguments if not re.search(rf"\b{a}\b", args)]
    if set(arguments) & TENSOR_ARGS and "Shape:" not in doc:
        problems.append("no Shape: section")
    return problems


def _public():
    """``{qualified name: object}`` of every public class and function, each once."""
    found, seen = {}, set()
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]:
            obj = getattr(module, attr, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            if not getattr(obj, "__module__", "").startswith("numformer"):
                continue
            seen.add(id(obj))
            found[f"{name}.{attr}"] = obj
    return found


def _file(obj) -> str:
    path = Path(inspect.getsourcefile(inspect.unwrap(obj)) or "").resolve()
    return path.relative_to(SRC).as_posix() if path.is_relative_to(SRC) else str(path)


def _report():
    by_file: dict[str, list[str]] = {}
    for name, obj in _public().items():
        problems = _problems(obj)
        if problems:
            by_file.setdefault(_file(obj), []).append(f"{name}: {'; '.join(problems)}")
    return by_file


def test_the_public_api_is_large_enough_to_mean_something():
    assert len(_public()) > 400


def test_every_public_name_outside_the_pending_files_is_documented():
    missing = {f: names for f, names in _report().items() if f not in PENDING}
    assert not missing, "\n".join(line for names in missing.values() for line in names)


def test_the_pending_list_holds_only_files_still_pending():
    report = _report()
    done = sorted(f for f in PENDING if f not in report)
    assert not done, f"complete now, take them off PENDING: {done}"


@pytest.mark.parametrize(
    "doc, problems",
    [
        ('"""Add.\n\nArgs:\n    input: a.\n    other: b.\n\nShape:\n    (*) -> (*)."""', []),
        ('"""Add."""', ["no Args: section", "no Shape: section"]),
        ('"""Add.\n\nArgs:\n    input: a.\n\nShape:\n    (*)."""', ["Args: does not name 'other'"]),
    ],
)
def test_the_checker_itself(doc, problems):
    namespace: dict = {}
    exec(f"def add(input, other):\n    {doc}\n", namespace)  # noqa: S102 - a docstring under test
    assert _problems(namespace["add"]) == problems
