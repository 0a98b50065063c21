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
        ({"d_model": "wide"}, "d_model must be int, got str 'wide'"),
        ({"d_model": 100, "n_head": 3}, r"test: GPTConfig: d_model \(100\) must be divisible by n_head \(3\)"),
        ({"max_steps": 0}, "test: TrainConfig: max_steps must be >= 1, got 0"),
    ],
)
def test_bad_settings_name_the_setting(values, message):
    with pytest.raises(ValueError, match=message):
        RunConfig().updated(values, source="test")
