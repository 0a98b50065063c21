"""Every engine primitive: float64 gradcheck, and PyTorch parity (values and gradients) over
random shapes drawn by hypothesis, in float32 and float64.

Each spec draws its inputs from hypothesis ``data`` and returns ``(arrays, nf_fn, torch_fn)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import check_parity, randn
from numformer.nn import functional as F
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**31 - 1)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)
NONEMPTY = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)
TWO_PLUS = hnp.array_shapes(min_dims=1, max_dims=4, min_side=2, max_side=4)


def unary(nf_fn, torch_fn, shapes=SHAPES, **data_kw):
    def spec(data):
        x = randn(data.draw(SEEDS), data.draw(shapes), **data_kw)
        return [x], nf_fn, torch_fn

    return spec


def binary(nf_fn, torch_fn, a_kw=None, b_kw=None):
    def spec(data):
        shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=3))
        seed = data.draw(SEEDS)
        a = randn(seed, shapes.input_shapes[0], **(a_kw or {}))
        b = randn(seed + 1, shapes.input_shapes[1], **(b_kw or {}))
        return [a, b], nf_fn, torch_fn

    return spec


def reduction(name, shapes=NONEMPTY, **extra):
    def spec(data):
        x = randn(data.draw(SEEDS), data.draw(shapes))
        dims = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
        keep = data.draw(st.booleans())
        if dims is None:
            return [x], (lambda t: getattr(t, name)(**extra)), (lambda t: getattr(t, name)(**extra))
        return (
            [x],
            (lambda t: getattr(t, name)(dims, keepdim=keep, **extra)),
            (lambda t: getattr(t, name)(dims, keepdim=keep, **extra)),
        )

    return spec


def max_spec(data):
    x = randn(data.draw(SEEDS), data.draw(NONEMPTY))
    dim = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    keep = data.draw(st.booleans())
    if dim is None:
        return [x], (lambda t: t.max()), (lambda t: t.max())
    return [x], (lambda t: t.max(dim, keepdim=keep).values), (lambda t: t.max(dim, keepdim=keep).values)


def matmul_spec(data):
    seed = data.draw(SEEDS)
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    kind = data.draw(st.sampled_from(["2d", "batched", "broadcast", "vec_left", "vec_right", "linear"]))
    batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    a_shape, b_shape = {
        "2d": ((m, k), (k, n)),
        "batched": (batch.result_shape + (m, k), batch.result_shape + (k, n)),
        "broadcast": (batch.input_shapes[0] + (m, k), batch.input_shapes[1] + (k, n)),
        "vec_left": ((k,), batch.input_shapes[1] + (k, n)),
        "vec_right": (batch.input_shapes[0] + (m, k), (k,)),
        "linear": (batch.result_shape + (m, k), (k, n)),
    }[kind]
    return [randn(seed, a_shape), randn(seed + 1, b_shape)], (lambda a, b: a @ b), (lambda a, b: a @ b)


def permute_spec(data):
    x = randn(data.draw(SEEDS), data.draw(NONEMPTY))
    perm = data.draw(st.permutations(range(x.ndim)))
    return [x], (lambda t: t.permute(*perm)), (lambda t: t.permute(*perm))


def transpose_spec(data):
    x = randn(data.draw(SEEDS), data.draw(NONEMPTY))
    d0, d1 = (data.draw(st.integers(-x.ndim, x.ndim - 1)) for _ in range(2))
    return [x], (lambda t: t.transpose(d0, d1)), (lambda t: t.transpose(d0, d1))


def reshape_spec(data):
    x = randn(data.draw(SEEDS), data.draw(SHAPES))
    target = data.draw(st.sampled_from([(-1,), x.shape[::-1], (1, -1)]))
    return [x], (lambda t: t.reshape(target)), (lambda t: t.reshape(target))


def getitem_spec(data):
    x = randn(data.draw(SEEDS), data.draw(hnp.array_shapes(min_dims=2, max_dims=4, min_side=2)))
    kind = data.draw(st.sampled_from(["int", "slice", "step", "ellipsis", "array", "mask", "pair"]))
    if kind == "mask":
        mask = x > 0
        return [x], (lambda t: t[nf.Tensor(mask)]), (lambda t: t[torch.from_numpy(mask)])
    index = {
        "int": 1,
        "slice": slice(1, None),
        "step": (Ellipsis, slice(None, None, 2)),
        "ellipsis": (Ellipsis, 0),
        "array": np.array([0, 1, 0, 1]),  # repeats: backward must scatter-add
        "pair": (np.array([1, 0, 1]), slice(None)),
    }[kind]
    t_index = tuple(
        torch.from_numpy(i) if isinstance(i, np.ndarray) else i
        for i in (index if isinstance(index, tuple) else (index,))
    )
    return [x], (lambda t: t[index]), (lambda t: t[t_index])


def cat_spec(data):
    base = list(data.draw(NONEMPTY))
    dim = data.draw(st.integers(-len(base), len(base) - 1))
    other = list(base)
    other[dim] = data.draw(st.integers(1, 4))
    seed = data.draw(SEEDS)
    return (
        [randn(seed, tuple(base)), randn(seed + 1, tuple(other))],
        (lambda a, b: nf.cat([a, b], dim)),
        (lambda a, b: torch.cat([a, b], dim)),
    )


def stack_spec(data):
    shape = data.draw(SHAPES)
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    seed = data.draw(SEEDS)
    return (
        [randn(seed, shape), randn(seed + 1, shape)],
        (lambda a, b: nf.stack([a, b], dim)),
        (lambda a, b: torch.stack([a, b], dim)),
    )


def split_spec(data):
    x = randn(data.draw(SEEDS), data.draw(NONEMPTY))
    dim = data.draw(st.integers(0, x.ndim - 1))
    size = data.draw(st.integers(1, x.shape[dim]))
    # Weighted sum of the pieces so every piece's gradient is exercised.
    return (
        [x],
        (lambda t: sum((p * (i + 1)).sum() for i, p in enumerate(t.split(size, dim)))),
        (lambda t: sum((p * (i + 1)).sum() for i, p in enumerate(t.split(size, dim)))),
    )


def expand_spec(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, max_dims=3, max_side=3))
    x = randn(data.draw(SEEDS), shapes.input_shapes[0])
    target = list(shapes.result_shape)
    lead = len(target) - x.ndim
    for i in range(lead, len(target)):  # -1 keeps an existing dim's size, as PyTorch's
        if data.draw(st.booleans()):
            target[i] = -1
    as_list = not target or data.draw(st.booleans())  # one sequence or separate sizes

    def expand(t):
        return t.expand(target) if as_list else t.expand(*target)

    return [x], expand, expand


def where_spec(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3))
    seed = data.draw(SEEDS)
    cond = np.asarray(randn(seed + 2, shapes.input_shapes[2]) > 0)
    a, b = randn(seed, shapes.input_shapes[0]), randn(seed + 1, shapes.input_shapes[1])
    return (
        [a, b],
        (lambda x, y: nf.where(nf.Tensor(cond), x, y)),
        (lambda x, y: torch.where(torch.from_numpy(cond), x, y)),
    )


def masked_fill_spec(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, max_dims=3, max_side=3))
    x = randn(data.draw(SEEDS), shapes.result_shape)
    mask = np.asarray(randn(1, shapes.input_shapes[0]) > 0)
    return (
        [x],
        (lambda t: t.masked_fill(nf.Tensor(mask), -2.5)),
        (lambda t: t.masked_fill(torch.from_numpy(mask), -2.5)),
    )


SPECS = {
    "add": binary(lambda a, b: a + b, lambda a, b: a + b),
    "sub": binary(lambda a, b: a - b, lambda a, b: a - b),
    "mul": binary(lambda a, b: a * b, lambda a, b: a * b),
    "div": binary(lambda a, b: a / b, lambda a, b: a / b, b_kw={"away_from_zero": True}),
    "pow": binary(lambda a, b: a**b, lambda a, b: a**b, a_kw={"positive": True}),
    "neg": unary(lambda t: -t, lambda t: -t),
    "scalar_ops": unary(lambda t: (2.0 - t) * 3 + 1.5 / (t * t + 1), lambda t: (2.0 - t) * 3 + 1.5 / (t * t + 1)),
    "pow_scalar": unary(lambda t: t**3 + t**2, lambda t: t**3 + t**2),
    "pow_fraction": unary(lambda t: t**0.5 + t**-1.5, lambda t: t**0.5 + t**-1.5, positive=True),
    "exp": unary(lambda t: t.exp(), torch.exp),
    "log": unary(lambda t: t.log(), torch.log, positive=True),
    "sqrt": unary(lambda t: t.sqrt(), torch.sqrt, positive=True),
    "abs": unary(lambda t: t.abs(), torch.abs, away_from_zero=True),
    "tanh": unary(lambda t: t.tanh(), torch.tanh),
    "sigmoid": unary(lambda t: t.sigmoid(), torch.sigmoid),
    "relu": unary(lambda t: t.relu(), torch.relu, away_from_zero=True),
    "gelu": unary(F.gelu, torch.nn.functional.gelu),
    "gelu_tanh": unary(
        lambda t: F.gelu(t, approximate="tanh"), lambda t: torch.nn.functional.gelu(t, approximate="tanh")
    ),
    "clamp": unary(lambda t: t.clamp(-0.5, 0.7), lambda t: t.clamp(-0.5, 0.7)),
    "sum": reduction("sum"),
    "mean": reduction("mean"),
    "var": reduction("var", shapes=TWO_PLUS),
    "max": max_spec,
    "matmul": matmul_spec,
    "reshape": reshape_spec,
    "permute": permute_spec,
    "transpose": transpose_spec,
    "expand": expand_spec,
    "getitem": getitem_spec,
    "cat": cat_spec,
    "stack": stack_spec,
    "split": split_spec,
    "where": where_spec,
    "masked_fill": masked_fill_spec,
}

LOOSE_OPS = {"matmul", "sum", "mean", "var", "split", "scalar_ops"}


@pytest.mark.parametrize("name", sorted(SPECS))
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_parity_with_torch(name, data, dtype):
    arrays, nf_fn, torch_fn = SPECS[name](data)
    check_parity(nf_fn, torch_fn, arrays, dtype, loose=name in LOOSE_OPS)
    # inference (nothing requires grad): some kernels take a shorter path that keeps no state
    check_parity(nf_fn, torch_fn, arrays, dtype, grad=False, loose=name in LOOSE_OPS)


@pytest.mark.parametrize("name", sorted(SPECS))
@given(data=st.data())
def test_gradcheck(name, data):
    arrays, nf_fn, _ = SPECS[name](data)
    inputs = [nf.Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(nf_fn, inputs)


def test_the_numpy_erf_is_accurate_to_each_dtypes_precision():
    """The fallback erf (SciPy absent): float64 against math.erf to a few ulp, float32 against the
    float64 result to about one float32 ulp, over the whole range and both signs."""
    import math

    from numformer.ops.elementwise import _erf_numpy_into

    x = np.concatenate([np.linspace(-7, 7, 20001), [-1.0, 1.0, 0.0, 1e-30, -1e-30, 4.0, 6.0, 30.0]])
    exact = np.array([math.erf(v) for v in x])
    got64 = _erf_numpy_into(x, np.empty_like(x))
    assert np.max(np.abs(got64 - exact) / np.maximum(np.abs(exact), 1e-300)) < 1e-14
    x32 = x.astype(np.float32)
    got32 = _erf_numpy_into(x32, np.empty_like(x32))
    assert got32.dtype == np.float32
    ref = np.array([math.erf(float(v)) for v in x32])
    assert np.max(np.abs(got32 - ref)) <= 2 * np.finfo(np.float32).eps


def test_the_float32_erf_is_accurate_odd_and_exact_at_the_ends():
    """GELU's float32 erf (one polynomial of log erfc): within 2 float32 ulp of 1 of the exact
    erf everywhere, odd, 0 at 0 with the right slope for tiny inputs, +-1 far out, NaN kept."""
    import math

    from numformer.ops.elementwise import _erf_float32_into

    x = np.concatenate([np.linspace(-9, 9, 400001), [0.0, -0.0, 1e-30, -1e-30, 1e-8, 4.0, 30.0, np.inf, -np.inf]])
    x = x.astype(np.float32)
    got = _erf_float32_into(x, np.empty_like(x))
    exact = np.array([math.erf(float(v)) for v in x])
    assert got.dtype == np.float32
    assert np.max(np.abs(got - exact)) <= 2 * np.finfo(np.float32).eps
    np.testing.assert_array_equal(_erf_float32_into(-x, np.empty_like(x)), -got)
    tiny = np.abs(x) < 1e-3
    np.testing.assert_allclose(got[tiny], exact[tiny], rtol=1e-6)
    assert got[x == np.inf].tolist() == [1.0] and got[x == -np.inf].tolist() == [-1.0]
    assert np.isnan(_erf_float32_into(np.array([np.nan], np.float32), np.empty(1, np.float32))).all()


def test_float32_exact_gelu_and_its_derivative_are_accurate_over_the_whole_line():
    """The float32 exact GELU (its own fit of Phi, not erf): output and derivative against the
    float64 formulas, within a few float32 ulp of the value where that is not tiny, and for
    negative inputs (where 1 + erf would cancel) about 2e-4 relative down to -5, 1e-2 in the tail;
    inf and NaN as before."""
    from scipy.special import ndtr

    from numformer.ops.elementwise import _gelu_exact_tile

    x = np.concatenate([np.linspace(-12, 12, 480001), [0.0, -0.0, 1e-30, -1e-30, 60.0, -60.0]]).astype(np.float32)
    out, d = np.empty_like(x), np.empty_like(x)
    _gelu_exact_tile(x, out, d)
    x64 = x.astype(np.float64)
    y, dy = x64 * ndtr(x64), ndtr(x64) + x64 * np.exp(-(x64**2) / 2) / np.sqrt(2 * np.pi)
    eps = float(np.finfo(np.float32).eps)
    assert out.dtype == d.dtype == np.float32
    err = np.abs(out - y)
    assert np.all(err <= 2 * eps * np.abs(x64))  # Phi to 2 ulp of 1 everywhere
    upper = x >= -2
    assert np.all(err[upper] <= 5 * eps * np.abs(y[upper]))  # a few ulp of the value
    lower = (x < -2) & (x > -5)  # Phi from 0.023 down to 2.9e-7: 1 + erf(x / sqrt 2) would lose 10%
    assert np.max(err[lower] / np.abs(y[lower])) < 3e-4
    tail = (x <= -5) & (x > -12)  # Phi down to 1.8e-33: float32's exp(-x^2 / 2) rounds more
    assert np.max(err[tail] / np.abs(y[tail])) < 1.5e-2
    assert np.max(np.abs(d - dy)) <= 4 * eps
    assert np.all(out[x == 0] == 0) and np.all(d[x == 0] == 0.5)
    plain = np.empty_like(x)
    _gelu_exact_tile(x, plain)  # without the derivative: the same values
    np.testing.assert_array_equal(plain, out)
    special = np.array([np.inf, -np.inf, np.nan], np.float32)
    got = np.empty_like(special)
    with np.errstate(invalid="ignore"):  # -inf * 0
        _gelu_exact_tile(special, got)
    ref = torch.nn.functional.gelu(torch.from_numpy(special)).numpy()
    assert got[0] == np.inf  # x Phi(x) -> inf (PyTorch's vectorised kernel gives NaN)
    np.testing.assert_array_equal(got[1:], ref[1:])  # -inf * 0 and NaN: NaN, as PyTorch


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("var", (1, 3)),
        ("std", (1, 3)),
        ("var", (3, 0)),
        ("softmax", (3, 0)),
        ("log_softmax", (3, 0)),
        ("sum", (3, 0)),
        ("mean", (3, 0)),
    ],
)
@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")  # PyTorch's own, for the reference
def test_reductions_at_degenerate_sizes_give_what_pytorch_gives(name, shape):
    import warnings

    x = np.random.default_rng(0).standard_normal(shape)
    ours, theirs = nf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    dim = 0 if name in ("var", "std") and shape[0] == 1 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from inside numformer either
        out = getattr(ours, name)(dim=dim)
        out.sum().backward()
    ref = getattr(theirs, name)(dim=dim)
    ref.sum().backward()
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), equal_nan=True)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), equal_nan=True)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_keeps_one_array_for_backward_never_its_input(approximate):
    # the derivative, computed in forward: the input (the MLP's widest activation) can be freed
    x = nf.tensor(randn(0, (70, 3000), np.float32), requires_grad=True)
    y = F.gelu(x * 2, approximate=approximate)
    kept = [a for a in vars(y._fn).values() if isinstance(a, np.ndarray)]
    assert [a.nbytes for a in kept] == [y.numpy().nbytes]
    y.backward(nf.ones_like(y))  # values and gradients: test_parity_with_torch, test_gradcheck
    assert x.grad.shape == x.shape and np.isfinite(x.grad.numpy()).all()
