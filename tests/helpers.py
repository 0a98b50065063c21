"""Shared test helpers: PyTorch parity checks and random data drawn from a seed."""

from __future__ import annotations

import numpy as np
import torch

import numformer as nf

# Tolerances per dtype. float32 ops that sum many terms (matmul, attention, reductions) get
# ``loose``; float64 agrees with PyTorch to round-off.
TOL = {
    np.float32: {"rtol": 1e-5, "atol": 1e-6},
    np.float64: {"rtol": 1e-10, "atol": 1e-12},
}
LOOSE = {
    np.float32: {"rtol": 1e-4, "atol": 1e-5},
    np.float64: {"rtol": 1e-9, "atol": 1e-11},
}


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(seed: int, shape, dtype=np.float64, positive=False, away_from_zero=False):
    x = rng(seed).standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    if away_from_zero:
        x = np.where(np.abs(x) < 0.1, np.sign(x + 1e-12) * 0.1 + x, x)
    return x.astype(dtype)


def to_torch(a, requires_grad=False):
    return torch.tensor(np.asarray(a), requires_grad=requires_grad)


def check_parity(nf_fn, torch_fn, arrays, dtype, grad=True, loose=False, seed=0, grad_atol_factor=1.0):
    """Run both frameworks on the same arrays; compare outputs, dtypes and input gradients.

    ``grad_atol_factor`` widens the gradients' absolute tolerance where the case scales up
    round-off that cancels in them (and only there): the caller says by how much and why."""
    tol = (LOOSE if loose else TOL)[np.dtype(dtype).type]
    grad_tol = dict(tol, atol=tol["atol"] * grad_atol_factor)
    arrays = [np.asarray(a, dtype=dtype) for a in arrays]
    nf_in = [nf.Tensor(a.copy(), requires_grad=grad) for a in arrays]
    t_in = [to_torch(a.copy(), requires_grad=grad) for a in arrays]
    nf_out = nf_fn(*nf_in)
    t_out = torch_fn(*t_in)
    assert nf_out.dtype == dtype, f"output dtype {nf_out.dtype}, expected {dtype}"
    assert nf_out.shape == tuple(t_out.shape), (nf_out.shape, tuple(t_out.shape))
    np.testing.assert_allclose(nf_out.numpy(), t_out.detach().numpy(), **tol)
    if not grad:
        return nf_in, t_in
    g = rng(seed + 1).standard_normal(nf_out.shape).astype(dtype)
    nf_out.backward(g)
    t_out.backward(torch.from_numpy(g))
    for i, (a, b) in enumerate(zip(nf_in, t_in)):
        if b.grad is None:
            assert a.grad is None or not np.any(a.grad), f"input {i}: torch has no grad"
            continue
        assert a.grad is not None, f"input {i}: numformer produced no gradient"
        assert a.grad.dtype == dtype, f"input {i}: grad dtype {a.grad.dtype}"
        assert a.grad.shape == a.shape
        np.testing.assert_allclose(a.grad, b.grad.numpy(), **grad_tol, err_msg=f"grad of input {i}")
    return nf_in, t_in


# The smallest `numformer train` that runs every part of a run (CLI, MPI and device tests).
TINY = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--d-model",
    "16",
    "--d-ff",
    "32",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--eval-every",
    "3",
    "--eval-batches",
    "1",
    "--sample-tokens",
    "8",
    "--warmup-steps",
    "1",
    "--progress",
    "false",
]
