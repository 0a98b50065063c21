"""SASRec and its recurrent baseline: causality, padding, the loss, negatives, MovieLens loaders
(on small files written here; MovieLens itself may not be copied), and save/load."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from numformer.apps.recommend import (
    evaluation_inputs,
    leave_one_out,
    left_pad,
    load_interactions,
    load_titles,
    paired_difference,
    rank_metrics,
    sample_negatives,
    sequences,
    validation_batch,
)
from numformer.models.sasrec import RecurrentRecommender, SASRec, SASRecConfig, bce_loss, softmax_loss
from numformer.serialization.safetensors import load_model, save_model

CONFIG = SASRecConfig(num_items=30, max_len=8, d_model=16, nhead=2, num_layers=2, dropout=0.0)
SEQ = np.array([[0, 0, 0, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 9, 1, 2], [11, 12, 13, 14, 15, 16, 17, 18]])


def test_the_causal_mask_hides_future_items():
    nf.manual_seed(0)
    model = SASRec(CONFIG).eval()
    with nf.no_grad():
        base = model(SEQ).array
        for t in range(1, 8):
            changed = SEQ.copy()
            changed[:, t:] = np.random.default_rng(t).integers(1, 31, (3, 8 - t))
            np.testing.assert_allclose(model(changed).array[:, :t], base[:, :t], atol=1e-6)


@pytest.mark.parametrize("make", [SASRec, RecurrentRecommender])
def test_padding_never_changes_a_real_position(make):
    nf.manual_seed(0)
    model = make(CONFIG).eval()
    with nf.no_grad():
        base = model(SEQ).array
        model.item_emb.weight.array[0] = np.random.default_rng(0).standard_normal(16)  # what a pad would carry
        again = model(SEQ).array
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
    np.testing.assert_array_equal(other.eval()(SEQ).array, model.eval()(SEQ).array)


def test_the_full_softmax_loss_trains_and_ignores_padding():
    nf.manual_seed(0)
    model = SASRec(CONFIG)
    positives = np.where(SEQ != 0, np.roll(SEQ, -1, 1), 0)
    positives[:, -1] = [8, 3, 19]
    first = float(softmax_loss(model, SEQ, positives).item())
    assert first == pytest.approx(np.log(30), rel=0.2)  # about uniform over the catalogue at the start
    with nf.no_grad():  # by hand: the 30 items are the classes (not the padding id), real positions only
        logits = model.score(model(SEQ)).array.astype(np.float64)[..., 1:][positives != 0]
    picked = logits[np.arange(len(logits)), positives[positives != 0] - 1]
    by_hand = np.mean(np.log(np.exp(logits).sum(1)) - picked)
    assert first == pytest.approx(by_hand, rel=1e-5)
    opt = nf.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(100):
        opt.zero_grad()
        loss = softmax_loss(model, SEQ, positives)
        loss.backward()
        opt.step()
    assert float(loss.item()) < 0.1
    h = model.eval()(SEQ)
    assert (model.score(h[:, -1]).array[:, 1:].argmax(1) + 1).tolist() == [8, 3, 19]


def test_negatives_never_include_the_target_or_the_history():
    rng = np.random.default_rng(0)
    seen = set(range(1, 40))
    for _ in range(20):
        negatives = sample_negatives(rng, 150, seen, 100, exclude=[77])
        assert len(set(negatives.tolist())) == 100 and not set(negatives.tolist()) & (seen | {77})


def test_rank_metrics():
    hr, ndcg = rank_metrics(np.array([5.0, 1.0]), np.array([[1.0, 2.0, 6.0], [3.0, 2.0, 1.0]]), k=2)
    assert hr == 0.5 and ndcg == pytest.approx(0.5 / np.log2(3))


def test_the_paired_bootstrap_brackets_the_difference():
    rng = np.random.default_rng(0)
    a = rng.random(500)
    same = paired_difference(a, a, np.random.default_rng(1))
    assert same == {"mean": 0.0, "ci95": [0.0, 0.0]}
    lead = paired_difference(a + 0.1 + 0.01 * rng.standard_normal(500), a, np.random.default_rng(1))
    assert 0.09 < lead["ci95"][0] < lead["mean"] < lead["ci95"][1] < 0.11
    shuffled = paired_difference(a[::-1], a, np.random.default_rng(1))  # the same values, other users
    assert shuffled["mean"] == 0.0 and shuffled["ci95"][0] < 0 < shuffled["ci95"][1]


def test_the_full_softmax_loss_refuses_a_batch_without_targets():
    model = SASRec(CONFIG)
    with pytest.raises(ValueError, match="no position has a target"):
        softmax_loss(model, SEQ, np.zeros_like(SEQ))


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
    (tmp_path / "latin.item").write_bytes("12|Misérables (1995)|x\n".encode("latin-1"))  # GroupLens' own
    (tmp_path / "utf8.item").write_bytes("12|Misérables (1995)|x\n".encode())  # RecBole's copy
    assert load_titles(tmp_path / "latin.item") == load_titles(tmp_path / "utf8.item") == {12: "Misérables (1995)"}
    users = sequences(rows)
    assert users[1].tolist() == [11, 12, 10, 13]  # timestamp order
    split = leave_one_out(users)
    assert split[1][0].tolist() == [11, 12] and split[1][1:] == (10, 13) and 2 not in split  # user 2 has 1 item
    assert left_pad([1, 2, 3], 5).tolist() == [0, 0, 1, 2, 3] and left_pad(range(1, 9), 3).tolist() == [6, 7, 8]
    (tmp_path / "bad.data").write_text("1\tx\n")
    with pytest.raises(ValueError, match="line 1 is not user"):
        load_interactions(tmp_path / "bad.data")


def test_validation_and_test_inputs_never_show_a_model_its_target():
    # user 7: items 1..6 in time order -> history 1..4, validation item 5, test item 6
    split = leave_one_out({7: np.arange(1, 7), 3: np.array([9, 8, 7, 6])})
    inputs, targets = validation_batch(split, 5)
    assert inputs.tolist() == [[0, 0, 0, 9, 8], [0, 1, 2, 3, 4]]  # users by id: 3, then 7
    assert targets.tolist() == [[0, 0, 0, 0, 7], [0, 0, 0, 0, 5]]
    rows, test, seen = evaluation_inputs(split, 5)
    assert rows.tolist() == [[0, 0, 9, 8, 7], [1, 2, 3, 4, 5]] and test.tolist() == [6, 6]
    assert seen == [{9, 8, 7}, {1, 2, 3, 4, 5}]


def test_the_feedforward_width_is_the_configs():
    wide = SASRec(SASRecConfig(num_items=30, max_len=8, d_model=16, dim_feedforward=48))
    assert wide.encoder.layers[0].linear1.weight.shape == (48, 16)
    assert SASRecConfig(num_items=30, d_model=16).dim_feedforward == 16  # the paper's: d_model
    with pytest.raises(ValueError, match="dim_feedforward must be an integer >= 1, got 0"):
        SASRecConfig(num_items=30, dim_feedforward=0)


def test_the_feedforward_activation_is_the_configs():
    x = np.random.default_rng(0).integers(0, 31, (2, 8))
    relu, gelu = (SASRec(SASRecConfig(num_items=30, max_len=8, d_model=16, activation=a)) for a in ("relu", "gelu"))
    gelu.load_state_dict(relu.state_dict())  # the same weights: only the activation differs
    relu.eval(), gelu.eval()
    assert type(gelu.encoder.layers[0].activation).__name__ == "GELU"
    assert not np.allclose(relu(x).array, gelu(x).array)
    with pytest.raises(ValueError, match="activation must be 'relu' or 'gelu', got 'swish'"):
        SASRecConfig(num_items=30, activation="swish")
