"""The engine: Tensor basics, backward semantics, dtype policy, grad mode, seeding, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf


def test_gradient_accumulates_across_uses_and_calls():
    x = nf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x + x * 3).sum()  # x used three times: dy/dx = 2x + 3
    y.backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0, 9.0])
    (x * 2).sum().backward()  # a second backward adds to .grad, as in PyTorch
    np.testing.assert_allclose(x.grad, [7.0, 9.0, 11.0])


def test_shared_gradient_arrays_are_not_aliased():
    a = nf.ones(3, requires_grad=True)
    b = nf.ones(3, requires_grad=True)
    (a + b).sum().backward()  # add passes the same upstream array to both
    a.grad *= 10  # an optimiser scaling a.grad in place must not touch b.grad
    np.testing.assert_array_equal(b.grad, np.ones(3))


@st.composite
def basic_index(draw, shape):
    """A basic index into ``shape`` (0-d too): maybe a new axis (None) first, then per leading
    dim an int (negative too) or a slice (step 1, 2, -1 or -2; maybe empty), maybe an Ellipsis
    after them."""
    parts = [None] if draw(st.booleans()) else []
    for n in shape[: draw(st.integers(min(1, len(shape)), len(shape)))]:
        if draw(st.booleans()):
            parts.append(draw(st.integers(-n, n - 1)))
            continue
        start, stop = sorted(draw(st.lists(st.integers(0, n), min_size=2, max_size=2)))
        step = draw(st.sampled_from([1, 2, -1, -2]))
        if step < 0:  # the same elements, last first
            start, stop = (stop - 1, start - 1 if start else None) if stop else (0, 0)
        parts.append(slice(start, stop, step))
    if draw(st.booleans()):
        parts.append(Ellipsis)
    return tuple(parts)


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_views_gradients_meet_in_one_buffer_with_the_plain_sums_values(data):
    """Several basic-index views of one tensor (overlapping, repeated, next to uses of the whole
    tensor) on the way to a leaf and to an inner node: the engine writes their gradients into one
    buffer (``PlacedGrad``). Integer-valued weights make every sum exact in any order, so the
    gradients must equal the reference, each weight added at its view's place, exactly."""
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    views = data.draw(st.lists(st.booleans(), min_size=1, max_size=5))  # False: the whole tensor
    indexes = [data.draw(basic_index(shape)) if view else None for view in views]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x0 = rng.integers(-4, 5, shape).astype(np.float64)
    weights = [rng.integers(-3, 4, x0.shape if i is None else x0[i].shape).astype(np.float64) for i in indexes]
    expected = np.zeros(shape)
    for index, w in zip(indexes, weights):
        if index is None:
            expected += w
        else:
            expected[index] += w  # a basic index is a view: the sum lands in place
    for through_inner_node in (False, True):
        x = nf.tensor(x0, requires_grad=True)
        h = x * 1.0 if through_inner_node else x
        if through_inner_node:
            h.retain_grad()
        total = sum(((h if i is None else h[i]) * nf.tensor(w)).sum() for i, w in zip(indexes, weights))
        total.backward()
        np.testing.assert_array_equal(x.grad.numpy(), expected)
        if through_inner_node:
            np.testing.assert_array_equal(h.grad.numpy(), expected)


@pytest.mark.parametrize(("dtype", "wide"), [(np.float32, np.float64), (np.float16, np.float32)])
@pytest.mark.parametrize("whole_use", [False, True])
def test_views_gradients_of_a_wider_dtype_are_rounded_to_the_tensors_dtype_first(dtype, wide, whole_use):
    """A view of a tensor times a wider-dtype weight gets a wider gradient; as before views'
    gradients met in one buffer, and as PyTorch (which casts a gradient to its input's dtype),
    each is rounded to the tensor's dtype before the sum. Element 1 gets 1 from one view and
    half an ulp of 1 plus a little from the other: rounded first, that is a tie (1); summed wide,
    it rounds up. A whole use with zero weights (a wider full-size gradient among the views')
    changes nothing, in any order of arrival."""
    half_ulp = float(np.finfo(dtype).eps) / 2
    little = half_ulp * 2.0 ** -(np.finfo(dtype).nmant + 2)  # lost when rounded to dtype, not when wide
    w1, w2, w0 = np.ones(2, wide), np.array([half_ulp + little, 1.0], wide), np.zeros(3, wide)
    x0 = np.ones(3, dtype)

    def loss(lib, h):
        total = (h[0:2] * lib.tensor(w1)).sum() + (h[1:3] * lib.tensor(w2)).sum()
        return total + (h * lib.tensor(w0)).sum() if whole_use else total

    xt = torch.tensor(x0, requires_grad=True)
    loss(torch, xt).backward()
    assert xt.grad[1].item() == 1.0
    for through_inner_node in (False, True):
        x = nf.tensor(x0, requires_grad=True)
        h = x * 1.0 if through_inner_node else x
        if through_inner_node:
            h.retain_grad()
        loss(nf, h).backward()
        assert x.grad.dtype == xt.grad.numpy().dtype
        np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())
        if through_inner_node:
            np.testing.assert_array_equal(h.grad.numpy(), xt.grad.numpy())


