"""`numformer tour`: each section's claim, measured in fast mode, and its figures."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from numformer.cli import main
from numformer.tour import run


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour")
    sections = {s.number: s for s in run(out=out, fast=True, show=False, html=True, attention_model=out / "no-model")}
    return out, sections


def test_every_section_runs_in_fast_mode(tour):
    # How long each takes is measured (claims["seconds"], printed by the tour), never asserted.
    _, sections = tour
    assert sorted(sections) == list(range(1, 9))
    assert all(s.tables or s.figures for s in sections.values())


def test_1_rnn_takes_T_dependent_steps_attention_one_pass(tour):
    claims = tour[1][1].claims
    for T, (rnn_depth, attention_depth) in claims["depths"].items():
        assert rnn_depth == T  # one recurrent matrix product per position, in order
        assert attention_depth == 3  # projection, attention, output projection: whatever T is
    assert len(claims["rnn_ms"]) == len(claims["lengths"]) and min(claims["attention_ms"]) > 0


def test_2_and_3_attention_shapes_and_distributions(tour):
    two, three = tour[1][2].claims, tour[1][3].claims
    np.testing.assert_allclose(two["row_sums"], 1.0, rtol=1e-6)
    assert tuple(two["output_shape"]) == (5, 8)
    assert tuple(three["weights_shape"]) == (4, 6, 6) and three["distinct_heads"] >= 2


def test_4_rotation_and_similarity(tour):
    claims = tour[1][4].claims
    assert all(err < 1e-9 for err in claims["rotation_errors"].values())
    sims = claims["similarity_from_10"][:6]
    assert all(a > b for a, b in zip(sims, sims[1:]))


def test_5_parameter_count(tour):
    c = tour[1][5].claims
    assert c["seed_formula"] == 16_576
    assert c["numformer"] == c["seed_formula"] + c["layer_norm"] + c["biases"] == 17_088


def test_6_regularisation_lowers_test_mse(tour):
    c = tour[1][6].claims
    assert c["test_mse"]["regularised"] < c["test_mse"]["plain"]
    assert c["train_mse"]["plain"] < c["train_mse"]["regularised"]


def test_7_clipping_and_every_planted_fault_diagnosed(tour):
    c = tour[1][7].claims
    assert c["clip_norm_after"] == pytest.approx(5.0, rel=1e-6)
    assert c["clip_value_max"] <= 1.0
    assert c["diagnosed"] == {"exploding_gradients": True, "dead_relus": True, "nan_loss": True, "overfitting": True}
    np.testing.assert_allclose(c["batchnorm_after_std"], c["batchnorm_expected_std"], rtol=1e-3)
    np.testing.assert_allclose(c["batchnorm_after_std"][:3], 1.0, rtol=1e-3)
    assert set(c["lr_suggestions"]) == {"steepest", "valley", "min_div_10", "min_div_3"}


def test_every_figure_is_written_and_not_blank(tour):
    out, sections = tour
    paths = [p for s in sections.values() for p in s.figures]
    assert len(paths) >= 9  # sections 1, 2, 3, 4 (2), 6 (2), 7 (2)
    for p in paths:
        image = mpimg.imread(p)
        assert image.shape[0] > 200 and image.shape[1] > 200, p
        assert image[..., :3].std() > 0.02, f"{p} looks blank"


def test_cli_runs_chosen_sections(tmp_path, capsys):
    assert main(["tour", "5", "2", "--out", str(tmp_path), "--fast"]) == 0
    printed = capsys.readouterr().out
    assert "5. The Transformer encoder" in printed and "2. Self-attention" in printed
    assert "4. Positional" not in printed
    assert main(["tour", "9", "--out", str(tmp_path)]) == 2
