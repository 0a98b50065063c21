"""`numformer train / generate / lr-find / info / demo` end to end on tiny configurations, and
the one-line errors (exit code 2, no traceback) for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import TINY
from numformer.cli import main


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("The cat sat on the mat. The dog sat on the log. " * 40)
    return path


def cli(*args):
    """Run the installed command in a subprocess: exit code, stdout, stderr."""
    done = subprocess.run([sys.executable, "-m", "numformer.cli", *map(str, args)], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def test_train_generate_info_and_resume(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--max-steps", "6", *TINY]) == 0
    for name in (
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "metrics.jsonl",
        "metrics.png",
        "health_report.txt",
        "checkpoints/latest.json",
    ):
        assert (out / name).exists(), name
    printed = capsys.readouterr().out
    assert "step 3: val loss" in printed and "GPT: 1 layers" in printed
    assert main(["train", "--data", str(corpus), "--out", str(out), "--max-steps", "9", "--resume", *TINY]) == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))
    code, stdout, _ = cli("generate", "--model", out, "--prompt", "The ", "--max-new-tokens", 12, "--seed", 1)
    assert code == 0 and stdout.startswith("The ") and len(stdout.rstrip("\n")) == 16
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "validation loss by step" in shown and "tokenizer: char" in shown


def test_config_file_lr_find_and_bpe(tmp_path, corpus, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nn_layer = 1\nn_head = 2\nd_model = 16\nd_ff = 32\nblock_size = 16\n"
        "[train]\nbatch_size = 4\nprogress = false\n"
        f'[data]\ndata = "{corpus}"\ntokenizer = "bpe"\nbpe_vocab_size = 300\n'
    )
    assert main(["lr-find", "--config", str(config), "--out", str(tmp_path / "lr"), "--steps", "20"]) == 0
    assert (tmp_path / "lr" / "lr_find.png").exists()
    assert "min_div_3" in capsys.readouterr().out


def test_demo_smoke(tmp_path, capsys):
    earlier = tmp_path / "demo"
    earlier.mkdir()
    (earlier / "run.json").write_text('{"earlier": true}')  # a run the user may have trained on
    assert main(["demo", "--seconds", "2", "--out", str(tmp_path / "demo")]) == 0
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("demo-")]
    assert len(kept) == 1 and (kept[0] / "run.json").read_text() == '{"earlier": true}'  # kept aside, not replaced
    for name in ("attention.png", "metrics.png", "health_report.txt", "model/model.safetensors"):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "before training" in printed and "Generation" in printed


@pytest.mark.parametrize(
    "case",
    [
        "unknown_flag",
        "missing_data",
        "wrong_type",
        "empty_corpus",
        "bad_prompt",
        "nothing_to_resume",
        "missing_model",
        "bad_toml_key",
        "penalty_zero_on_gpt",
        "system_empty_on_gpt",
    ],
)
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, corpus):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[model]\nn_layer = "two"\n')
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("n_layers = 2\n")
    run = tmp_path / "run"
    if case in ("bad_prompt", "penalty_zero_on_gpt", "system_empty_on_gpt"):
        assert main(["train", "--data", str(corpus), "--out", str(run), "--max-steps", "2", *TINY]) == 0
    args, expected = {
        "unknown_flag": (["train", "--bogus", "1"], "unrecognized arguments: --bogus"),
        "missing_data": (["train", "--data", tmp_path / "nope.txt", "--out", run], "does not exist"),
        "wrong_type": (["train", "--config", wrong], "n_layer must be an integer, got str 'two'"),
        "empty_corpus": (["train", "--data", empty, "--out", run], "is empty"),
        "bad_prompt": (["generate", "--model", run, "--prompt", "Zebra€"], "outside the"),
        "nothing_to_resume": (
            ["train", "--data", corpus, "--out", tmp_path / "fresh", "--resume"],
            "nothing to resume",
        ),
        "missing_model": (["generate", "--model", tmp_path / "none", "--prompt", "x"], "no model found"),
        "bad_toml_key": (["train", "--config", unknown], "unknown setting 'n_layers'"),
        # a value that compares equal to False is still given: refused, never silently ignored
        "penalty_zero_on_gpt": (
            ["generate", "--model", run, "--prompt", "The", "--repetition-penalty", "0"],
            "--repetition-penalty needs a Hugging Face model folder",
        ),
        "system_empty_on_gpt": (
            ["generate", "--model", run, "--prompt", "The", "--system", ""],
            "--system needs a Hugging Face model folder",
        ),
    }[case]
    code, _, stderr = cli(*args)
    assert code == 2, stderr
    assert expected in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
