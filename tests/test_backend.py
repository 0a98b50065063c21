"""The backend seam: every array call of a model's forward and backward goes through
``numformer.backend.xp``. Under the stand-in array module (NumPy behind a distinct array type that
refuses NumPy's own functions and raw NumPy operands) a path that bypasses ``xp`` raises."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer import nn
from numformer.backend import get_array_module, to_numpy, use_array_module, xp
from numformer.models import GPT, GPTConfig
from numformer.optim import AdamW
from numformer.testing import BypassError, StandInArray, stand_in_arrays


def test_the_stand_in_refuses_numpy_and_raw_arrays():
    sp = stand_in_arrays()
    a = sp.ones((2, 3), dtype=np.float32)
    assert isinstance(a + a, StandInArray) and isinstance(sp.exp(a).sum(axis=1), StandInArray)
    for bypass in (lambda: np.exp(a), lambda: np.asarray(a), lambda: a + np.ones(3), lambda: sp.add(a, np.ones(3))):
        with pytest.raises(BypassError):
            bypass()
    np.testing.assert_array_equal(to_numpy(sp.asarray(np.arange(3.0))), np.arange(3.0))


def test_use_array_module_swaps_xp_everywhere_and_restores_it():
    sp = stand_in_arrays()
    with use_array_module(sp):
        assert get_array_module() is sp and xp.ndarray is StandInArray
        assert isinstance(nf.zeros(2, 3).array, StandInArray)
    assert get_array_module() is np and xp.ndarray is np.ndarray


def _gpt_run(module, positions):
    nf.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, d_model=16, dropout=0.1, positions=positions)
    )
    idx = np.random.default_rng(0).integers(0, 20, (2, 8))
    with use_array_module(module):
        for p in model.parameters():  # the model moves to the "device"
            p.array = module.asarray(p.array)
        for _, b in model.named_buffers():
            b.array = module.asarray(b.array)
        nf.manual_seed(1)  # dropout draws
        logits, loss = model(idx, idx)
        loss.backward()
        grads = {name: to_numpy(p.grad.array) for name, p in model.named_parameters()}
        generated = model.generate([[1, 2, 3], [4]], 6, temperature=0.9, seed=3)  # the KV cache path
        generated += model.generate([[5, 6]], 3, temperature=0.9, seed=4, use_cache=False)  # recomputing
        generated += model.generate([list(range(14))], 5, temperature=0, seed=5)  # refills at block_size
        with nf.no_grad():
            _, _, weights = model(idx, need_weights=True)
        kinds = {type(loss.array), type(logits.array)} | {type(p.grad.array) for p in model.parameters()}
    return to_numpy(loss.array), grads, generated + [to_numpy(w).tolist() for w in weights], kinds


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_gpt_forward_backward_and_generation_run_on_the_stand_in_with_numpys_bits(positions):
    loss, grads, generated, kinds = _gpt_run(stand_in_arrays(), positions)
    assert kinds == {StandInArray}  # nothing fell back to NumPy arrays
    ref_loss, ref_grads, ref_generated, ref_kinds = _gpt_run(np, positions)
    assert ref_kinds == {np.ndarray}
    assert loss == ref_loss and generated == ref_generated
    for name, g in grads.items():
        np.testing.assert_array_equal(g, ref_grads[name], err_msg=name)


def test_an_encoder_trains_a_step_on_the_stand_in():
    sp = stand_in_arrays()
    nf.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, norm_first=True, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2)
    x = np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32)
    with use_array_module(sp):
        for p in encoder.parameters():
            p.array = sp.asarray(p.array)
        opt = AdamW(encoder.parameters(), lr=1e-3)
        out = encoder(nf.Tensor(sp.asarray(x)), mask=nn.Transformer.generate_square_subsequent_mask(5))
        out.pow(2).mean().backward()
        opt.step()
        assert all(isinstance(p.array, StandInArray) for p in encoder.parameters())
