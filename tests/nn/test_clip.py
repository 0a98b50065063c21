"""Gradient clipping without overflow: better than PyTorch 2.13 here, on purpose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numformer as nf
from numformer import nn
from numformer.nn.utils import clip_grad_norm_


def test_huge_finite_float32_gradients_are_scaled_not_zeroed():
    p = nn.Parameter(np.zeros(100, np.float32))
    p.grad = nf.tensor(np.full(100, 1e20, np.float32))
    total = clip_grad_norm_([p], 1.0)
    assert float(total) == pytest.approx(1e21, rel=1e-6)  # sqrt(100) * 1e20
    np.testing.assert_allclose(p.grad, 0.1, rtol=1e-5)
    ref = torch.nn.Parameter(torch.zeros(100))
    ref.grad = torch.full((100,), 1e20)
    assert torch.isinf(torch.nn.utils.clip_grad_norm_([ref], 1.0))  # PyTorch's result: inf, grads zeroed


def _parameters_with_gradients(seed: int, scale: float, shapes) -> tuple[list, list]:
    """numformer and PyTorch parameters of ``shapes`` holding the same float32 gradients."""
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(s).astype(np.float32) * scale for s in shapes]
    ours = [nn.Parameter(np.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for p, t, g in zip(ours, theirs, grads):
        p.grad, t.grad = nf.tensor(g), torch.from_numpy(g.copy())
    return ours, theirs


@pytest.mark.parametrize("norm_type", [1.0, 2.0, "inf", float("inf")])
def test_ordinary_gradients_clip_as_in_pytorch(norm_type):
    ours, theirs = _parameters_with_gradients(0, 5.0, ((3, 4), (7,)))
    a = clip_grad_norm_(ours, 1.5, norm_type=norm_type)
    b = torch.nn.utils.clip_grad_norm_(theirs, 1.5, norm_type=float(norm_type))
    np.testing.assert_allclose(float(a), float(b), rtol=1e-5)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
def test_total_norm_then_clip_with_it_as_in_pytorch(norm_type):
    """PyTorch 2.13's two halves of clip_grad_norm_: get_total_norm of the gradients, then
    clip_grads_with_norm_; foreach= is accepted everywhere, as PyTorch programs pass it."""
    from numformer.nn.utils import clip_grad_value_, clip_grads_with_norm_, get_total_norm

    ours, theirs = _parameters_with_gradients(1, 3.0, ((5, 2), (4,)))
    a = get_total_norm([p.grad for p in ours], norm_type, foreach=None)
    b = torch.nn.utils.get_total_norm([t.grad for t in theirs], norm_type, foreach=None)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-6)
    clip_grads_with_norm_(ours, 1.0, a, foreach=True)
    torch.nn.utils.clip_grads_with_norm_(theirs, 1.0, b, foreach=True)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-6, atol=1e-8)
    assert float(clip_grad_norm_(ours, 0.5, norm_type, foreach=False)) == pytest.approx(1.0, rel=1e-5)
    clip_grad_value_(ours, 0.01, foreach=None)
    assert max(float(np.abs(p.grad).max()) for p in ours) <= 0.01
    assert float(get_total_norm([])) == 0.0
    with pytest.raises(RuntimeError, match="get_total_norm: the total norm of order 2.0 is nan"):
        get_total_norm([nf.tensor([np.nan])], error_if_nonfinite=True)
    with pytest.raises(ValueError, match="clip_grads_with_norm_: max_norm must be > 0, got 0"):
        clip_grads_with_norm_(ours, 0, a)


def test_a_nan_norm_makes_every_gradient_nan_and_mixed_dtypes_promote_as_in_pytorch():
    """PyTorch clamps the scale to at most 1, so a NaN norm scales every gradient to NaN (none is
    left as it was); the joint norm of float16 and float32 gradients is float32, not float16
    (which would overflow at 1e5 and zero the gradients)."""
    from numformer.nn.utils import get_total_norm

    ours, theirs = _parameters_with_gradients(2, 1.0, ((2, 2), (3,)))
    ours[0].grad.array[0, 0] = np.nan
    theirs[0].grad[0, 0] = float("nan")
    clip_grad_norm_(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    for p, t in zip(ours, theirs):
        assert np.isnan(p.grad.numpy()).all() and torch.isnan(t.grad).all()
    mixed = [nf.tensor([1.0], dtype=nf.float16), nf.tensor([1e5])]
    total = get_total_norm(mixed)
    expected = torch.nn.utils.get_total_norm([torch.tensor([1.0], dtype=torch.float16), torch.tensor([1e5])])
    assert total.dtype == np.float32 and float(total) == pytest.approx(float(expected), rel=1e-6)
