"""A run folder never loses work, and every mistake ends in one clear line (exit 2, no traceback).

Each kind of fault drives ``numformer train`` in a temporary folder and checks the exit code, the
single stderr line naming the file or the setting, and the run folder's contents before and
after."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_lm_cli import TINY, cli

from numformer.cli import main


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("The cat sat on the mat. The dog sat on the log. " * 40)
    return path


def snapshot(folder):
    """Every file under ``folder`` with its bytes (what a failed command must leave alone)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train(corpus, out, *extra, steps=6):
    return main(["train", "--data", str(corpus), "--out", str(out), "--max-steps", str(steps), *TINY, *extra])


def one_error_line(capsys, *expected):
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("train:", "warning: "))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def run(tmp_path, corpus, capsys):
    """A finished 6-step run (checkpoints every 3 steps)."""
    out = tmp_path / "run"
    assert train(corpus, out, "--checkpoint-every", "3") == 0
    capsys.readouterr()
    return out


# --- 1. a damaged checkpoint pointer never restarts the run --------------------------------------


@pytest.mark.parametrize(
    ("pointer", "problem"),
    [
        (None, "no checkpoint found"),
        ("", "is empty"),
        ("{not json", "is not valid JSON"),
        ('{"checkpoint": 3}', "does not name a step folder"),
        ('["step-00000006"]', "does not name a step folder"),
        ('{"checkpoint": "../../elsewhere"}', "does not name a step folder"),
    ],
)
def test_a_damaged_pointer_is_one_line_listing_the_checkpoints(run, corpus, capsys, pointer, problem):
    latest = run / "checkpoints" / "latest.json"
    if pointer is None:
        latest.unlink()
    else:
        latest.write_text(pointer)
    before = snapshot(run)
    assert train(corpus, run, "--resume", steps=9) == 2
    line = one_error_line(capsys, problem, "step-00000006")
    assert "step-00000003" in line or pointer is None
    assert snapshot(run) == before  # nothing pruned, nothing restarted, metrics untouched


@pytest.mark.parametrize("step", ['"x"', "-1", "true", "2.5"])
def test_a_checkpoint_whose_step_is_not_a_step_is_one_line(run, corpus, capsys, step):
    """state.json is not in the checkpoint's manifest: a hand-edited step gave a TypeError
    traceback and exit 1 part way into the resume (the breaking pass after issue 36)."""
    state = run / "checkpoints" / "step-00000006" / "state.json"
    state.write_text(re.sub(r'"step": \d+', f'"step": {step}', state.read_text(), count=1))
    before = snapshot(run)
    assert train(corpus, run, "--resume", steps=9) == 2
    one_error_line(capsys, "step-00000006", "state.json", f"step must be an integer >= 0, got {step}")
    assert snapshot(run) == before


def test_a_checkpoint_whose_step_was_edited_is_refused(run, corpus, capsys):
    """Step 6 edited to 4 resumed at step 4 over step 6's weights and cut metrics.jsonl back."""
    state = run / "checkpoints" / "step-00000006" / "state.json"
    state.write_text(re.sub(r'"step": 6\b', '"step": 4', state.read_text(), count=1))
    before = snapshot(run)
    assert train(corpus, run, "--resume", steps=9) == 2
    one_error_line(capsys, "state.json says step 4, but the folder was saved at step 6")
    assert snapshot(run) == before


def test_resume_from_a_chosen_checkpoint(run, corpus, capsys):
    (run / "checkpoints" / "latest.json").write_text("")
    assert main(["train", "--out", str(run), "--resume-from", "3", "--max-steps", "8", "--progress", "false"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # one series: 1-3 kept, 4-8 from the chosen checkpoint
    assert main(["train", "--out", str(run), "--resume-from", "5"]) == 2
    one_error_line(capsys, "--resume-from 5", "no checkpoint of step 5")


# --- 2. training again into a run folder without --resume ------------------------------------------


def test_a_second_run_into_the_same_folder_is_refused_unless_overwrite(run, corpus, capsys):
    before = snapshot(run)
    assert train(corpus, run) == 2
    one_error_line(capsys, "already holds a run", "--resume", "--overwrite")
    assert snapshot(run) == before
    assert train(corpus, run, "--overwrite", steps=2) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


# --- 3. resume reads the run's own configuration ------------------------------------------------


def test_resume_needs_only_the_folder_and_refuses_conflicting_settings(run, capsys):
    run_json = (run / "run.json").read_bytes()
    assert main(["train", "--out", str(run), "--d-model", "32", "--resume"]) == 2
    one_error_line(capsys, "d_model=32", "(the run has 16)", "would change the run")
    assert (run / "run.json").read_bytes() == run_json
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "8", "--progress", "false"]) == 0
    assert json.loads((run / "run.json").read_text())["model"]["d_model"] == 16


