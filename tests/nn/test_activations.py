"""Activations (functional and modules) against PyTorch over hypothesis shapes, float32 and
float64: values and input gradients; a float64 gradcheck for each new primitive; PyTorch's
choices at the kinks; ``inplace=``; softmax's ``dim=None`` and ``dtype=``; the errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import LOOSE, TOL, check_parity, randn
from numformer import nn
from numformer.nn import functional as F
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([np.float32, np.float64])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)

# name -> (keyword arguments, the same for both frameworks)
ACTIVATIONS = {
    "leaky_relu": {"negative_slope": 0.2},
    "elu": {"alpha": 0.7},
    "selu": {},
    "celu": {"alpha": 0.5},
    "softplus": {"beta": 2.0, "threshold": 4.0},
    "hardtanh": {"min_val": -1.5, "max_val": 0.5},
    "relu6": {},
    "logsigmoid": {},
    "hardsigmoid": {},
    "hardswish": {},
    "mish": {},
    "softsign": {},
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@settings(max_examples=12)
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES)
def test_activation_parity_and_gradcheck(name, seed, shape, dtype):
    """Inputs spread over [-8, 8]: both sides of every kink and softplus's threshold."""
    kw = ACTIVATIONS[name]
    x = randn(seed, shape, away_from_zero=True) * 4
    fn, t_fn = (lambda t: getattr(F, name)(t, **kw)), (lambda t: getattr(TF, name)(t, **kw))
    if name == "hardsigmoid":
        _check_hardsigmoid(x, dtype)
    else:
        check_parity(fn, t_fn, [x], dtype)
    if dtype == np.float64:
        kinks = {"hardtanh": (-1.5, 0.5), "relu6": (0, 6), "hardsigmoid": (-3, 3), "hardswish": (-3, 3)}
        for k in kinks.get(name, ()):  # finite differences straddling a kink disagree with any slope
            x = np.where(np.abs(x - k) < 1e-3, x + 1e-2, x)
        assert gradcheck(lambda t: getattr(F, name)(t, **kw), [nf.Tensor(x, requires_grad=True)])


def _check_hardsigmoid(x, dtype):
    """PyTorch's hardsigmoid backward multiplies by 1/6 rounded to float32, 3e-8 relative off in
    float64: values at parity's tolerance, the gradient exactly 1/6 inside (-3, 3) and within 1e-7
    of PyTorch's."""
    check_parity(F.hardsigmoid, TF.hardsigmoid, [x], dtype, grad=False)
    t = nf.Tensor(x.astype(dtype), requires_grad=True)
    F.hardsigmoid(t).sum().backward()
    inside = (x.astype(dtype) > -3) & (x.astype(dtype) < 3)
    np.testing.assert_array_equal(t.grad.numpy(), np.where(inside, dtype(1) / dtype(6), 0).astype(dtype))
    ref = torch.tensor(x.astype(dtype), requires_grad=True)
    TF.hardsigmoid(ref).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), ref.grad.numpy(), rtol=1e-7)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_slopes_at_the_kinks_are_pytorchs(name):
    """At x = 0 and at the bounds each gradient takes the side PyTorch takes."""
    kw = ACTIVATIONS[name]
    x = np.array([-3.0, -1.5, 0.0, 0.5, 3.0, 6.0, 2.0, -30.0, 30.0])
    if name == "hardsigmoid":
        return _check_hardsigmoid(x, np.float64)
    check_parity(lambda t: getattr(F, name)(t, **kw), lambda t: getattr(TF, name)(t, **kw), [x], np.float64)


@settings(max_examples=12)
@given(seed=SEEDS, dtype=DTYPES, dim=st.integers(-2, 1))
def test_glu_and_softmin(seed, dtype, dim):
    x = randn(seed, (2, 4))
    check_parity(lambda t: F.glu(t, dim), lambda t: TF.glu(t, dim), [x], dtype)
    check_parity(lambda t: F.softmin(t, dim), lambda t: TF.softmin(t, dim), [x], dtype)
    if dtype == np.float64:
        assert gradcheck(lambda t: F.glu(t, dim), [nf.Tensor(x, requires_grad=True)])


def test_huge_inputs_stay_finite():
    x = np.array([-1e4, -50.0, 50.0, 1e4], dtype=np.float32)
    for name in ("softplus", "logsigmoid", "mish", "elu", "selu", "celu"):
        t = nf.Tensor(x, requires_grad=True)
        y = getattr(F, name)(t)
        y.sum().backward()
        ref = getattr(TF, name)(torch.from_numpy(x))
        np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-6, err_msg=name)
        assert np.isfinite(t.grad.numpy()).all(), name