def test_broadcast_gradients_reduce_to_input_shape():
    a = nf.randn(4, 1, 3, requires_grad=True)
    b = nf.randn(5, 1, requires_grad=True)
    (a * b).sum().backward()
    ta = torch.tensor(a.numpy(), requires_grad=True)
    tb = torch.tensor(b.numpy(), requires_grad=True)
    (ta * tb).sum().backward()
    assert a.grad.shape == (4, 1, 3) and b.grad.shape == (5, 1)
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-5)
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-5)


def test_deep_graph_has_no_recursion_limit():
    x = nf.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001**5000, rtol=1e-3)


def test_float32_default_and_dtype_preserved_end_to_end():
    x = nf.randn(3, 4, requires_grad=True)
    assert x.dtype == np.float32
    y = ((x * 2.5 + np.float64(1.0)) ** 2 / 3.0).exp().log().sqrt().tanh().mean()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32
    assert nf.tensor([1.0, 2.0]).dtype == np.float32
    assert nf.tensor(np.zeros(2)).dtype == np.float64  # NumPy arrays keep their dtype


def test_set_default_dtype_float64():
    nf.set_default_dtype("float64")
    assert nf.get_default_dtype() == np.float64
    assert nf.randn(2).dtype == np.float64 and nf.tensor([1.0]).dtype == np.float64
    with pytest.raises(TypeError, match="expected float32 or float64, got int64"):
        nf.set_default_dtype(np.int64)


def test_no_grad_and_detach():
    x = nf.randn(3, requires_grad=True)
    with nf.no_grad():
        y = x * 2
        with nf.enable_grad():
            z = x * 2
    assert not y.requires_grad and z.requires_grad
    assert not x.detach().requires_grad and x.detach().numpy() is x.numpy()

    @nf.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad and nf.is_grad_enabled()


def test_manual_seed_makes_draws_reproducible():
    nf.manual_seed(123)
    a = nf.randn(5).numpy()
    state = nf.get_rng_state()
    b = nf.rand(3).numpy()
    nf.manual_seed(123)
    np.testing.assert_array_equal(nf.randn(5).numpy(), a)
    nf.set_rng_state(state)
    np.testing.assert_array_equal(nf.rand(3).numpy(), b)


def test_public_names_exist_and_allocator_tuning_is_opt_in():
    for name in nf.__all__:
        assert hasattr(nf, name), name
    assert isinstance(nf.tune_allocator(), bool)  # True on glibc; harmless to call twice


def test_tensor_api_names():
    x = nf.tensor([[1.0, 5.0], [3.0, 2.0]], requires_grad=True)
    values, indices = x.max(dim=1)
    np.testing.assert_array_equal(values.numpy(), [5.0, 3.0])
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    assert x.sum().item() == 11.0 and x.shape == (2, 2) and x.dtype == np.float32
    assert x.T.shape == (2, 2) and x.unsqueeze(0).shape == (1, 2, 2)
    assert x.reshape(4).shape == (4,) and x.view(-1, 1).shape == (4, 1)
    assert x.min().item() == 1.0 and x.argmax().item() == 1
    assert [p.shape for p in x.split(1, dim=0)] == [(1, 2), (1, 2)]
    assert repr(nf.tensor([1.0])).startswith("tensor(")


def test_retain_grad_and_second_backward():
    x = nf.randn(3, requires_grad=True)
    h = x * 2
    h.retain_grad()
    y = h.sum()
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(h.grad, np.ones(3))
    y.backward()  # allowed: the graph was retained
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


# --- bad input -------------------------------------------------------------------------------


def test_elementwise_shape_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: input shape \(2, 3\) and other shape \(4,\)"):
        nf.randn(2, 3) + nf.randn(4)
    with pytest.raises(ValueError, match=r"mul: input shape \(3,\) and other shape \(2,\)"):
        nf.randn(3) * nf.randn(2)


def test_matmul_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: input shape \(2, 3\) and other shape \(4, 5\)"):
        nf.randn(2, 3) @ nf.randn(4, 5)
    with pytest.raises(ValueError, match=r"batch dims .* \(2, 2, 3\) .* \(3, 3, 4\)"):
        nf.randn(2, 2, 3) @ nf.randn(3, 3, 4)
    with pytest.raises(TypeError, match=r"matmul: input dtype float32 and other dtype float64"):
        nf.randn(2, 3) @ nf.randn(3, 2, dtype=np.float64)


def test_backward_on_non_scalar_needs_grad():
    y = nf.randn(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*shape \(3,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient must have the tensor's shape \(3,\), got \(2,\)"):
        y.backward(np.ones(2))


def test_requires_grad_on_integer_data():
    with pytest.raises(TypeError, match="only floating-point tensors .* got dtype int64"):
        nf.tensor([1, 2], requires_grad=True)


def test_reshape_and_mask_errors():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape tensor of shape \(2, 3\)"):
        nf.randn(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"masked_fill: mask shape \(3,\) does not broadcast"):
        nf.randn(2, 2).masked_fill(np.ones(3, dtype=bool), 0.0)
    with pytest.raises(TypeError, match="masked_fill: mask must be a boolean tensor"):
        nf.randn(2).masked_fill(np.ones(2), 0.0)
    with pytest.raises(ValueError, match=r"sum: dim 2 is out of range for a tensor with 2 dims"):
        nf.randn(2, 2).sum(dim=2)
    with pytest.raises(RuntimeError, match=r"cat: tensor 0 has shape \(2, 3\) but tensor 1"):
        nf.cat([nf.randn(2, 3), nf.randn(2, 4)], dim=0)
