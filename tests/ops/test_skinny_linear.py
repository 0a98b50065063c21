"""``nn.Linear``'s kernel on the few rows of a decoding step: one row (a GEMV down the weight's
rows) and 2-8 rows against a large weight (``skinny_product``'s blocks, split over threads), with
and without bias and ReLU, values and gradients as PyTorch's, and the same on 1 or 2 threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numformer as nf
from helpers import randn
from numformer.nn import functional as F
from numformer.ops import linalg


@pytest.mark.parametrize("rows", [1, 2, 5, 8])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_few_rows_against_a_large_weight_match_torch(rows, bias, relu, threads):
    nf.set_num_threads(threads)
    out_features, in_features = 24000, 96  # large enough for skinny_product's blocks up to 8 rows
    assert out_features * in_features > linalg.BLOCKED_ROWS * linalg.SKINNY_WEIGHT_PER_ROW
    x, w, b = randn(0, (rows, in_features)), randn(1, (out_features, in_features)), randn(2, (out_features,))
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    params = [nf.Tensor(w, requires_grad=True)] + ([nf.Tensor(b, requires_grad=True)] if bias else [])
    xt = nf.Tensor(x, requires_grad=True)
    call = F.linear_relu if relu else F.linear
    out = call(xt, *params)
    with nf.no_grad():
        inferred = call(nf.Tensor(x), *[nf.Tensor(p.numpy()) for p in params])
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ref = torch.nn.functional.linear(tx, tw, tb)
    ref = torch.relu(ref) if relu else ref
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(inferred.numpy(), out.numpy())
    assert out.numpy().flags.c_contiguous
    g = randn(3, out.shape).astype(np.float32)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    # dx sums 24,000 products per element: float32's round-off there depends on the BLAS's
    # summation order (on a Zen 5, PyTorch's dx is 2.4e-3 from the float64 product, NumPy's
    # OpenBLAS 1.8e-4). So each gradient is held to the float64 one: numformer's error at most
    # a few times PyTorch's own.
    g64 = g.astype(np.float64) * (out.numpy() > 0 if relu else 1)
    for ours, theirs, exact in [
        (xt.grad.numpy(), tx.grad.numpy(), g64 @ w.astype(np.float64)),
        (params[0].grad.numpy(), tw.grad.numpy(), g64.T @ x.astype(np.float64)),
    ] + ([(params[1].grad.numpy(), tb.grad.numpy(), g64.sum(0))] if bias else []):
        assert np.abs(ours - exact).max() <= 4 * np.abs(theirs - exact).max() + 1e-6


def test_blocks_cover_every_row_of_an_uneven_weight():
    x = randn(0, (3, 50)).astype(np.float32)
    w = randn(1, (4099, 50)).astype(np.float32)  # not a multiple of any block
    np.testing.assert_allclose(linalg.skinny_product(x, w), x @ w.T, rtol=1e-5, atol=1e-5)
    transposed = np.ascontiguousarray(w.T).T  # GPT-2's Conv1D weights load as such views
    np.testing.assert_allclose(linalg.skinny_product(x, transposed), x @ w.T, rtol=1e-5, atol=1e-5)
