"""SASRec and its recurrent baseline: causality, padding, the loss, negatives, MovieLens loaders
(on small files written here; MovieLens itself may not be copied), and save/load."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer.apps.recommend import (
    leave_one_out,
    left_pad,
    load_interactions,
    load_titles,
    rank_metrics,
    sample_negatives,
    sequences,
)
from numformer.interop import load_model, save_model
from numformer.models.sasrec import RecurrentRecommender, SASRec, SASRecConfig, bce_loss, softmax_loss

CONFIG = SASRecConfig(num_items=30, max_len=8, d_model=16, nhead=2, num_layers=2, dropout=0.0)
SEQ = np.array([[0, 0, 0, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 9, 1, 2], [11, 12, 13, 14, 15, 16, 17, 18]])


def test_the_causal_mask_hides_future_items():
    nf.manual_seed(0)
    model = SASRec(CONFIG).eval()
    with nf.no_grad():
        base = model(SEQ).data
        for t in range(1, 8):
            changed = SEQ.copy()
            changed[:, t:] = np.random.default_rng(t).integers(1, 31, (3, 8 - t))
            np.testing.assert_allclose(model(changed).data[:, :t], base[:, :t], atol=1e-6)


@pytest.mark.parametrize("make", [SASRec, RecurrentRecommender])
def test_padding_never_changes_a_real_position(make):
    nf.manual_seed(0)
    model = make(CONFIG).eval()
    with nf.no_grad():
        base = model(SEQ).data
        model.item_emb.weight.data[0] = np.random.default_rng(0).standard_normal(16)  # what a pad would carry
        again = model(SEQ).data
    real = SEQ != 0
    if make is SASRec:
        np.testing.assert_allclose(again[real], base[real], atol=1e-6)
    assert (again[~real] == 0).all()


@pytest.mark.parametrize("make", [SASRec, RecurrentRecommender])
def test_overfits_a_tiny_batch_and_round_trips(make, tmp_path):
    nf.manual_seed(0)
    model = make(CONFIG)
    positives = np.where(SEQ != 0, np.roll(SEQ, -1, 1), 0)
    positives[:, -1] = [8, 3, 19]
    negatives = np.where(positives != 0, 25, 0)
    opt = nf.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        opt.zero_grad()
        loss = bce_loss(model, SEQ, positives, negatives)
        loss.backward()
        opt.step()
    assert float(loss.item()) < 0.05
    save_model(model, tmp_path / "m.safetensors")
    other = make(CONFIG)
    load_model(other, tmp_path / "m.safetensors")
    np.testing.assert_array_equal(other.eval()(SEQ).data, model.eval()(SEQ).data)


def test_the_full_softmax_loss_trains_and_ignores_padding():
    nf.manual_seed(0)
    model = SASRec(CONFIG)
    positives = np.where(SEQ != 0, np.roll(SEQ, -1, 1), 0)
    positives[:, -1] = [8, 3, 19]
    first = float(softmax_loss(model, SEQ, positives).item())
    assert first == pytest.approx(np.log(31), rel=0.2)  # about uniform over the catalogue at the start
    opt = nf.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(100):
        opt.zero_grad()
        loss = softmax_loss(model, SEQ, positives)
        loss.backward()
        opt.step()
    assert float(loss.item()) < 0.1
    h = model.eval()(SEQ)
    assert (model.score(h[:, -1]).data[:, 1:].argmax(1) + 1).tolist() == [8, 3, 19]


def test_negatives_never_include_the_target_or_the_history():
    rng = np.random.default_rng(0)
    seen = set(range(1, 40))
    for _ in range(20):
        negatives = sample_negatives(rng, 150, seen, 100, exclude=[77])
        assert len(set(negatives.tolist())) == 100 and not set(negatives.tolist()) & (seen | {77})


def test_rank_metrics():
    hr, ndcg = rank_metrics(np.array([5.0, 1.0]), np.array([[1.0, 2.0, 6.0], [3.0, 2.0, 1.0]]), k=2)
    assert hr == 0.5 and ndcg == pytest.approx(0.5 / np.log2(3))


def test_movielens_loaders_and_leave_one_out(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t300\n1\t11\t3\t100\n1\t12\t5\t200\n2\t10\t2\t50\n1\t13\t4\t400\n")
    (tmp_path / "ratings.dat").write_text("1::10::4::300\n1::11::3::100\n")
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t300\n")
    (tmp_path / "u.item").write_text("10|Movie A (1990)|x\n11|Movie B (1991)|x\n")
    rows = load_interactions(tmp_path / "u.data")
    assert rows.shape == (5, 3) and rows[1].tolist() == [1, 11, 100]
    assert load_interactions(tmp_path / "ratings.dat").tolist() == [[1, 10, 300], [1, 11, 100]]
    assert load_interactions(tmp_path / "x.inter").tolist() == [[1, 10, 300]]
    assert load_titles(tmp_path / "u.item") == {10: "Movie A (1990)", 11: "Movie B (1991)"}
    users = sequences(rows)
    assert users[1].tolist() == [11, 12, 10, 13]  # timestamp order
    split = leave_one_out(users)
    assert split[1][0].tolist() == [11, 12] and split[1][1:] == (10, 13) and 2 not in split  # user 2 has 1 item
    assert left_pad([1, 2, 3], 5).tolist() == [0, 0, 1, 2, 3] and left_pad(range(1, 9), 3).tolist() == [6, 7, 8]
    (tmp_path / "bad.data").write_text("1\tx\n")
    with pytest.raises(ValueError, match="line 1 is not user"):
        load_interactions(tmp_path / "bad.data")