MODULES = [
    ("Sigmoid", {}),
    ("Softmax", {"dim": 1}),
    ("LogSoftmax", {"dim": -1}),
    ("Softmin", {"dim": 0}),
    ("LeakyReLU", {"negative_slope": 0.3}),
    ("ELU", {"alpha": 2.0}),
    ("CELU", {"alpha": 2.0}),
    ("SELU", {}),
    ("Hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    ("ReLU6", {}),
    ("Softplus", {"beta": 0.5, "threshold": 3.0}),
    ("LogSigmoid", {}),
    ("Hardsigmoid", {}),
    ("Hardswish", {}),
    ("Mish", {}),
    ("Softsign", {}),
    ("GLU", {"dim": 0}),
    ("ReLU", {}),
    ("Tanh", {}),
    ("GELU", {"approximate": "tanh"}),
    ("Identity", {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kw"), MODULES, ids=[m for m, _ in MODULES])
def test_activation_modules_match_torch(name, kw, dtype):
    x = randn(3, (4, 6), away_from_zero=True) * 3
    if name == "Hardsigmoid":
        _check_hardsigmoid(x, dtype)
    else:
        check_parity(getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw), [x], dtype)
    assert repr(getattr(nn, name)(**kw)).startswith(name)


@pytest.mark.parametrize(
    ("name", "function"), [("ReLU", "relu"), ("LeakyReLU", "leaky_relu"), ("ELU", "elu"), ("Hardtanh", "hardtanh")]
)
def test_inplace_writes_into_the_input_as_pytorch(name, function):
    """``inplace=True``: the input itself is returned, holding the result; gradients still reach
    what came before (through the recorded write); a leaf that requires grad refuses, as PyTorch's."""
    x = randn(0, (3, 4))
    a = nf.Tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    h, th = a * 2, b * 2
    out, t_out = getattr(nn, name)(inplace=True)(h), getattr(torch.nn, name)(inplace=True)(th)
    assert out is h
    np.testing.assert_allclose(h.numpy(), th.detach().numpy(), **TOL[np.float64])
    out.sum().backward()
    t_out.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **TOL[np.float64])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        getattr(nn, name)(inplace=True)(nf.Tensor(x, requires_grad=True))
    with nf.no_grad():
        plain = nf.Tensor(x.copy())
        assert getattr(F, function)(plain, inplace=True) is plain
        np.testing.assert_allclose(plain.numpy(), getattr(TF, function)(torch.tensor(x)).numpy())


def test_dropout_inplace_and_channel_dropout():
    x = nf.ones(20, 30, 4, 5)
    nf.manual_seed(0)
    y = F.dropout2d(x, 0.4)
    per_map = y.numpy().reshape(20, 30, -1)
    assert ((per_map == 0).all(-1) | (per_map == per_map[..., :1]).all(-1)).all()  # whole maps kept or zeroed
    assert abs((per_map[..., 0] == 0).mean() - 0.4) < 0.06
    np.testing.assert_allclose(per_map[per_map != 0], 1 / 0.6, rtol=1e-6)
    z = F.dropout1d(nf.ones(8, 50, 7), 0.5)
    assert ((z.numpy() == 0).all(-1) | (z.numpy() != 0).all(-1)).all()
    assert F.dropout1d(z, 0.5, training=False) is z
    h = nf.ones(4, 5) * 1
    assert F.dropout(h, 0.5, inplace=True) is h and ((h.numpy() == 0) | (h.numpy() == 2)).all()
    d = nn.Dropout2d(0.3).eval()
    assert d(x) is x
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d"):
        F.dropout2d(nf.ones(2, 3, 4), 0.5)
    with pytest.raises(ValueError, match=r"dropout1d: input must be \(N, C, L\) or \(C, L\), got shape \(2,\)"):
        F.dropout1d(nf.ones(2), 0.5)
    assert repr(nn.Dropout(0.2, inplace=True)) == "Dropout(p=0.2, inplace=True)"


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_softmax_implicit_dim_and_dtype_as_pytorch(name, ndim):
    """``dim=None`` picks PyTorch's legacy dim (0 for 1 or 3 dims, else 1) with its warning;
    ``dtype=`` casts the input first."""
    x = randn(1, (2, 3, 4, 5)[:ndim])
    with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}"):
        ours = getattr(F, name)(nf.Tensor(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(TF, name)(torch.tensor(x))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), **TOL[np.float64])
    cast = getattr(F, name)(nf.Tensor(x.astype(np.float32)), dim=-1, dtype=nf.float64)
    assert cast.dtype == np.float64
    ref = getattr(TF, name)(torch.tensor(x.astype(np.float32)), dim=-1, dtype=torch.float64)
    np.testing.assert_allclose(cast.numpy(), ref.numpy(), **LOOSE[np.float64])


def test_flatten_and_unflatten_modules():
    x = randn(0, (2, 3, 4, 5))
    check_parity(nn.Flatten(), torch.nn.Flatten(), [x], np.float64)
    check_parity(nn.Flatten(0, 2), torch.nn.Flatten(0, 2), [x], np.float64)
    check_parity(nn.Unflatten(2, (2, -1)), torch.nn.Unflatten(2, (2, -1)), [x], np.float64)
    with pytest.raises(ValueError, match=r"Unflatten: unflattened_size \(3, 2\) does not hold dim 1 of size 3"):
        nn.Unflatten(1, (3, 2))(nf.Tensor(x))


def test_bad_activation_arguments_get_one_clear_error():
    x = nf.randn(2, 3)
    with pytest.raises(TypeError, match="leaky_relu: input must be a floating tensor, got dtype int64"):
        F.leaky_relu(nf.tensor([1, 2]))
    with pytest.raises(ValueError, match="hardtanh: min_val must be <= max_val, got min_val=2 and max_val=1"):
        F.hardtanh(x, 2, 1)
    with pytest.raises(ValueError, match="Hardtanh: min_val must be <= max_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="celu: alpha must not be 0"):
        F.celu(x, 0.0)
    with pytest.raises(ValueError, match=r"glu: input's dim -1 must have an even size \(halved\), got shape \(2, 3\)"):
        F.glu(x)
    with pytest.raises(ValueError, match="softmax: dim 2 is out of range for a tensor with 2 dims"):
        nn.Softmax(dim=2)(x)
