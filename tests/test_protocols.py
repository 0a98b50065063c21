"""A PyTorch user's habits: the package's namespaces and the Tensor's Python and NumPy protocols,
with PyTorch's values and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numformer as nf


def test_the_namespaces_hang_off_the_package():
    assert nf.nn.Linear and nf.nn.functional.gelu and nf.nn.utils.clip_grad_norm_ and nf.nn.init.zeros_
    assert nf.optim.AdamW and nf.optim.lr_scheduler.OneCycleLR and nf.utils.data.DataLoader


SCALARS = [[2.5], 0.0, [0.0], [[-3.0]], 7, [1]]


@pytest.mark.parametrize("value", SCALARS)
def test_one_element_tensors_convert_as_in_pytorch(value):
    ours, theirs = nf.tensor(value), torch.tensor(value)
    assert float(ours) == float(theirs) and int(ours) == int(theirs) and bool(ours) == bool(theirs)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda t: float(t([1.0, 2.0])), ValueError),
        (lambda t: int(t([1, 2])), ValueError),
        (lambda t: bool(t([1.0, 2.0])), RuntimeError),
        (lambda t: bool(t([])), RuntimeError),
        (lambda t: [10, 11][t(1.0)], TypeError),
        (lambda t: [10, 11][t([1, 0])], TypeError),
        (lambda t: f"{t([1.5]):.2f}", TypeError),
    ],
)
def test_conversions_refuse_what_pytorch_refuses(make, error):
    with pytest.raises(error):
        make(torch.tensor)
    with pytest.raises(error):
        make(nf.tensor)


def test_index_and_format():
    assert [10, 11, 12][nf.tensor(1)] == 11 and [10, 11, 12][nf.tensor([2])] == 12
    assert f"{nf.tensor(1.5):.2f}" == f"{torch.tensor(1.5):.2f}" == "1.50"
    assert f"{nf.tensor([1.5, 2.0])}" == repr(nf.tensor([1.5, 2.0]))


def test_numpy_sees_the_data_without_copying():
    t = nf.tensor([[1.0, 2.0]], requires_grad=True)
    a = np.asarray(t)
    assert type(a) is np.ndarray and a.dtype == np.float32 and np.shares_memory(a, t.array)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.array(t, copy=True) is not t.array


UNARY = {
    np.exp: torch.exp,
    np.log: torch.log,
    np.sqrt: torch.sqrt,
    np.tanh: torch.tanh,
    np.abs: torch.abs,
    np.negative: torch.neg,
    np.square: torch.square,
    np.reciprocal: torch.reciprocal,
}
BINARY = {
    np.add: torch.add,
    np.subtract: torch.sub,
    np.multiply: torch.mul,
    np.divide: torch.div,
    np.power: torch.pow,
    np.matmul: torch.matmul,
}


@pytest.mark.parametrize("ufunc", list(UNARY))
def test_unary_ufuncs_run_as_numformer_ops_with_gradients(ufunc):
    x = np.array([[0.5, 1.5], [2.0, 3.0]])
    t, ref = nf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = ufunc(t)
    assert isinstance(out, nf.Tensor) and out.requires_grad
    expected = UNARY[ufunc](ref)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(t.grad, ref.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("ufunc", list(BINARY))
def test_binary_ufuncs_with_an_array_on_either_side(ufunc):
    x = np.array([[0.5, 1.5], [2.0, 3.0]])
    a = np.array([[1.0, 2.0], [0.5, 4.0]])
    t = nf.tensor(x, requires_grad=True)
    for out, expected in ((ufunc(t, a), ufunc(x, a)), (ufunc(a, t), ufunc(a, x))):
        assert isinstance(out, nf.Tensor) and out.requires_grad
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    (ufunc(t, a).sum() + ufunc(a, t).sum()).backward()
    ref = torch.tensor(x, requires_grad=True)
    ta = torch.tensor(a)
    (BINARY[ufunc](ref, ta).sum() + BINARY[ufunc](ta, ref).sum()).backward()
    np.testing.assert_allclose(t.grad, ref.grad.numpy(), rtol=1e-12)
    assert (np.greater(t, a).numpy() == (x > a)).all() and (np.less(a, t).numpy() == (a < x)).all()


@pytest.mark.parametrize(
    "call", [lambda t: np.cbrt(t), lambda t: np.add.reduce(t), lambda t: np.exp(t, out=np.empty((2,), np.float32))]
)
def test_other_ufuncs_are_a_clear_type_error_never_an_object_array(call):
    with pytest.raises(TypeError, match="numformer"):
        call(nf.tensor([1.0, 2.0]))


@pytest.mark.parametrize(
    "expr",
    [
        lambda m: m.arange(4) / 4,
        lambda m: m.arange(3).exp(),
        lambda m: m.tensor([1, 2]) * 2.5,
        lambda m: m.arange(3) + m.ones(3),
        lambda m: m.arange(4) * 2,
        lambda m: m.tensor([3]) // 1 if m is torch else m.tensor([3]),
    ],
)
def test_integer_tensors_promote_as_in_pytorch(expr):
    ours, theirs = expr(nf), expr(torch)
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")


def test_a_zero_dim_gradient_is_a_tensor_of_an_array():
    t = nf.tensor(2.0, requires_grad=True)
    (t * t).backward()
    assert isinstance(t.grad, nf.Tensor) and isinstance(t.grad.array, np.ndarray)
    assert t.grad.shape == () and float(t.grad) == 4.0
