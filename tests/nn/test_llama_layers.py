"""``nn.RMSNorm`` and ``nn.SiLU`` against PyTorch's modules (weights through the state dict):
values, input and parameter gradients, in float32 and float64; the modules' reprs and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_layers import compare_modules  # the layer tests' PyTorch comparison

import numformer as nf
from helpers import randn
from numformer import nn

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([np.float32, np.float64])


@given(
    seed=SEEDS,
    dtype=DTYPES,
    affine=st.booleans(),
    eps=st.sampled_from([None, 1e-6, 1e-5]),
    shape=st.sampled_from([(6,), (2, 6), (3, 2, 6)]),
    normalized=st.sampled_from([6, (6,), (2, 6)]),
)
def test_rms_norm_matches_torch(seed, dtype, affine, eps, shape, normalized):
    if isinstance(normalized, tuple) and len(normalized) > len(shape):
        normalized = 6
    m = nn.RMSNorm(normalized, eps=eps, elementwise_affine=affine)
    t = torch.nn.RMSNorm(normalized, eps=eps, elementwise_affine=affine)
    if affine:
        m.weight.array[...] = randn(seed, m.weight.shape)
    compare_modules(m, t, [randn(seed + 1, shape) * 3 + 1], dtype)


@given(seed=SEEDS, dtype=DTYPES, shape=st.sampled_from([(5,), (2, 7), (2, 3, 4)]))
def test_silu_matches_torch(seed, dtype, shape):
    compare_modules(nn.SiLU(), torch.nn.SiLU(), [randn(seed, shape) * 4], dtype)


def test_state_dicts_and_reprs_are_pytorchs():
    assert list(nn.RMSNorm(4).state_dict()) == list(torch.nn.RMSNorm(4).state_dict()) == ["weight"]
    assert not nn.RMSNorm(4, elementwise_affine=False).state_dict()
    assert repr(nn.RMSNorm(4, eps=1e-6)).startswith("RMSNorm((4,), eps=1e-06, elementwise_affine=True)")
    assert repr(nn.SiLU()) == "SiLU()"


def test_rms_norm_refuses_an_input_of_another_width():
    with pytest.raises(ValueError, match="must end with normalized_shape"):
        nn.RMSNorm(4)(nf.ones(2, 3))
