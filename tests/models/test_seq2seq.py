"""The translation models: the paper's encoder-decoder and the LSTM baseline. They overfit a
tiny batch, padding changes nothing, the cached decoder equals the full one, beam search with
one beam is greedy decoding, and weights survive a save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer import nn
from numformer.models.seq2seq import EOS, PAD, LSTMSeq2Seq, Seq2SeqConfig, Seq2SeqTransformer
from numformer.serialization.safetensors import load_model, save_model

SRC = np.array([[5, 6, 7, 8], [9, 10, 11, PAD], [12, 13, PAD, PAD]])
TGT = np.array([[1, 4, 5, 6, 7, EOS], [1, 8, 9, 10, EOS, PAD], [1, 11, 12, EOS, PAD, PAD]])  # bos ... eos


def transformer(seed=0, dropout=0.0):
    nf.manual_seed(seed)
    cfg = Seq2SeqConfig(
        16, 16, d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64, dropout=dropout
    )
    return Seq2SeqTransformer(cfg)


def lstm(seed=0):
    nf.manual_seed(seed)
    return LSTMSeq2Seq(16, 16, hidden=32, layers=2, dropout=0.0)


def _loss(model, src, tgt):
    logits = model(src, tgt[:, :-1])
    return nf.nn.functional.cross_entropy(logits.reshape(-1, 16), tgt[:, 1:].reshape(-1), ignore_index=PAD)


@pytest.mark.parametrize("make", [transformer, lstm], ids=["transformer", "lstm"])
def test_overfits_a_tiny_batch_and_then_decodes_it(make):
    model = make()
    opt = nf.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(250):
        opt.zero_grad()
        loss = _loss(model, SRC, TGT)
        loss.backward()
        opt.step()
    assert float(loss.item()) < 0.03
    expected = [[4, 5, 6, 7], [8, 9, 10], [11, 12]]
    assert model.greedy_decode(SRC, max_len=8) == expected
    if isinstance(model, Seq2SeqTransformer):
        assert model.beam_search(SRC, beam_size=3, max_len=8) == expected


@pytest.mark.parametrize("make", [transformer, lstm], ids=["transformer", "lstm"])
def test_padding_never_changes_a_result(make):
    model = make().eval()
    with nf.no_grad():
        one = model(SRC[1:2, :3], TGT[1:2, :4]).array
        padded = model(np.pad(SRC[1:2, :3], ((0, 0), (0, 5))), np.pad(TGT[1:2, :4], ((0, 0), (0, 3)))).array
    np.testing.assert_allclose(padded[:, :4], one, atol=1e-5)


def test_the_cached_decoder_equals_the_full_one():
    model = transformer().eval()
    memory, padding = model.encode(SRC)
    with nf.no_grad():
        full = model.decode(TGT, memory, padding).array
        cache = nn.EncoderDecoderCache()
        steps = [model.decode(TGT[:, :3], memory, padding, cache).array]
        steps += [model.decode(TGT[:, t : t + 1], memory, padding, cache).array for t in range(3, TGT.shape[1])]
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-5)
    assert cache.get_seq_length() == TGT.shape[1] and len(cache) == 2
    assert cache.cross_attention_cache.get_seq_length() == SRC.shape[1]  # the memory, projected once


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_with_one_beam_is_greedy(seed):
    model = transformer(seed)
    assert model.beam_search(SRC, beam_size=1, max_len=7) == model.greedy_decode(SRC, max_len=7)


def test_beam_search_scores_at_least_as_well_as_greedy():
    model = transformer(3)
    opt = nf.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(25):  # partly trained: it ends its outputs with eos, and greedy and beam can differ
        opt.zero_grad()
        _loss(model, SRC, TGT).backward()
        opt.step()
    model.eval()

    def logprob(src, seq):
        tgt = np.array([[1] + seq + [EOS]])
        with nf.no_grad():
            logits = model(src[None], tgt[:, :-1]).array[0]
        logp = (
            logits
            - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
            - logits.max(-1, keepdims=True)
        )
        length = len(seq) + 1
        return float(logp[np.arange(length), tgt[0, 1:]].sum()) / (((5 + length) / 6) ** 0.6)

    greedy = model.greedy_decode(SRC, max_len=8)
    beam = model.beam_search(SRC, beam_size=4, max_len=8)
    compared = 0
    for i in range(len(SRC)):
        if len(greedy[i]) < 8 and len(beam[i]) < 8:  # both finished with eos inside the limit
            assert logprob(SRC[i], beam[i]) >= logprob(SRC[i], greedy[i]) - 1e-5
            compared += 1
    assert compared >= 2


@pytest.mark.parametrize("make", [transformer, lstm], ids=["transformer", "lstm"])
def test_save_load_round_trip(make, tmp_path):
    model = make().eval()
    save_model(model, tmp_path / "m.safetensors")
    other = make(seed=5).eval()
    load_model(other, tmp_path / "m.safetensors")
    with nf.no_grad():
        np.testing.assert_array_equal(other(SRC, TGT).array, model(SRC, TGT).array)


def test_bad_input_is_named():
    model = transformer()
    with pytest.raises(ValueError, match="src must be an integer array of shape"):
        model(np.zeros((2, 3)), TGT)
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(np.ones((1, 200), dtype=np.int64), TGT[:1])
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        model.beam_search(SRC, beam_size=0)
    with pytest.raises(ValueError, match="d_model .* divisible by nhead"):
        Seq2SeqConfig(4, 4, d_model=30, nhead=4)