# --- 4. every option is checked before the first step ---------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--sample-prompt", "Zebra€"], "sample_prompt"),
        (["--sample-tokens", "-1"], "sample_tokens must be >= 0"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--min-lr", "0.1", "--lr", "0.01"], "min_lr must be in"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--seed", "-3"], "seed must be an integer in [0, 2^63)"),
        (["--d-ff", "-4"], "d_ff must be >= 1"),
        (["--clip-grad-norm", "inf"], "clip_grad_norm must be finite"),
        (["--val-fraction", "1.5"], "val_fraction must be in (0, 1)"),
        (["--tokenizer", "bpe", "--bpe-vocab-size", "5"], "bpe_vocab_size must be >= 257"),  # said BPETokenizer
    ],
)
def test_bad_options_fail_before_anything_is_written(tmp_path, corpus, capsys, flags, expected):
    out = tmp_path / "fresh"
    assert train(corpus, out, *flags) == 2
    one_error_line(capsys, expected)
    assert not out.exists() or not any(out.iterdir())


def test_a_toml_key_given_twice_or_in_the_wrong_table(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("n_layer = 1\n[model]\nn_layer = 2\n")
    assert main(["train", "--config", str(config)]) == 2
    one_error_line(capsys, str(config), "n_layer is given twice")
    config.write_bytes(b"n_layer = 1 # \xff\xfe\n")
    assert main(["train", "--config", str(config)]) == 2
    one_error_line(capsys, str(config), "not UTF-8")


# --- 5. a run that goes non-finite ----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_a_diverging_run_exits_non_zero_and_keeps_the_last_finite_checkpoint(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    code = train(corpus, out, "--lr", "1e30", "--min-lr", "1e30", "--checkpoint-every", "1", "--clip-grad-norm", "1e30")
    assert code == 1
    err = capsys.readouterr().err
    assert "diverged at step" in err and "last finite checkpoint" in err and "Traceback" not in err
    from numformer.models import GPT

    model, _, saved = GPT.load(out / "model")
    assert saved["history"]["status"] == "diverged"
    assert all(np.isfinite(p.array).all() for p in model.parameters())


# --- 6. interrupts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_and_exit_130(tmp_path, corpus, sig):
    out = tmp_path / "run"
    args = ["train", "--data", corpus, "--out", out, "--max-steps", "100000", *TINY, "--checkpoint-every", "100000"]
    proc = subprocess.Popen([sys.executable, "-m", "numformer.cli", *map(str, args)], stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["step"] >= 1 and (out / "model" / "model.safetensors").exists()


# --- 7. checkpoint rotation ------------------------------------------------------------------------


def test_each_step_is_saved_once_and_a_killed_save_is_cleaned_up(run, corpus, capsys):
    folders = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert folders == ["step-00000003", "step-00000006"]  # the final step once, although also the best
    (run / "checkpoints" / ".step-00000009.abcd").mkdir()  # what a kill during a save leaves
    assert train(corpus, run, "--resume") == 0  # resuming a finished run adds no copy
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == folders


# --- 9. paths the user gave ------------------------------------------------------------------------


def test_paths_that_cannot_be_used_are_one_line(tmp_path, corpus, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert train(corpus, a_file) == 2
    one_error_line(capsys, str(a_file), "is a file, not a folder")
    assert train(corpus, a_file / "run") == 2
    one_error_line(capsys, "is a file, so no folder can be made under it")
    assert main(["train", "--config", str(tmp_path)]) == 2
    one_error_line(capsys, str(tmp_path), "is a folder")


def test_a_run_folder_inside_its_data_folder_is_refused(tmp_path, corpus, capsys):
    """The run's own files (run.json, metrics.jsonl, tokenizer.json) would be read as training
    text by the next run on the folder: found by the breaking pass after issue 36."""
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text(corpus.read_text())
    before = snapshot(texts)
    for out in (texts, texts / "run"):
        assert train(texts, out) == 2
        one_error_line(capsys, f"--out {out} lies inside --data {texts}")
        assert snapshot(texts) == before and not (texts / "run").exists()


def test_an_applications_folder_is_never_a_train_run_folder(tmp_path, corpus, capsys):
    """It said "already holds a run (model) ... pass --overwrite", which then removed the app's
    model/ alone and left a broken app folder (the breaking pass after issue 36)."""
    app = tmp_path / "vit"
    (app / "model").mkdir(parents=True)
    (app / "model" / "config.json").write_text("{}")
    (app / "train.json").write_text('{"app": "vit"}')
    before = snapshot(app)
    for extra in ([], ["--overwrite"]):
        assert train(corpus, app, *extra, steps=2) == 2
        one_error_line(capsys, f"{app} holds an application's run (train.json", "choose another --out")
        assert snapshot(app) == before


def test_a_dangling_symlink_as_out_is_named_for_what_it_is(tmp_path, corpus, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert train(corpus, link) == 2
    one_error_line(capsys, f"--out {link} is a symbolic link to {tmp_path / 'gone'}, which does not exist")
    assert not (tmp_path / "gone").exists()


# --- 10. a torn last line in metrics.jsonl ---------------------------------------------------------


def test_a_torn_metrics_line_does_not_block_resume_or_info(run, capsys):
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')  # a crash in the middle of a write
    assert main(["info", str(run)]) == 0
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "7", "--progress", "false"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))


# --- 11. output into a pipe that closes ------------------------------------------------------------


def test_generate_into_a_closed_pipe_ends_quietly(run):
    gen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "numformer.cli",
            "generate",
            "--model",
            str(run),
            "--prompt",
            "The ",
            "--max-new-tokens",
            "4000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    gen.stdout.read(5)
    gen.stdout.close()  # what `| head -c 5` does
    _, err = gen.communicate(timeout=120)
    assert gen.returncode == 0 and b"Traceback" not in err and not err.strip(), err
    assert os.path.exists(run / "model")
    code, out, _ = cli("info", run)
    assert code == 0 and "GPT" in out


# --- 8. model folders: damage and mistakes are one line naming the file -------------------------


def _damage(model, case):
    weights, config, tok = model / "model.safetensors", model / "config.json", model / "tokenizer.json"
    if case == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
        (model / "checksums.json").unlink()
    elif case == "flipped":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif case == "missing_tied_key":
        from safetensors.numpy import load_file, save_file

        state = load_file(str(weights))
        del state["transformer.wte.weight"]
        save_file(state, str(weights))
        (model / "checksums.json").unlink()
    elif case in ("wrong_type", "not_json", "not_an_object", "tokenizer", "tokenizer_size"):
        (model / "checksums.json").unlink()
        info = json.loads(config.read_text())
        if case == "wrong_type":
            info["model"]["tie_weights"] = "yes"
            config.write_text(json.dumps(info))
        elif case == "not_json":
            config.write_text("{model: oops")
        elif case == "not_an_object":
            config.write_text("[1, 2]")
        elif case == "tokenizer":
            tok.write_text('{"type": "bpe", "tokenizer": {"nonsense": 1}}')
        else:
            data = json.loads(tok.read_text())
            data["chars"] = data["chars"][:-1]
            tok.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("case", "file", "expected"),
    [
        ("truncated", "model.safetensors", "truncated"),
        ("flipped", "model.safetensors", "does not match its checksum"),
        ("missing_tied_key", "model.safetensors", "transformer.wte.weight"),
        ("wrong_type", "config.json", "tie_weights must be true or false, got str 'yes'"),
        ("not_json", "config.json", "is not valid JSON"),
        ("not_an_object", "config.json", "expected a JSON object, got an array"),
        ("tokenizer", "tokenizer.json", "is not a numformer tokenizer"),
        ("tokenizer_size", "tokenizer.json", "different runs"),
    ],
)
def test_a_damaged_model_folder_is_one_line_naming_the_file(run, capsys, case, file, expected):
    assert (run / "model" / "checksums.json").exists()
    _damage(run / "model", case)
    assert main(["generate", "--model", str(run), "--prompt", "The ", "--max-new-tokens", "3"]) == 2
    one_error_line(capsys, file, expected)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--temperature", "nan"], "temperature must be a finite number"),
        (["--seed", "-1"], "seed must be an integer"),
        (["--top-k", "0"], "top_k must be >= 1"),
        (["--top-p", "2"], "top_p must be in (0, 1]"),
        (["--max-new-tokens", "-3"], "max_new_tokens must be >= 0"),
    ],
)
def test_sampling_settings_that_are_not_finite_or_out_of_range_are_refused(run, capsys, flags, expected):
    assert main(["generate", "--model", str(run), "--prompt", "The ", *flags]) == 2
    one_error_line(capsys, expected)


