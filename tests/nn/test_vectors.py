"""F.normalize, F.cosine_similarity, F.one_hot, the embedding's options and nn.BatchNorm2d
against PyTorch: values and gradients over hypothesis shapes, float32 and float64; a float64
gradcheck of the normalisation primitive; the edges (zero vectors) and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import check_parity, randn
from numformer import nn
from numformer.nn import functional as F
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([np.float32, np.float64])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@settings(max_examples=20)
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, p=st.sampled_from([1.0, 2.0, 3.0]), data=st.data())
def test_normalize_parity_and_gradcheck(seed, shape, dtype, p, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = randn(seed, shape, away_from_zero=True)
    check_parity(lambda t: F.normalize(t, p, dim), lambda t: TF.normalize(t, p, dim), [x], dtype, loose=True)
    if dtype == np.float64:
        assert gradcheck(lambda t: F.normalize(t, p, dim), [nf.Tensor(x, requires_grad=True)])


@settings(max_examples=20)
@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_cosine_similarity_parity_with_broadcasting(seed, dtype, data):
    a_shape = data.draw(st.sampled_from([(3, 4), (2, 3, 4), (4,)]))
    b_shape = data.draw(st.sampled_from([a_shape, a_shape[-1:], (1,) + a_shape[-1:]]))
    dim = data.draw(st.sampled_from([-1, 0]))
    a, b = randn(seed, a_shape), randn(seed + 1, b_shape)

    def ours(x, y):
        return F.cosine_similarity(x, y, dim)

    def theirs(x, y):
        return TF.cosine_similarity(x, y, dim)

    # The gradients' round-off grows as 1 / |x| (their terms do): with b broadcast along dim, a
    # short b (an entry near 0) gives terms of hundreds that cancel to an exact 0, which float32
    # leaves at ~1e-5 in both frameworks (seed 25192610: 4.6e-5 here, 2.3e-5 PyTorch's).
    norms = [np.linalg.norm(np.broadcast_to(v, np.broadcast_shapes(a.shape, b.shape)), axis=dim) for v in (a, b)]
    factor = max(1.0, 1.0 / min(n.min() for n in norms))
    check_parity(ours, theirs, [a, b], dtype, loose=True, grad_atol_factor=factor)
    check_parity(
        nn.CosineSimilarity(dim), torch.nn.CosineSimilarity(dim), [a, b], dtype, loose=True, grad_atol_factor=factor
    )
    if dtype == np.float64:
        assert gradcheck(ours, [nf.Tensor(a, requires_grad=True), nf.Tensor(b, requires_grad=True)])


def test_short_vectors_are_divided_by_eps_as_pytorchs():
    """A vector shorter than eps is divided by eps (values and the 1/eps gradient, PyTorch's)."""
    x = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1e-13, 0.0, 0.0]])
    check_parity(F.normalize, TF.normalize, [x], np.float64)
    y = np.array([[1e-9, 1e-9, 1e-9], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    check_parity(F.cosine_similarity, TF.cosine_similarity, [y, y[::-1].copy()], np.float64)


def test_one_hot_as_pytorchs():
    idx = np.array([[0, 3], [2, 1]])
    ours = F.one_hot(nf.tensor(idx))
    ref = TF.one_hot(torch.from_numpy(idx))
    assert ours.dtype == np.int64 and not ours.requires_grad
    np.testing.assert_array_equal(ours.numpy(), ref.numpy())
    np.testing.assert_array_equal(F.one_hot(idx, 6).numpy(), TF.one_hot(torch.from_numpy(idx), 6).numpy())
    assert F.one_hot(np.zeros(0, dtype=np.int64), 3).shape == (0, 3)
    with pytest.raises(RuntimeError, match="one_hot: class values must be smaller than num_classes=3, got 3"):
        F.one_hot(idx, 3)
    with pytest.raises(RuntimeError, match="one_hot: class values must be non-negative, got -1"):
        F.one_hot(np.array([-1, 0]))
    with pytest.raises(RuntimeError, match="one_hot: tensor must hold integer class indices, got dtype float32"):
        F.one_hot(nf.randn(3))
    with pytest.raises(RuntimeError, match="can not infer the number of classes from an empty tensor"):
        F.one_hot(np.zeros(0, dtype=np.int64))


def test_embedding_options_numformer_lacks_are_refused():
    w = nf.randn(5, 3)
    for option in ({"max_norm": 1.0}, {"scale_grad_by_freq": True}, {"sparse": True}):
        with pytest.raises(NotImplementedError, match=f"embedding: {next(iter(option))}=.* is not supported"):
            F.embedding(np.array([0, 1]), w, **option)
    np.testing.assert_array_equal(F.embedding(np.array([1]), w, None, None, 2.0, False, False).numpy(), w.numpy()[[1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_2d_train_and_eval(dtype):
    from test_layers import TORCH_DTYPE, compare_modules, copy_weights

    m, t = nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    m.weight.array[...] = randn(0, (3,))
    compare_modules(m, t, [randn(1, (4, 3, 5, 2)) * 2 + 1], dtype)
    np.testing.assert_allclose(m.running_var.numpy(), t.running_var.detach().numpy(), rtol=1e-5)
    m.eval(), t.eval()
    copy_weights(m, t.to(TORCH_DTYPE[dtype]))
    compare_modules(m, t, [randn(2, (2, 3, 4, 4))], dtype)
    with pytest.raises(ValueError, match=r"BatchNorm2d: input must be \(N, 3, H, W\), got shape \(2, 3\)"):
        m(nf.randn(2, 3))
