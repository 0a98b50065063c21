"""The Llama family's kernels (SiLU, SwiGLU, RMSNorm, rotary embedding): float64 gradchecks and
PyTorch parity of values and gradients over shapes drawn by hypothesis, the inference path
against the recording one, and the threaded chunks against the serial kernel."""

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
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5)


def torch_rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def silu_spec(data):
    x = randn(data.draw(SEEDS), data.draw(SHAPES)) * 4  # both tails of the sigmoid
    return [x], F.silu, torch.nn.functional.silu


def swiglu_spec(data):
    shape, seed = data.draw(SHAPES), data.draw(SEEDS)
    gate, up = randn(seed, shape) * 4, randn(seed + 1, shape)
    return [gate, up], F.swiglu, (lambda g, u: torch.nn.functional.silu(g) * u)


def rms_norm_spec(data):
    shape, seed = data.draw(SHAPES), data.draw(SEEDS)
    ndim = data.draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - ndim :]
    eps = data.draw(st.sampled_from([1e-6, 1e-5, None]))
    x, w = randn(seed, shape), randn(seed + 1, normalized)
    return (
        [x, w],
        (lambda a, b: F.rms_norm(a, normalized, b, eps)),
        (lambda a, b: torch.nn.functional.rms_norm(a, normalized, b, eps)),
    )


def rms_norm_no_weight_spec(data):
    x = randn(data.draw(SEEDS), data.draw(SHAPES))
    n = x.shape[-1:]
    return [x], (lambda a: F.rms_norm(a, n, eps=1e-6)), (lambda a: torch.nn.functional.rms_norm(a, n, eps=1e-6))