def test_an_empty_out_or_data_is_refused(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train(corpus, "") == 2
    one_error_line(capsys, "--out must name a run folder")
    assert main(["train", "--data", "", "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys, "data must name a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]


def test_a_first_run_that_fails_leaves_no_stub_folder(tmp_path, corpus, capsys, monkeypatch):
    out = tmp_path / "run"

    def boom(*args, **kwargs):
        raise ValueError("the first step failed")

    monkeypatch.setattr("numformer.train.trainer.Trainer._train_step", boom)
    assert train(corpus, out) == 2
    one_error_line(capsys, "the first step failed")
    assert not out.exists()  # the retry is not refused as "already holds a run"


def test_a_failed_resume_leaves_run_json_alone(run, capsys):
    run_json = (run / "run.json").read_bytes()
    (run / "checkpoints" / "step-00000006" / "optim.safetensors").unlink()
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "9"]) == 2
    one_error_line(capsys, "optim.safetensors is missing or damaged")
    assert (run / "run.json").read_bytes() == run_json


def test_generate_checks_everything_before_printing(run, capsys):
    assert main(["generate", "--model", str(run), "--prompt", "Zebra€", "--max-new-tokens", "3"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--prompt" in captured.err


def test_a_model_folder_without_its_manifest_loads_with_one_warning_naming_it(run, capsys):
    (run / "model" / "checksums.json").unlink()  # a folder saved before numformer kept manifests
    capsys.readouterr()
    assert main(["generate", "--model", str(run), "--prompt", "The ", "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"warning: {run / 'model' / 'checksums.json'} is missing: the folder's files are loaded unchecked "
        "(a folder saved before numformer kept checksums); save it again to add one"
    ]


def test_a_model_with_non_finite_weights_is_refused(run, capsys):
    from safetensors.numpy import load_file, save_file

    weights = run / "model" / "model.safetensors"
    state = load_file(str(weights))
    state["transformer.ln_f.weight"][0] = np.nan
    save_file(state, str(weights))
    (run / "model" / "checksums.json").unlink()
    assert main(["generate", "--model", str(run), "--prompt", "The "]) == 2
    one_error_line(capsys, "model.safetensors holds non-finite weights", "transformer.ln_f.weight")


# --- 12. a run is pinned to its data (issue 36, item 2) ---------------------------------------------


def test_a_resume_on_changed_data_is_refused_unless_allowed(tmp_path, corpus, capsys, monkeypatch):
    import hashlib

    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", "corpus.txt", "--out", str(out), "--max-steps", "3", *TINY]) == 0
    saved = json.loads((out / "run.json").read_text())
    original = hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert saved["data"] == str(corpus.resolve())  # not "corpus.txt": resumable from any folder
    assert saved["record"]["data_sha256"] == original
    corpus.write_text(corpus.read_text().replace("cat", "act"))  # the same characters, another text
    changed = hashlib.sha256(corpus.read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path / "run")
    before = snapshot(out)
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "5", "--progress", "false"]) == 2
    one_error_line(capsys, "the data changed since the run", str(corpus.resolve()), "--allow-data-change")
    assert snapshot(out) == before  # refused before anything was written
    resume = ["train", "--out", str(out), "--resume", "--max-steps", "5", "--progress", "false"]
    assert main([*resume, "--allow-data-change"]) == 0
    record = json.loads((out / "run.json").read_text())["record"]
    assert record["data_sha256"] == changed and record["id"] == saved["record"]["id"]
    assert record["data_changes"] == [{"step": 3, "from_sha256": original, "to_sha256": changed}]


# --- 13. a resume describes only its own run (issue 36, item 3) -------------------------------------


def test_a_resume_never_rewrites_the_run_or_takes_another_runs_checkpoint(run, tmp_path, corpus, capsys):
    before = snapshot(run)
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "3", "--progress", "false"]) == 2
    one_error_line(capsys, "--max-steps 3 is below step 6", "--max-steps 6 or more")
    assert snapshot(run) == before  # run.json still says max_steps 6
    other = tmp_path / "other"
    assert train(corpus, other, "--checkpoint-every", "3") == 0
    capsys.readouterr()
    foreign = other / "checkpoints" / "step-00000003"
    flags = ["--resume-from", str(foreign), "--max-steps", "8", "--progress", "false"]
    assert main(["train", "--out", str(run), *flags]) == 2
    line = one_error_line(capsys, str(foreign), "belongs to another run")
    assert json.loads((run / "run.json").read_text())["record"]["id"] in line
    assert snapshot(run) == before
    state = json.loads((run / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert state["extra"]["run_id"] == json.loads((run / "run.json").read_text())["record"]["id"]


# --- 14. one train at a time in a run folder (issue 36, item 8) -------------------------------------

PAUSED_TRAIN = """
import sys
from pathlib import Path

from numformer.train import lm
from numformer.train.trainer import Callback


class Pause(Callback):  # at step 8: say so on stdout, then wait for a line on stdin
    def on_step_end(self, trainer, metrics):
        if trainer.step == 8:
            print("paused", flush=True)
            sys.stdin.readline()


config = lm.config_for_resume(Path(sys.argv[1]), {"max_steps": 10, "progress": False})
_, _, result = lm.train(config, resume=True, callbacks=[Pause()], write=lambda text: None)
print(result.status, result.step)
"""


def test_a_train_holds_its_run_folder_against_resume_and_overwrite(run, corpus, capsys):
    """A resume paused in its step 8 (a barrier on its stdin and stdout, not a sleep) holds the
    folder: a second --resume and an --overwrite are refused and change nothing; the first then
    ends as one run."""
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED_TRAIN, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout.readline() == "paused\n", first.stderr.read()  # EOF if it died: no hang
        before = snapshot(run)
        assert main(["train", "--out", str(run), "--resume", "--max-steps", "12", "--progress", "false"]) == 2
        one_error_line(capsys, "another 'numformer train' is writing into", str(run))
        assert train(corpus, run, "--overwrite") == 2
        one_error_line(capsys, "another 'numformer train' is writing into")
        assert snapshot(run) == before
        out, err = first.communicate("go\n", timeout=120)
    finally:
        first.kill() if first.poll() is None else None
    assert first.returncode == 0 and out.endswith("completed 10\n"), err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # one series: no second writer's steps
    assert json.loads((run / "run.json").read_text())["train"]["max_steps"] == 10


# --- 15. closing the terminal saves the run (issue 36, item 9) --------------------------------------

ON_A_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.executable, sys.argv[1:])"
)


