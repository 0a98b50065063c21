"""einops on numformer tensors: rearrange, repeat, reduce, einsum, pack/unpack give torch's
values and gradients, and numformer registers its backend without importing einops."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from helpers import check_parity, randn

einops = pytest.importorskip("einops")

# (pattern, input shape, axes lengths); every case both rearranges and moves gradients back
REARRANGE = [
    ("b c h w -> b h w c", (2, 3, 4, 5), {}),
    ("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", (2, 3, 4, 6), {"p1": 2, "p2": 3}),
    ("b t (h d) -> b h t d", (2, 5, 12), {"h": 3}),
    ("b ... c -> b c ...", (2, 3, 4, 5), {}),
    ("a b c -> (c a) b", (3, 1, 4), {}),
    ("a b 1 -> b a", (3, 2, 1), {}),
]
REPEAT = [
    ("h w -> h w c", (3, 4), {"c": 2}),
    ("h w -> (r h) w", (3, 4), {"r": 2}),
    ("b d -> b n d", (2, 4), {"n": 3}),
    ("h w -> h (w c) 2", (2, 3), {"c": 2}),
]
REDUCTIONS = ["sum", "mean", "max", "min", "prod"]


@pytest.mark.parametrize("pattern,shape,lengths", REARRANGE)
def test_rearrange_as_torchs(pattern, shape, lengths):
    def fn(t):
        return einops.rearrange(t, pattern, **lengths)

    check_parity(fn, fn, [randn(0, shape)], np.float32)


@pytest.mark.parametrize("pattern,shape,lengths", REPEAT)
def test_repeat_as_torchs(pattern, shape, lengths):
    def fn(t):
        return einops.repeat(t, pattern, **lengths)

    check_parity(fn, fn, [randn(1, shape)], np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(
    sizes=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 2), st.integers(1, 3)),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=8, deadline=None)
def test_reduce_as_torchs_over_drawn_sizes(reduction, sizes, seed):
    b, c, h, w = sizes

    def fn(t):
        return einops.reduce(t, "b c (h h2) w -> b h c", reduction, h2=2)

    x = randn(seed, (b, c, 2 * h, w), away_from_zero=True)
    check_parity(fn, fn, [x], np.float64)


def test_einsum_pack_unpack_and_lists_as_torchs():
    def contract(a, b):
        return einops.einsum(a, b, "b i d, b j d -> b i j")

    check_parity(contract, contract, [randn(2, (2, 3, 4)), randn(3, (2, 5, 4))], np.float32, loose=True)

    def packed(a, b):
        together, shapes = einops.pack([a, b], "b *")
        first, second = einops.unpack(together * 2, shapes, "b *")
        return first.sum() + (second**2).sum()

    check_parity(packed, packed, [randn(4, (2, 3, 4)), randn(5, (2, 5))], np.float32)

    def from_list(a, b):
        return einops.rearrange([a, b], "n b d -> b (n d)")

    check_parity(from_list, from_list, [randn(6, (2, 3)), randn(7, (2, 3))], np.float32)


def test_shapes_errors_and_numpy_as_einops_gives_them():
    x = nf.zeros(2, 3, 4)
    assert einops.parse_shape(x, "b c _") == {"b": 2, "c": 3}
    np.testing.assert_array_equal(einops.asnumpy(x), np.zeros((2, 3, 4), np.float32))
    assert isinstance(einops.rearrange(x, "b c h -> h b c"), nf.Tensor)
    with pytest.raises(einops.EinopsError, match="Shape mismatch"):
        einops.rearrange(x, "b c (h p) -> b c h p", p=3)
    with pytest.raises(NotImplementedError, match="non-floating"):  # as with torch: mean of floats only
        einops.reduce(nf.zeros(2, 3, dtype=nf.int64), "a b -> a", "mean")


def test_numformer_registers_with_einops_in_either_import_order():
    """Importing numformer does not import einops; einops imported first or second knows
    numformer's tensors (beside torch's: the test below runs in a process holding both)."""
    check = "print(type(einops.rearrange(numformer.zeros(2, 3), 'a b -> b a')).__name__)"
    numformer_first = f"import sys, numformer; print('einops' in sys.modules); import einops; {check}"
    einops_first = f"import einops, numformer; {check}"
    for script, expected in [(numformer_first, ["False", "Tensor"]), (einops_first, ["Tensor"])]:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == expected


def test_torch_and_numformer_results_agree_on_one_array():
    """The same array through both backends gives the same values (a cross-check of the
    registration: numformer's tensor is handled by numformer's backend, not torch's)."""
    a = randn(8, (2, 6, 4)).astype(np.float32)
    ours = einops.repeat(nf.tensor(a), "b (h d) w -> b h w d r", h=2, r=2)
    theirs = einops.repeat(torch.tensor(a), "b (h d) w -> b h w d r", h=2, r=2)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
