"""The ``Examples:`` in the public docstrings run as written (doctest), and the core classes
each have one. The API reference renders the same blocks, so what a reader copies works."""

from __future__ import annotations

import doctest
import inspect

import numpy as np
import pytest
from test_docstrings import _public

import numformer as nf

# Classes a newcomer meets first: each shows one runnable example.
MUST_HAVE_EXAMPLES = [
    nf.nn.Linear,
    nf.nn.Embedding,
    nf.nn.LayerNorm,
    nf.nn.Dropout,
    nf.nn.MultiheadAttention,
    nf.nn.LSTM,
    nf.nn.CrossEntropyLoss,
    nf.nn.Sequential,
    nf.optim.AdamW,
    nf.optim.SGD,
]


def _docstrings():
    """``{name: docstring}`` of every public object and its public methods that has examples."""
    found = {}
    for name, obj in _public().items():
        found[name] = inspect.getdoc(obj) or ""
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if (not attr.startswith("_") or attr == "__init__") and inspect.isfunction(member):
                    found[f"{name}.{attr}"] = inspect.getdoc(member) or ""
    return {name: doc for name, doc in found.items() if ">>>" in doc}


EXAMPLES = _docstrings()


def test_there_are_examples_to_run():
    assert len(EXAMPLES) >= len(MUST_HAVE_EXAMPLES)


@pytest.mark.parametrize("cls", MUST_HAVE_EXAMPLES, ids=lambda c: c.__name__)
def test_core_classes_show_an_example(cls):
    doc = inspect.getdoc(cls)
    assert "Examples:" in doc and ">>>" in doc.split("Examples:")[1]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples_run(name):
    parser = doctest.DocTestParser()
    test = parser.get_doctest(EXAMPLES[name], {"nf": nf, "np": np}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    nf.manual_seed(0)
    output: list[str] = []
    runner.run(test, out=output.append)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, "".join(output)