def rotary_spec(data):
    seed = data.draw(SEEDS)
    n, h, length = (data.draw(st.integers(1, 3)) for _ in range(3))
    d = 2 * data.draw(st.integers(1, 4))
    shared = data.draw(st.booleans())  # one table for every row, or one per row (left padding)
    strided = data.draw(st.booleans())  # a transposed view, as q after (N, L, H, D) -> (N, H, L, D)
    angles = randn(seed + 1, (1 if shared else n, 1, length, d // 2)) * 3
    cos, sin = np.cos(np.concatenate([angles] * 2, -1)), np.sin(np.concatenate([angles] * 2, -1))
    x = randn(seed, (n, length, h, d) if strided else (n, h, length, d))

    def ours(t):
        return F.apply_rotary_emb(t.transpose(1, 2) if strided else t, cos, sin)

    def theirs(t):
        t = t.transpose(1, 2) if strided else t
        c, s = torch.from_numpy(cos).to(t.dtype), torch.from_numpy(sin).to(t.dtype)
        return t * c + torch_rotate_half(t) * s

    return [x], ours, theirs


SPECS = {
    "silu": silu_spec,
    "swiglu": swiglu_spec,
    "rms_norm": rms_norm_spec,
    "rms_norm_no_weight": rms_norm_no_weight_spec,
    "rotary": rotary_spec,
}


@pytest.mark.parametrize("name", sorted(SPECS))
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_parity_with_torch(name, data, dtype):
    arrays, nf_fn, torch_fn = SPECS[name](data)
    check_parity(nf_fn, torch_fn, arrays, dtype, loose=name.startswith("rms_norm"))
    check_parity(nf_fn, torch_fn, arrays, dtype, grad=False, loose=name.startswith("rms_norm"))


@pytest.mark.parametrize("name", sorted(SPECS))
@given(data=st.data())
def test_gradcheck(name, data):
    arrays, nf_fn, _ = SPECS[name](data)
    inputs = [nf.Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(nf_fn, inputs)


def test_rotary_of_a_strided_view_equals_that_of_a_copy():
    x = randn(0, (2, 5, 3, 8)).astype(np.float32)  # (N, L, H, D)
    angles = randn(1, (2, 1, 5, 4))
    cos, sin = np.cos(np.concatenate([angles] * 2, -1)), np.sin(np.concatenate([angles] * 2, -1))
    view = nf.Tensor(x).transpose(1, 2)  # (N, H, L, D), not contiguous
    copy = nf.Tensor(np.ascontiguousarray(x.transpose(0, 2, 1, 3)))
    ours, reference = F.apply_rotary_emb(view, cos, sin), F.apply_rotary_emb(copy, cos, sin)
    np.testing.assert_array_equal(ours.numpy(), reference.numpy())


@pytest.mark.parametrize(
    ("call", "w_shape"),
    [
        (lambda x, w: F.rms_norm(x, x.shape[-1:], w, 1e-6), (24,)),
        (lambda x, w: F.swiglu(x, w), (4, 7, 24)),
        (lambda x, w: F.silu(x) + w, (24,)),
    ],
    ids=["rms_norm", "swiglu", "silu"],
)
def test_inference_path_gives_the_recording_paths_bits(call, w_shape):
    x, w = randn(0, (4, 7, 24)).astype(np.float32) * 3, randn(1, w_shape).astype(np.float32)
    with nf.no_grad():
        inferred = call(nf.Tensor(x), nf.Tensor(w)).numpy()
    recorded = call(nf.Tensor(x, requires_grad=True), nf.Tensor(w, requires_grad=True)).detach().numpy()
    np.testing.assert_array_equal(inferred, recorded)


@pytest.mark.parametrize("name", ["rms_norm", "swiglu", "silu"])
def test_threaded_chunks_equal_the_serial_kernel(name):
    """Large enough to be split over threads (MIN_ELEMENTS): values and gradients as on one thread."""
    x = randn(0, (300, 512)).astype(np.float32) * 3
    w = randn(1, (512,) if name == "rms_norm" else (300, 512)).astype(np.float32)
    call = {
        "rms_norm": lambda a, b: F.rms_norm(a, 512, b, 1e-6),
        "swiglu": F.swiglu,
        "silu": lambda a, b: F.silu(a) * b,
    }[name]
    g = randn(2, (300, 512)).astype(np.float32)

    def run():
        a, b = nf.Tensor(x, requires_grad=True), nf.Tensor(w, requires_grad=True)
        with nf.no_grad():
            inferred = call(nf.Tensor(x), nf.Tensor(w)).numpy()
        out = call(a, b)
        out.backward(g)
        return inferred, out.numpy(), a.grad.numpy(), b.grad.numpy()

    serial = run()
    nf.set_num_threads(2)
    threaded = run()
    for s, t in zip(serial, threaded):
        np.testing.assert_allclose(t, s, rtol=1e-6, atol=1e-6)


def test_silu_is_finite_and_exact_in_both_tails():
    x = nf.Tensor(np.array([-1e4, -100.0, -88.0, 0.0, 30.0, 1e4], dtype=np.float32), requires_grad=True)
    y = F.silu(x)
    y.sum().backward()
    t = torch.tensor(x.numpy(), requires_grad=True)
    ty = torch.nn.functional.silu(t)
    ty.sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-30)
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: F.rms_norm(nf.ones(2, 3), 4), ValueError),
        (lambda: F.rms_norm(nf.ones(2, 3), 3, nf.ones(4)), ValueError),
        (lambda: F.rms_norm(nf.tensor([[1, 2]]), 2), TypeError),
        (lambda: F.swiglu(nf.ones(2, 3), nf.ones(3, 2)), ValueError),
        (lambda: F.silu(nf.tensor([1, 2])), TypeError),
        (lambda: F.apply_rotary_emb(nf.ones(2, 3), np.ones(3), np.ones(3)), ValueError),
        (lambda: F.apply_rotary_emb(nf.ones(2, 4), np.ones((3, 4)), np.ones((3, 4))), ValueError),
    ],
)
def test_bad_arguments_raise_what_they_name(call, error):
    with pytest.raises(error):
        call()