def test_closing_the_terminal_saves_the_run(tmp_path, corpus):
    """numformer train on a terminal of its own (a pseudo-terminal it controls); closing the
    terminal sends SIGHUP, as a closed window or a dropped SSH session does: the step ends, the
    run is saved, and nothing more is written to the gone terminal."""
    import pty
    import select

    out = tmp_path / "run"
    args = ["train", "--data", corpus, "--out", out, "--max-steps", "100000", *TINY, "--checkpoint-every", "100000"]
    args += ["--progress", "true", "--eval-every", "1"]  # a progress bar and samples on the terminal
    command = [sys.executable, "-c", ON_A_TERMINAL, sys.executable, "-m", "numformer.cli", *map(str, args)]
    master, terminal = pty.openpty()
    proc = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    metrics, shown = out / "metrics.jsonl", b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size):
        if select.select([master], [], [], 0.05)[0]:  # keep the terminal drained
            shown += os.read(master, 1 << 16)
    os.close(master)  # the terminal hangs up
    assert proc.wait(timeout=60) == 129, shown.decode(errors="replace")
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["step"] >= 1 and (out / "model" / "model.safetensors").exists()
    assert json.loads((out / "model" / "config.json").read_text())  # the model folder is whole


# --- 16. the default sample prompt works on any corpus (issue 36, item 10) --------------------------


