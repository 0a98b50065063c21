"""The tensor API as PyTorch's: each function of the table against PyTorch (values and
gradients, over hypothesis-drawn shapes), float64 finite differences for every new primitive,
the functions and methods that PyTorch has on both sides, and NumPy's ufuncs on tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import check_parity, randn
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**16)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
MATRICES = hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=5)
DTYPES = st.sampled_from([np.float32, np.float64])

# name -> (numformer fn, torch fn, how to draw inputs from (seed, shape)); every one differentiable
UNARY = {
    "sin": (nf.sin, torch.sin, {}),
    "cos": (nf.cos, torch.cos, {}),
    "tan": (nf.tan, torch.tan, {}),
    "log1p": (nf.log1p, torch.log1p, {"positive": True}),
    "expm1": (nf.expm1, torch.expm1, {}),
    "log2": (nf.log2, torch.log2, {"positive": True}),
    "log10": (nf.log10, torch.log10, {"positive": True}),
    "rsqrt": (nf.rsqrt, torch.rsqrt, {"positive": True}),
    "square": (nf.square, torch.square, {}),
    "reciprocal": (nf.reciprocal, torch.reciprocal, {"away_from_zero": True}),
    "exp (function)": (nf.exp, torch.exp, {}),
    "clone": (nf.clone, torch.clone, {}),
    "floor": (nf.floor, torch.floor, {}),
    "round": (nf.round, torch.round, {}),
    "sign": (nf.sign, torch.sign, {}),
    "cumsum": (lambda x: nf.cumsum(x, -1), lambda x: torch.cumsum(x, -1), {}),
    "logsumexp": (lambda x: nf.logsumexp(x, -1), lambda x: torch.logsumexp(x, -1), {}),
    "norm": (lambda x: nf.norm(x), lambda x: torch.norm(x), {"away_from_zero": True}),
    "amax": (lambda x: nf.amax(x, -1), lambda x: torch.amax(x, -1), {}),
    "flip": (lambda x: nf.flip(x, [0]), lambda x: torch.flip(x, [0]), {}),
    "roll": (lambda x: nf.roll(x, 2, 0), lambda x: torch.roll(x, 2, 0), {}),
    "t or transpose": (lambda x: x.transpose(0, -1), lambda x: x.transpose(0, -1), {}),
    "movedim": (lambda x: nf.movedim(x, 0, -1), lambda x: torch.movedim(x, 0, -1), {}),
    "sort values": (lambda x: nf.sort(x, -1).values, lambda x: torch.sort(x, -1).values, {}),
    "max over dim": (lambda x: nf.max(x, -1).values, lambda x: torch.max(x, -1).values, {}),
    "repeat": (lambda x: x.repeat(2, *([1] * x.ndim)), lambda x: x.repeat(2, *([1] * x.ndim)), {}),
    "unbind": (lambda x: nf.unbind(x)[-1], lambda x: torch.unbind(x)[-1], {}),
    "narrow": (lambda x: nf.narrow(x, 0, 0, 1), lambda x: torch.narrow(x, 0, 0, 1), {}),
    "repeat_interleave": (lambda x: x.repeat_interleave(2, 0), lambda x: x.repeat_interleave(2, 0), {}),
    "std": (lambda x: x.std(-1, keepdim=True), lambda x: x.std(-1, keepdim=True), {}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES)
@settings(max_examples=15, deadline=None)
def test_unary_functions_match_pytorch(name, seed, shape, dtype):
    ours, theirs, draw = UNARY[name]
    if name == "std" and shape[-1] < 2:
        shape = shape[:-1] + (2,)
    check_parity(ours, theirs, [randn(seed, shape, **draw)], dtype, loose=True)


MATRIX = {
    "tril": (lambda x: nf.tril(x), lambda x: torch.tril(x)),
    "triu 1": (lambda x: nf.triu(x, 1), lambda x: torch.triu(x, 1)),
    "tril -1 method": (lambda x: x.tril(-1), lambda x: x.tril(-1)),
    "t": (
        lambda x: x[..., 0, :, :].t() if x.ndim == 3 else x.t(),
        lambda x: x[..., 0, :, :].t() if x.ndim == 3 else x.t(),
    ),
}


@pytest.mark.parametrize("name", sorted(MATRIX))
@given(seed=SEEDS, shape=MATRICES, dtype=DTYPES)
@settings(max_examples=15, deadline=None)
def test_matrix_functions_match_pytorch(name, seed, shape, dtype):
    ours, theirs = MATRIX[name]
    check_parity(ours, theirs, [randn(seed, shape)], dtype)


@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, data=st.data())
@settings(max_examples=25, deadline=None)
def test_binary_functions_match_pytorch(seed, shape, dtype, data):
    a, b = randn(seed, shape), randn(seed + 1, shape)
    b[0] = a[0]  # a tie: each side gets half of the gradient, as PyTorch's
    for ours, theirs in (
        (nf.maximum, torch.maximum),
        (nf.minimum, torch.minimum),
        (lambda x, y: nf.max(x, y), lambda x, y: torch.max(x, y)),
        (lambda x, y: x.add(y, alpha=0.5), lambda x, y: x.add(y, alpha=0.5)),
        (lambda x, y: nf.sub(x, y, alpha=2), lambda x, y: torch.sub(x, y, alpha=2)),
        (lambda x, y: x.clamp(min=y), lambda x, y: x.clamp(min=y)),
        (lambda x, y: nf.remainder(x, y.abs() + 0.5), lambda x, y: torch.remainder(x, y.abs() + 0.5)),
    ):
        check_parity(ours, theirs, [a, b], dtype)


@given(seed=SEEDS, shape=MATRICES, dtype=DTYPES, data=st.data())
@settings(max_examples=20, deadline=None)
def test_index_functions_match_pytorch(seed, shape, dtype, data):
    rng = np.random.default_rng(seed)
    dim = data.draw(st.integers(0, len(shape) - 1))
    index = rng.integers(0, shape[dim], size=shape)  # repeats: gradients add up
    picks = rng.integers(0, shape[dim], size=3)
    src = randn(seed + 3, shape)
    for ours, theirs, arrays in (
        (lambda x: nf.gather(x, dim, nf.tensor(index)), lambda x: torch.gather(x, dim, torch.tensor(index)), [src]),
        (lambda x: x.index_select(dim, nf.tensor(picks)), lambda x: x.index_select(dim, torch.tensor(picks)), [src]),
        (
            lambda x, s: nf.scatter_add(x, dim, nf.tensor(index), s),
            lambda x, s: torch.scatter_add(x, dim, torch.tensor(index), s),
            [randn(seed, shape), src],
        ),
        (lambda x: x.topk(1, dim).values, lambda x: x.topk(1, dim).values, [src]),
        (lambda x: x.masked_select(nf.tensor(src > 0)), lambda x: x.masked_select(torch.tensor(src > 0)), [src]),
    ):
        check_parity(ours, theirs, arrays, dtype)
    # scatter: each place written once, so the result does not depend on which duplicate wins
    unique = np.argsort(rng.random(shape), axis=dim)
    check_parity(
        lambda x, s: nf.scatter(x, dim, nf.tensor(unique), s),
        lambda x, s: torch.scatter(x, dim, torch.tensor(unique), s),
        [randn(seed, shape), src],
        dtype,
    )


PRIMITIVES = {  # each new primitive, in float64, against central differences
    "Sin": lambda x: x.sin(),
    "Cos": lambda x: x.cos(),
    "Log1p": lambda x: (x * x).log1p(),
    "Expm1": lambda x: x.expm1(),
    "Maximum": lambda x: nf.maximum(x, x.flip(0)),
    "Copy": lambda x: x.clone() * x,
    "Cumsum": lambda x: x.cumsum(-1),
    "Gather": lambda x: x.gather(-1, nf.tensor(np.zeros(x.shape, np.int64))),
    "ScatterAdd": lambda x: nf.zeros(x.shape, dtype=np.float64).scatter_add(
        -1, nf.tensor(np.zeros(x.shape, np.int64)), x
    ),
    "SetItem": lambda x: _assigned(x),
    "Scatter": lambda x: (x * 2).scatter(-1, nf.tensor(np.zeros(x.shape[:-1] + (1,), np.int64)), x[..., :1] ** 2),
}


def _assigned(x):
    y = x * 1.5
    y[0] = x[-1] ** 2  # a graph through index assignment: both sides of it
    return y


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_new_primitives_pass_gradcheck(name):
    x = nf.tensor(randn(3, (3, 4)) + 0.1, dtype=np.float64, requires_grad=True)
    assert gradcheck(PRIMITIVES[name], [x])


# --- in place -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [
        lambda t, o: t.add_(o, alpha=2),
        lambda t, o: t.sub_(o),
        lambda t, o: t.mul_(o),
        lambda t, o: t.div_(o.abs() + 1),
        lambda t, o: t.copy_(o),
        lambda t, o: t.clamp_(-0.5, 0.5),
        lambda t, o: t.masked_fill_(o > 0, 3.0),
        lambda t, o: t.fill_(2.0),
        lambda t, o: t.zero_(),
        lambda t, o: t.pow_(2),
        lambda t, o: t.__iadd__(o),
        lambda t, o: t.__imul__(o),
        lambda t, o: t.index_fill_(1, _index(t), -1.0),
        lambda t, o: t.scatter_(1, _index(t).reshape(1, -1).expand(t.shape[0], -1), 7.0),
    ],
)
def test_in_place_ops_in_the_middle_of_a_graph_give_pytorchs_values_and_gradients(op):
    a, b = randn(0, (3, 4)), randn(1, (3, 4))

    def run(lib, tensor):
        x, o = tensor(a, requires_grad=True), tensor(b, requires_grad=True)
        y = x * 3  # not a leaf: written in place
        out = op(y, o)
        assert out is y  # in place returns the tensor itself
        loss = (y * tensor(np.arange(12.0).reshape(3, 4))).sum()
        loss.backward()
        return y.detach().numpy(), x.grad.numpy(), None if o.grad is None else o.grad.numpy()

    ours = run(nf, lambda v, requires_grad=False: nf.tensor(v, dtype=np.float64, requires_grad=requires_grad))
    theirs = run(
        torch, lambda v, requires_grad=False: torch.tensor(v, dtype=torch.float64, requires_grad=requires_grad)
    )
    for got, want in zip(ours, theirs):
        if want is None:
            assert got is None or not got.any()
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _index(t):
    return nf.tensor([0, 2]) if isinstance(t, nf.Tensor) else torch.tensor([0, 2])


@given(seed=SEEDS, shape=MATRICES, kind=st.sampled_from(["int", "slice", "step", "mask", "array", "tensor value"]))
@settings(max_examples=30, deadline=None)
def test_index_assignment_as_pytorchs(seed, shape, kind):
    rng = np.random.default_rng(seed)
    a = randn(seed, shape)
    index = {
        "int": 0,
        "slice": (slice(None), slice(0, 1)),
        "step": (Ellipsis, slice(None, None, 2)),
        "mask": a > 0,
        "array": np.array(sorted(set(rng.integers(0, shape[0], 3).tolist()))),
        "tensor value": (slice(None), 0),
    }[kind]
    value_shape = np.empty(shape)[index].shape if kind != "mask" else ()

    def run(lib, tensor):
        x = tensor(a, requires_grad=True)
        v = tensor(randn(seed + 1, value_shape), requires_grad=True)
        t_index = lib.tensor(index) if isinstance(index, np.ndarray) else index
        y = x.clone()
        y[t_index] = v if kind != "int" else v * 2
        (y * tensor(randn(seed + 2, shape))).sum().backward()
        return y.detach().numpy(), x.grad.numpy(), v.grad.numpy()

    ours = run(nf, lambda d, requires_grad=False: nf.tensor(d, dtype=np.float64, requires_grad=requires_grad))
    theirs = run(
        torch, lambda d, requires_grad=False: torch.tensor(d, dtype=torch.float64, requires_grad=requires_grad)
    )
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_writing_into_a_view_rewrites_its_base_as_pytorch():
    def run(lib, tensor):
        x = tensor(randn(0, (3, 4)), requires_grad=True)
        y = x * 1.0
        row = y[1]  # a view of y
        row.mul_(3)  # changes y too, and y's gradient
        col = y.transpose(0, 1)[2]
        col += 1
        (y * y).sum().backward()
        return y.detach().numpy(), x.grad.numpy()

    ours = run(nf, lambda d, requires_grad=False: nf.tensor(d, dtype=np.float64, requires_grad=requires_grad))
    theirs = run(
        torch, lambda d, requires_grad=False: torch.tensor(d, dtype=torch.float64, requires_grad=requires_grad)
    )
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("case", ["base", "base_twice", "view_of_view", "sibling_view", "view_then_base", "gains_grad"])
def test_a_view_taken_before_its_base_changed_in_place_differentiates_the_new_base_as_pytorch(case):
    """A view shares its base's memory, so an in-place change of the base changes the view's
    values; its gradient must then run through the changed base too (PyTorch regenerates the
    view's history). The old history gave a silently wrong gradient."""

    def run(lib):
        x = lib.tensor(randn(3, (4, 3)), dtype=lib.float64, requires_grad=True)
        w = lib.tensor(randn(4, (4, 3)), dtype=lib.float64, requires_grad=True)
        if case == "gains_grad":  # the base required no grad until an in-place op with w
            h = lib.zeros(4, 3, dtype=lib.float64)
        else:
            h = x * 1.0
        view = h[1:]
        inner = view.transpose(0, 1)[1:] if case == "view_of_view" else view
        sibling = h[:2] if case == "sibling_view" else None
        if case == "view_then_base":
            view.mul_(2)
        h.mul_(w)
        if case == "base_twice":
            h.add_(x * x)
        loss = (inner * inner).sum()
        if sibling is not None:
            loss = loss + (sibling * 3).sum()
        loss.backward()
        return [t.grad.numpy() if t.grad is not None else np.zeros((4, 3)) for t in (x, w)]

    for got, want in zip(run(nf), run(torch)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_long_chain_of_stale_views_of_views_differentiates_the_new_base_as_pytorch():
    """Views of views a thousand deep, their base then changed in place: each takes the new
    history, without one Python frame per view (a RecursionError)."""

    def run(lib):
        x = lib.tensor(randn(5, (4,)), dtype=lib.float64, requires_grad=True)
        h = x * 1.0
        view = h
        for _ in range(1000):
            view = view[:]
        h.mul_(3)
        (view * view).sum().backward()
        return x.grad.numpy()

    np.testing.assert_allclose(run(nf), run(torch), rtol=1e-12)


@pytest.mark.parametrize("case", ["requires_grad", "setitem", "operand", "retain_grad", "retain_grad_before"])
def test_a_stale_view_reports_and_records_its_base_s_new_history_as_pytorch(case):
    """A view whose base changed in place is as PyTorch's (which regenerates its ``grad_fn`` when
    read): it requires grad once its base does, a write into it is recorded (an unrecorded one
    gave a silently wrong gradient), and ``retain_grad`` keeps its gradient."""

    def run(lib):
        x = lib.tensor(randn(6, (4,)), dtype=lib.float64, requires_grad=True)
        w = lib.tensor(randn(7, (4,)), dtype=lib.float64, requires_grad=True)
        if case in ("retain_grad", "retain_grad_before"):
            h = x * 1.0
        else:  # the base requires grad only after the in-place op with w
            h = lib.ones(4, dtype=lib.float64)
        view = h[1:]
        if case == "retain_grad_before":
            view.retain_grad()
        h.mul_(w)
        if case == "requires_grad":
            return [view.requires_grad, view.is_leaf, view.grad_fn is None]
        if case == "setitem":  # the view's first use after the change
            view[0] = 7.0
            loss = (h * h).sum()
        elif case == "operand":
            plain = lib.zeros(3, dtype=lib.float64)
            plain.add_(view)
            loss = (plain * plain).sum()
        else:
            if case == "retain_grad":
                view.retain_grad()
            loss = (view * view).sum()
        loss.backward()
        grads = [x.grad, w.grad] + ([view.grad] if case.startswith("retain_grad") else [])
        return [g.numpy() if g is not None else None for g in grads]

    got, want = run(nf), run(torch)
    if case == "requires_grad":
        assert got == want == [True, False, False]
        return
    for g, p in zip(got, want):
        assert (g is None) == (p is None)
        if p is not None:
            np.testing.assert_allclose(g, p, rtol=1e-12)


@pytest.mark.parametrize("change", ["with_grad", "under_no_grad", "leaf_under_no_grad", "the_view_itself"])
def test_a_view_made_under_no_grad_is_refused_once_its_base_changes_as_pytorch(change):
    """PyTorch forbids giving a view made under ``no_grad`` a history after its base (or the
    view itself) changed in place with gradients on: ambiguous (a constant, or a part of the
    base?). numformer had made it differentiable, or written into it unrecorded (a silently
    wrong gradient)."""
    for lib in (nf, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        h = x if change == "leaf_under_no_grad" else x * 1.0
        with lib.no_grad():
            view = h[1:]
        with pytest.raises(RuntimeError, match="created in no_grad mode"):
            if change == "the_view_itself":
                view.mul_(2)
            else:
                with lib.set_grad_enabled(change == "with_grad"):
                    h.mul_(3)
                (view * 2).sum().backward()


def test_a_view_made_under_no_grad_stays_usable_where_pytorch_allows_it():
    """Its base changed, it is still read under ``no_grad``; and when nothing requires grad it
    is no view PyTorch refuses."""
    for lib in (nf, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        h = x * 1.0
        with lib.no_grad():
            view = h[1:]
        h.mul_(3)
        with lib.no_grad():
            assert (view * 2).sum().item() == 30.0
        plain = lib.ones(3)
        with lib.no_grad():
            view = plain[1:]
        plain.mul_(2)
        assert not (view * 2).requires_grad


@pytest.mark.parametrize(
    "case",
    ["mul_const", "const_mul", "div_by_const", "const_div", "matmul_const", "linear_frozen_weight", "linear_x_const"],
)
def test_an_input_no_gradient_reads_may_change_in_place_after_the_op_as_in_pytorch(case):
    """A product saves (and version-checks) only the factor the other side's gradient reads:
    ``y = h * 10; h.mul_(2)`` is fine when only h needs a gradient; a changed input some
    gradient does read still raises. Both libraries must agree on raising, and on the
    gradients when neither raises."""

    def run(lib):
        x = lib.tensor(randn(5, (2, 3)), dtype=lib.float64, requires_grad=True)
        w = lib.tensor(randn(6, (4, 3)), dtype=lib.float64, requires_grad=case == "linear_x_const")
        h = x * 1.0
        c = lib.tensor(randn(7, (2, 3)), dtype=lib.float64)
        changed = h
        y = {
            "mul_const": lambda: h * 10,
            "const_mul": lambda: c * h,
            "div_by_const": lambda: h / 10,
            "const_div": lambda: c / h,  # dL/dh reads h itself: changing it must raise
            "matmul_const": lambda: h @ c.t(),
            "linear_frozen_weight": lambda: lib.nn.functional.linear(h, w),
            "linear_x_const": lambda: lib.nn.functional.linear(c, w),  # dL/dw reads c
        }[case]()
        if case == "linear_x_const":
            changed = c
        changed.mul_(2)
        try:
            y.sum().backward()
        except RuntimeError as err:
            assert "modified by an inplace operation" in str(err)
            return "raises"
        return [t.grad.numpy() for t in (x, w) if t.grad is not None]

    ours, theirs = run(nf), run(torch)
    if theirs == "raises" or ours == "raises":
        assert ours == theirs
    else:
        assert len(ours) == len(theirs)
        for got, want in zip(ours, theirs):
            np.testing.assert_allclose(got, want, rtol=1e-12)


def test_view_shares_memory_or_raises_pytorchs_error_never_copies():
    """``view`` never copies: a shape the strides allow writes through to the tensor, one they do
    not (a transposed tensor flattened) raises PyTorch's error, where ``reshape`` copies."""
    for lib in (nf, torch):
        x = lib.arange(12.0).reshape(3, 4)
        v = x[:, 1:3].view(3, 1, 2)  # strides allow it
        v[0, 0, 0] = -1.0
        assert x[0, 1].item() == -1.0
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            x.t().view(-1)
        flat = x.t().reshape(-1)  # reshape copies instead
        flat[0] = 99.0
        assert x[0, 0].item() == 0.0
        assert tuple(lib.zeros(0, 3).t().view(0, 3).shape) == (0, 3)
        c = x.t().contiguous()  # a row-major copy: now view works
        assert c.is_contiguous() and not x.t().is_contiguous() and x.contiguous() is x
        assert c.view(-1).tolist() == x.t().reshape(-1).tolist()
    w = nf.tensor(randn(8, (3, 4)), requires_grad=True)
    (w.t().contiguous().view(-1) * nf.arange(12.0)).sum().backward()  # gradients pass the copy
    np.testing.assert_array_equal(w.grad.numpy(), np.arange(12.0).reshape(4, 3).T)


def test_a_linear_layer_of_the_wrong_width_raises_what_pytorch_code_catches():
    """``except RuntimeError`` around a PyTorch ``nn.Linear`` call catches numformer's error too
    (which is also the ValueError of numformer's other bad-input checks, naming both sizes)."""
    for lib in (nf, torch):
        with pytest.raises(RuntimeError):
            lib.nn.Linear(10, 3)(lib.randn(5, 7))
    with pytest.raises(ValueError, match=r"10 features in its last dim, got shape \(5, 7\)"):
        nf.nn.Linear(10, 3)(nf.randn(5, 7))


def test_a_value_changed_after_backward_saved_it_is_refused_as_in_pytorch():
    for lib in (nf, torch):
        x = lib.ones(3, requires_grad=True)
        y = x * 2
        z = y.sin()  # sin saves its input, y
        y.add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            z.sum().backward()
        w = x * 2
        e = w.exp()  # exp saves its output, not w: changing w is fine
        w.add_(1)
        e.sum().backward()
        # a leaf that requires grad cannot be written in place while the graph records
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            x.add_(1)
        with lib.no_grad():
            x.add_(1)  # an optimiser's step
    p = nf.ones(3, requires_grad=True)
    q = p * p
    with nf.no_grad():
        p.sub_(0.5)  # the weights of a graph changed before its backward: PyTorch refuses too
    with pytest.raises(RuntimeError, match=r"used by Mul is at version 1; expected version 0"):
        q.sum().backward()


def test_data_and_grad_are_tensors_and_data_is_outside_the_graph():
    p = nf.nn.Parameter(nf.ones(3))
    (p * p).sum().backward()
    assert isinstance(p.grad, nf.Tensor) and isinstance(p.data, nf.Tensor)
    p.data.add_(p.grad, alpha=-0.5)  # word_language_model's update
    np.testing.assert_array_equal(p.numpy(), [0.0, 0.0, 0.0])
    assert p.data.requires_grad is False and p.data.grad_fn is None
    clone = p.data.clone()
    clone.add_(1)
    np.testing.assert_array_equal(p.numpy(), [0.0, 0.0, 0.0])
    p.data = nf.full((3,), 4.0)
    assert p.tolist() == [4.0, 4.0, 4.0] and p.requires_grad
    nf.nn.init.xavier_normal_(p.data.reshape(1, 3))  # an init on .data reaches the parameter
    assert p.tolist() != [4.0, 4.0, 4.0]


# --- dtypes, constructors, generators -----------------------------------------------------------


def test_dtype_names_and_conversions_as_pytorchs():
    x = nf.tensor([1.7, -2.2])
    assert x.long().dtype == nf.long == nf.int64 and x.long().tolist() == torch.tensor([1.7, -2.2]).long().tolist()
    assert x.double().dtype == nf.float64 and x.int().dtype == nf.int32 and x.bool().dtype == nf.bool_
    assert x.half().dtype == nf.float16 and x.byte().dtype == nf.uint8
    assert x.type(nf.long).dtype == nf.long and x.type("torch.LongTensor").dtype == nf.long
    assert x.type() == "numformer.FloatTensor" and x.type_as(nf.tensor([1])).dtype == nf.int64
    assert nf.LongTensor([1, 2]).dtype == nf.int64 and nf.FloatTensor(2, 3).shape == (2, 3)
    assert {"bfloat16": nf.bfloat16}["bfloat16"] is nf.bfloat16  # naming it never fails


def test_bfloat16_without_ml_dtypes_is_a_clear_error(monkeypatch):
    from numformer import backend

    missing = backend.MissingDtype("bfloat16", "pip install 'numformer[bf16]' (the ml_dtypes package)")
    monkeypatch.setattr(backend, "bfloat16", missing)
    with pytest.raises(TypeError, match=r"bfloat16: tensors of it need pip install 'numformer\[bf16\]'"):
        nf.zeros(2, dtype=missing)
    with pytest.raises(TypeError, match="ml_dtypes"):
        nf.tensor([1.0]).to("bfloat16")


def test_constructors_and_random_draws_as_pytorchs():
    g = nf.Generator().manual_seed(3)
    a = nf.randint(0, 10, (1000,), generator=g)
    assert a.dtype == nf.int64 and 0 <= int(a.min()) and int(a.max()) <= 9
    assert nf.randint(5, (2, 3)).shape == (2, 3)
    assert sorted(nf.randperm(6).tolist()) == list(range(6))
    g1, g2 = nf.Generator().manual_seed(7), nf.Generator().manual_seed(7)
    assert nf.randn(4, generator=g1).tolist() == nf.randn(4, generator=g2).tolist()
    assert nf.full((2, 2), 3).dtype == nf.int64 and nf.full((2,), 1.5).dtype == nf.float32
    assert nf.empty(2, 3).shape == (2, 3) and nf.zeros(2, 3).new_ones(4).tolist() == [1.0] * 4
    shared = np.arange(3.0)
    t = nf.from_numpy(shared)
    t[0] = 9  # from_numpy shares memory, as PyTorch's
    assert shared[0] == 9 and t.dtype == np.float64
    ii, jj = nf.meshgrid(nf.arange(2), nf.arange(3), indexing="ij")
    ti, tj = torch.meshgrid(torch.arange(2), torch.arange(3), indexing="ij")
    assert ii.tolist() == ti.tolist() and jj.tolist() == tj.tolist()
    probs = nf.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    draws = nf.multinomial(probs, 4, replacement=True, generator=nf.Generator().manual_seed(0))
    assert draws.shape == (2, 4) and set(draws[0].tolist()) == {1} and set(draws[1].tolist()) <= {0, 2}
    with pytest.raises(RuntimeError, match="cannot sample n_sample > prob_dist"):
        nf.multinomial(probs, 3)


def test_non_differentiable_functions_match_pytorch():
    a = randn(0, (4, 5)).astype(np.float32)
    x, t = nf.tensor(a), torch.tensor(a)
    for ours, theirs in (
        (x.argsort(-1), t.argsort(-1)),
        (x.argsort(0, descending=True), t.argsort(0, descending=True)),
        (x.topk(2).indices, t.topk(2).indices),
        (nf.nonzero(x > 0), torch.nonzero(t > 0)),
        ((x > 0) & (x < 1), (t > 0) & (t < 1)),
        ((x > 0) | (x < -1), (t > 0) | (t < -1)),
        ((x > 0) ^ (x < 1), (t > 0) ^ (t < 1)),
        (~(x > 0), ~(t > 0)),
        (x.argmax(1), t.argmax(1)),
        (nf.count_nonzero(x > 0, 1), torch.count_nonzero(t > 0, 1)),
    ):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert x.nelement() == t.nelement() and x.t().shape == tuple(t.t().shape)
    assert nf.equal(x, x.clone()) and nf.allclose(x, x + 1e-9)


def test_numpy_ufuncs_on_tensors_run_as_ops_with_gradients():
    x = nf.tensor([0.5, 1.0], requires_grad=True)
    y = np.sin(x) + np.maximum(x, 0.7) * np.log1p(x)
    assert isinstance(y, nf.Tensor)
    y.sum().backward()
    tx = torch.tensor([0.5, 1.0], requires_grad=True)
    (torch.sin(tx) + torch.maximum(tx, torch.tensor(0.7)) * torch.log1p(tx)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


# --- the same function on both sides, with PyTorch's signature -----------------------------------


def _torch_parameters(doc: str, name: str) -> list[list[tuple]]:
    """PyTorch's documented signatures of ``name`` (its docstring's first lines): per
    overload, ``[(parameter, default or None), ...]``."""
    import re

    found = []
    for line in doc.splitlines():
        m = re.match(rf"\s*(?:\.\. function:: )?{re.escape(name)}\((.*)\)\s*->", line)
        if not m:
            continue
        params, keyword_only = [], False
        for part in m.group(1).split(","):
            part = part.strip()
            if part == "*" or part.startswith("*"):
                keyword_only = True
                continue
            if not part or part == "/":
                continue
            key, _, default = part.partition("=")
            params.append((key.split(":")[0].strip(), default.strip() or None, keyword_only))
        found.append(params)
    return found


# arguments PyTorch takes that its docstrings do not list (an older form, another overload)
UNDOCUMENTED = {"var": {"unbiased"}, "std": {"unbiased"}, "scatter": {"value"}}


def test_every_function_of_the_table_is_on_both_sides_with_pytorchs_argument_names():
    """The table's functions are both ``numformer.NAME`` and ``Tensor.NAME`` where PyTorch has
    both; each argument numformer takes is one of PyTorch's, by name, in its place."""
    import inspect

    from numformer.functions import TABLE

    checked = 0
    for name, fn in TABLE.items():
        on_torch, on_tensor = hasattr(torch, name), hasattr(torch.Tensor, name)
        if on_torch:
            assert getattr(nf, name) is not None, name
        if on_tensor:
            assert hasattr(nf.Tensor, name), f"Tensor.{name} is missing"
        doc = getattr(getattr(torch, name, None), "__doc__", None) or ""
        overloads = _torch_parameters(doc, name)
        if not overloads:
            continue
        ours = [p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_POSITIONAL]
        names = {p for overload in overloads for p, _, _ in overload}
        names |= UNDOCUMENTED.get(name, set())
        for p in ours:
            assert p.name in names, f"{name}: argument {p.name!r} is not one of PyTorch's {sorted(names)}"
        positional = [p.name for p in ours if p.kind == p.POSITIONAL_OR_KEYWORD]
        assert any(positional == [q for q, _, k in overload if not k][: len(positional)] for overload in overloads), (
            f"{name}: positional arguments {positional}, PyTorch's {overloads}"
        )
        checked += 1
    assert checked >= 60, checked


@pytest.mark.parametrize(
    "draw",
    [
        lambda g: nf.randn(2, generator=g),
        lambda g: nf.randperm(3, generator=g),
        lambda g: nf.multinomial(nf.ones(3), 1, generator=g),
        lambda g: nf.zeros(2).uniform_(generator=g),
    ],
)
def test_every_generator_argument_is_resolved_alike(draw):
    """One resolution for every ``generator=``: a ``Generator`` or a NumPy generator draws the
    same stream; anything else is a TypeError naming what was given."""
    assert draw(nf.Generator().manual_seed(5)).tolist() == draw(np.random.default_rng(5)).tolist()
    with pytest.raises(TypeError, match="generator must be a numformer.Generator .*got int"):
        draw(5)


@pytest.mark.parametrize(
    "name", ["exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "sin", "cos", "tan", "erf", "sign"]
)
def test_maths_at_the_edges_of_its_domain_is_silent_and_pytorchs(name):
    """log(0) = -inf, sqrt(-1) = nan, exp(100) = inf in float32, ... without NumPy's
    RuntimeWarning (PyTorch never warns), forward and backward, with PyTorch's values."""
    import warnings

    x = np.array([0.0, -0.0, -1.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 100.0, -100.0, 0.5], dtype=np.float32)
    t = nf.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = getattr(nf, name)(t)
        out.backward(nf.ones_like(out))
    ref = torch.tensor(x, requires_grad=True)
    expected = getattr(torch, name)(ref)
    expected.backward(torch.ones_like(expected))
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6, atol=0, equal_nan=True)
    finite = np.isfinite(x) & np.isfinite(ref.grad.numpy())
    np.testing.assert_allclose(t.grad.numpy()[finite], ref.grad.numpy()[finite], rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        ([True, False, True, False], [1.0, 2.0, 3.0]),  # a mask with 2 places, 3 values
        ([True, False, True], 1.0),  # a mask of the wrong length
        ([0, 1], [1.0, 2.0, 3.0]),
        (5, 1.0),
        (None, None),  # reading with a mask of the wrong length
    ],
)
def test_index_errors_are_pytorchs_not_numpys(index, value):
    """NumPy's messages ("NumPy boolean array indexing assignment cannot assign 3 input values
    to the 2 output values") and the whole index printed: PyTorch's error kind and words."""
    errors = []
    for lib in (torch, nf):
        t = lib.zeros(4)
        idx = lib.tensor(index) if isinstance(index, list) else index
        try:
            if value is None:
                t[lib.tensor([True, False, True])]
            else:
                t[idx] = lib.tensor(value) if isinstance(value, list) else value
        except (IndexError, RuntimeError) as err:
            errors.append((type(err), str(err)))
    assert len(errors) == 2 and errors[0] == errors[1], errors


def test_grad_mode_is_per_thread_as_in_pytorch():
    """A thread's no_grad (or inference_mode, set_grad_enabled) never changes what another
    thread records; a new thread starts with grad enabled, as PyTorch's threads do."""
    import threading

    import torch

    for lib in (nf, torch):
        w = lib.ones(3, requires_grad=True)
        entered, release = threading.Event(), threading.Event()
        seen = []

        def side(lib=lib, w=w, entered=entered, release=release, seen=seen):
            seen.append(lib.is_grad_enabled())  # a new thread: enabled
            with lib.no_grad(), lib.inference_mode():
                entered.set()
                release.wait(10)
                seen.append((lib.is_grad_enabled(), lib.is_inference_mode_enabled()))

        thread = threading.Thread(target=side)
        with lib.set_grad_enabled(False):
            thread.start()
            assert entered.wait(10)
        try:
            assert lib.is_grad_enabled() and not lib.is_inference_mode_enabled()
            y = (w * 2).sum()
            assert y.requires_grad
            y.backward()
            assert w.grad.tolist() == [2.0, 2.0, 2.0]
        finally:
            release.set()
            thread.join()
        assert seen == [True, (False, True)], lib.__name__
