"""The language-model recipe's configuration: one RunConfig built from GPTConfig and TrainConfig."""

from __future__ import annotations

import dataclasses

import pytest

from numformer.models import GPTConfig
from numformer.train import TrainConfig
from numformer.train.lm import RunConfig


def test_every_model_and_trainer_field_is_a_setting_once():
    table = RunConfig.settings()
    model = {f.name for f in dataclasses.fields(GPTConfig)} - {"vocab_size"}
    train = {f.name for f in dataclasses.fields(TrainConfig)}
    own = {f.name for f in dataclasses.fields(RunConfig)} - {"model", "train"}
    assert not (model & train or model & own or train & own)  # no name means two things
    assert set(table) == model | train | own
    assert {n for n, (section, _, _) in table.items() if section == "model"} == model
    assert {n for n, (section, _, _) in table.items() if section == "train"} == train


def test_flat_and_grouped_settings_land_in_their_section(tmp_path):
    config = RunConfig().updated({"n_layer": 2, "max_steps": 7, "lr": 1e-3, "out": "runs/x"})
    assert config.model.n_layer == 2 and config.train.max_steps == 7 and config.lr == 1e-3
    assert config.train.out_dir == "runs/x" and config.get("n_layer") == 2
    toml = tmp_path / "run.toml"
    toml.write_text("batch_size = 4\n[model]\nd_model = 64\nn_head = 2\n[train]\nclip_grad_norm = 0.5\n")
    loaded = RunConfig.from_toml(toml)
    assert (loaded.batch_size, loaded.model.d_model, loaded.train.clip_grad_norm) == (4, 64, 0.5)
    assert loaded.model_config(vocab_size=99).vocab_size == 99


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_layers": 2}, "unknown setting 'n_layers'"),
        ({"vocab_size": 10}, "unknown setting 'vocab_size'"),  # derived from the tokenizer
        ({"d_model": "wide"}, "d_model must be an integer, got str 'wide'"),
        ({"d_model": 100, "n_head": 3}, r"test: GPTConfig: d_model \(100\) must be divisible by n_head \(3\)"),
        ({"max_steps": 0}, "test: TrainConfig: max_steps must be >= 1, got 0"),
    ],
)
def test_bad_settings_name_the_setting(values, message):
    with pytest.raises(ValueError, match=message):
        RunConfig().updated(values, source="test")


def test_the_feed_forward_width_follows_d_model_unless_given():
    assert RunConfig().updated({"d_model": 64, "n_head": 2}).model.d_ff == 256
    assert RunConfig().updated({"d_model": 64, "n_head": 2, "d_ff": 100}).model.d_ff == 100
    assert "vocab_size" not in RunConfig().to_dict()["model"]  # comes from the tokenizer


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nbatch_size = 4\n", r"batch_size does not belong in \[model\]"),
        ("[train]\nn_layer = 2\n", r"n_layer does not belong in \[train\]"),
        ("[optim]\nlr = 0.1\n", r"unknown table \[optim\]"),
        ("out = 'a'\n[train]\nout_dir = 'b'\n", r"out_dir is given twice \(out and \[train\] out_dir\)"),
        ("n_layer = 2\n[model]\nn_layer = 3\n", r"n_layer is given twice"),
    ],
)
def test_toml_keys_in_the_wrong_table_or_twice_are_refused(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        RunConfig.from_toml(path)


def test_an_alias_and_its_setting_together_are_refused():
    with pytest.raises(ValueError, match="give out or out_dir, not both"):
        RunConfig().updated({"out": "a", "out_dir": "b"})


def test_the_memory_estimate_counts_the_parameters_gpt_builds():
    """GPTConfig.num_parameters counts, without building anything, what GPT builds; the
    memory a run needs grows with it and shrinks per rank under MPI (issue 36, item 11)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from numformer.models import GPT, GPTConfig
    from numformer.train.lm import RunConfig, training_memory

    @settings(max_examples=15, deadline=None)
    @given(
        layers=st.integers(1, 3),
        heads=st.sampled_from([1, 2]),
        width=st.sampled_from([4, 8]),
        d_ff=st.integers(1, 9),
        vocab=st.integers(2, 20),
        block=st.integers(1, 9),
        positions=st.sampled_from(["learned", "sinusoidal", "rotary"]),
        tie=st.booleans(),
        bias=st.booleans(),
    )
    def check(layers, heads, width, d_ff, vocab, block, positions, tie, bias):
        config = GPTConfig(vocab, block, layers, heads, width, d_ff, 0.0, positions, tie, bias)
        assert config.num_parameters() == GPT(config).num_parameters()

    check()
    run = RunConfig().updated({"n_layer": 2, "d_model": 8, "n_head": 2, "block_size": 4, "batch_size": 2})
    params, need = training_memory(run, 10)
    assert need >= 16 * params  # weights, gradients and AdamW's two moments, before any activation
    assert training_memory(run, 10, ranks=2)[1] < need  # each rank holds half the batch's activations


def test_the_memory_estimate_counts_attention_weights_only_where_they_are_kept():
    from numformer.train.lm import RunConfig, training_memory

    def need(block, dropout):
        run = RunConfig().updated({"n_layer": 2, "d_model": 16, "n_head": 2, "block_size": block, "batch_size": 4})
        return training_memory(run.updated({"dropout": dropout}), 10)[1]

    # T 16 <= 3 x head width 8: kept; T 64: recomputed unless dropout keeps it with its mask and P * D
    weights = 2 * 4 * 2 * 64 * 64 * 4  # layers x rows x heads x T^2 x float32
    assert need(64, 0.1) - need(64, 0.0) == 3 * weights
    kept = 2 * 4 * 2 * 16 * 16 * 4
    assert need(16, 0.1) - need(16, 0.0) == 2 * kept