@pytest.mark.parametrize("text", ["the cat sat on the mat. " * 80, "ο γάτος κάθεται στο χαλί. " * 80])
def test_the_default_sample_prompt_comes_from_the_data(tmp_path, capsys, text):
    """Lower-case English and Greek hold no 'T': the samples start from the validation text.
    A prompt the user gives is still checked."""
    corpus = tmp_path / "notes.txt"
    corpus.write_text(text)
    assert train(corpus, tmp_path / "run", steps=3) == 0
    samples = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step 3: val loss")]
    assert len(samples) == 1 and samples[0].split(" | ")[1].strip("'")[:4] in text
    assert json.loads((tmp_path / "run" / "run.json").read_text())["sample_prompt"] == ""
    assert train(corpus, tmp_path / "mine", "--sample-prompt", "The ", steps=3) == 2
    one_error_line(capsys, "sample_prompt", "'T'")


# --- 17. sizes that cannot fit are refused before anything is built (issue 36, item 11) -------------


@pytest.mark.parametrize(
    "flags",
    [["--d-model", "65536", "--d-ff", "262144", "--n-layer", "64"], ["--n-layer", str(10**23)]],
    ids=["d-model-65536", "n-layer-1e23"],
)
def test_a_model_too_large_for_memory_is_one_line_with_the_figure(tmp_path, corpus, capsys, flags):
    out = tmp_path / "run"
    assert train(corpus, out, *flags) == 2
    line = one_error_line(capsys, "too large to train here", "parameters", "GiB available")
    assert "need at least" in line
    assert not out.exists()


def test_a_file_or_another_kind_of_model_folder_is_named_for_what_it_is(tmp_path, capsys):
    """generate and info on a file pointed into FILE/model; on an application's folder they said
    config.json lacked a 'model' field."""
    from numformer.serialization.folders import write_model_folder

    (tmp_path / "notes.txt").write_text("mine")
    app = write_model_folder(tmp_path / "app", {"d_model": 16, "trained_with": {"preset": "fast"}}, {})
    hf = write_model_folder(tmp_path / "hf", {"model_type": "gpt2"}, {})
    cases = [
        ("", "the model folder is empty"),  # not the current folder (the breaking pass after issue 36)
        (tmp_path / "notes.txt", "notes.txt is a file: name a model folder, or a run folder"),
        (app, "holds an application's model, not a GPT: use 'numformer app NAME ...'"),
    ]
    for path, message in cases:
        for argv in (["info", str(path)], ["generate", "--model", str(path), "--prompt", "x"]):
            assert main(argv) == 2
            one_error_line(capsys, message)
    # a Hugging Face folder is read as one: its weights file holds no tensor, which info said
    # nothing of ("124,439,808 parameters; weights  in 1 file(s)", exit 0) before the breaking pass
    assert main(["info", str(hf)]) == 2
    one_error_line(capsys, "the weights do not fit config.json", "missing tensor transformer.wte.weight")
    assert main(["generate", "--model", str(hf), "--prompt", "x"]) == 2
    one_error_line(capsys, "tokenizer.json is missing")


@pytest.mark.parametrize(("key", "value"), [("n_head", 1), ("block_size", 10**9)])
def test_a_config_edited_by_hand_is_named_by_its_weights(run, capsys, key, value):
    """No tensor's shape shows the number of heads: without the manifest, an edit loaded and
    generated from another model (and a huge block_size ran out of memory)."""
    (run / "model" / "checksums.json").unlink()
    config = json.loads((run / "model" / "config.json").read_text())
    config["model"][key] = value
    (run / "model" / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["generate", "--model", str(run), "--prompt", "The ", "--max-new-tokens", "3"]) == 2
    one_error_line(capsys, f"config.json: model.{key} is {value}, but model.safetensors was saved with")
