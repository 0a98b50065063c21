"""`numformer app`: every application's train, eval and predict end to end in its --fast
setting, the eval --json contract, and one-line errors (exit 2) for bad requests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from numformer.apps import EVAL_KEYS, registry
from numformer.apps.translate import Vocab, date_pairs, from_pieces, number_pairs, to_pieces
from numformer.cli import main

PREDICT = {
    "translate-numbers": ["402", "twenty-one"],
    "translate-dates": ["March 14, 2024"],
    "classify": ["Now is the winter of our discontent made glorious summer by this sun of York"],
    "vit": ["test:0", "test:5"],
    "forecast": ["co2"],
    "anomaly": ["SERIES_FILE"],
    "sasrec": ["--user", "5"],
}


def errors(capsys) -> str:
    """stderr without its warning lines (a folder copied without its manifests warns)."""
    lines = capsys.readouterr().err.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("warning: "))


def copy_run(trained: Path, name: str, out: Path, checked: bool = True) -> Path:
    """A copy of a trained app folder; ``checked=False`` drops its manifests (``checksums.json``)
    and the config its weights files keep in their headers, as in a folder saved before
    numformer kept them, so a hand edit reaches the checks behind."""
    import shutil

    from numformer.serialization.safetensors import load_arrays, save_arrays

    shutil.copytree(trained / name, out)
    if not checked:
        for manifest in out.rglob("checksums.json"):
            manifest.unlink()
        for inner in ("model", "baseline", "scratch"):
            for weights in (out / inner).rglob("*.safetensors"):
                save_arrays(load_arrays(weights), weights)
            if (out / inner / "config.json").is_file():
                config = json.loads((out / inner / "config.json").read_text())
                config["trained_with"].pop("split", None)  # nor a digest of each value of split.json
                (out / inner / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("apps")
    for name in PREDICT:
        assert main(["app", name, "train", "--fast", "--out", str(root / name)]) == 0
    assert main(["app", "anomaly", "eval", "--out", str(root / "anomaly")]) == 0  # predict uses its threshold
    series = np.sin(np.arange(80) / 8.0) + 360.0
    series[50] += 30.0
    (root / "series.txt").write_text("\n".join(f"{v:.3f}" for v in series) + "\n")
    PREDICT["anomaly"] = [str(root / "series.txt")]
    return root


@pytest.mark.parametrize("name", sorted(PREDICT))
def test_eval_json_is_one_object_with_the_contract_keys(name, trained, capsys):
    capsys.readouterr()
    assert main(["app", name, "eval", "--out", str(trained / name), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = json.loads(out)
    assert set(EVAL_KEYS) <= set(result) and result["app"] == name
    assert result["n_test"] > 0 and np.isfinite([result["score"], result["baseline_score"]]).all()
    if name != "forecast":  # MASE is not bounded by 1
        assert 0.0 <= result["score"] <= 1.0 and 0.0 <= result["baseline_score"] <= 1.0
    for figure in result.get("figures", []):
        assert Path(figure).stat().st_size > 5_000
    assert json.loads((trained / name / "eval.json").read_text()) == result


@pytest.mark.parametrize("name", sorted(PREDICT))
def test_predict_prints_one_line_per_input(name, trained, capsys):
    capsys.readouterr()
    assert main(["app", name, "predict", "--out", str(trained / name), *PREDICT[name]]) == 0
    lines = capsys.readouterr().out.splitlines()
    # co2's horizon; the flagged points; the user's history and top 10
    expected = {"forecast": 104, "anomaly": None, "sasrec": 17}.get(name, len(PREDICT[name]))
    assert len(lines) == expected if expected is not None else len(lines) >= 1


def test_list_shows_every_application(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where "yours" is read from: runs/apps/NAME/eval.json
    for name, preset in (("vit", "fast"), ("sasrec", "full")):
        (tmp_path / "runs" / "apps" / name).mkdir(parents=True)
        (tmp_path / "runs" / "apps" / name / "eval.json").write_text(json.dumps({"score": 0.123456, "preset": preset}))
    assert main(["app", "list"]) == 0
    out = capsys.readouterr().out
    for name in registry():
        assert name in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    assert "0.1235*" in rows["vit"] and "0.1235 " in rows["sasrec"] and "*: your run was trained with --fast" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["app", "nope", "train"], "no application 'nope'"),
        (["app", "translate-numbers"], "say what to do with translate-numbers"),
        (["app", "translate-numbers", "eval", "--out", "missing"], "no trained translate-numbers in missing"),
        (["app", "translate-numbers", "train", "--steps", "0"], "--steps must be >= 1"),
        (["app", "translate-numbers", "eval", "extra"], "eval takes no inputs"),
        (["app", "list", "train"], "'list' takes no verb"),
        (["app", "list", "--seed", "3"], "--seed goes with train, not list"),
        (["app", "sasrec", "train", "--user", "3"], "--user goes with predict, not train"),
        (["app", "sasrec", "eval", "--steps", "0"], "--steps goes with train, not eval"),
        (["app", "sasrec", "eval", "--seed", "0"], "--seed goes with train, not eval"),
        (["app", "sasrec", "predict", "--fast", "--user", "3"], "--fast goes with train, not predict"),
        (["app", "sasrec", "eval", "--overwrite"], "--overwrite goes with train, not eval"),
        (["app", "sasrec", "predict", "--json", "--user", "3"], "--json goes with eval, not predict"),
        (["app", "vit", "predict", "--user", "3", "test:0"], "--user is not an input of vit"),
        (["app", "sasrec", "train", "--out", "README"], "--out README is a file"),
        (["app", "vit", "train", "--fast", "--out", ""], "--out is empty: name a folder"),  # not runs/apps/vit
        (["app", "sasrec", "eval", "--out", "README"], "--out README is a file"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README").write_text("mine")
    assert main(argv) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("argv", [["translate-numbers", "predict", "5"], ["forecast", "eval"]])
def test_a_folder_with_no_model_is_one_line_without_a_manifest_warning(argv, capsys, tmp_path):
    """No warning that nowhere/model/checksums.json is missing before the error that nothing is
    there (the breaking pass after issue 36): stderr is the error line alone."""
    assert main(["app", *argv, "--out", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no trained"), err


def test_predict_refuses_input_the_model_cannot_take(trained, capsys):
    out = str(trained / "translate-numbers")
    assert main(["app", "translate-numbers", "predict", "--out", out, "banana"]) == 2
    assert "never saw 'banana'" in capsys.readouterr().err
    assert main(["app", "translate-numbers", "predict", "--out", out, "1000000"]) == 2
    assert "up to 999,999" in capsys.readouterr().err
    assert main(["app", "translate-numbers", "predict", "--out", out]) == 2
    assert "predict needs input" in capsys.readouterr().err


def test_the_verb_inputs_and_options_parse_in_any_order(trained, capsys):
    """A verb after an option, inputs after ``--`` (one may begin with '-'), a negative number."""
    out = str(trained / "vit")
    assert main(["app", "vit", "--out", out, "predict", "test:0"]) == 0
    assert main(["app", "--out", out, "vit", "predict", "test:1", "--", "test:2"]) == 0
    assert capsys.readouterr().out.count("\n") == 3
    numbers = str(trained / "translate-numbers")
    assert main(["app", "translate-numbers", "predict", "--out", numbers, "--", "-banana"]) == 2
    assert "cannot translate '-banana'" in capsys.readouterr().err  # the input reached the model's vocabulary
    assert main(["app", "translate-numbers", "predict", "--out", numbers, "-1"]) == 2
    assert "cannot translate '-1'" in capsys.readouterr().err
    assert main(["app", "translate-numbers", "predict", "--out", numbers, "-banana"]) == 2
    assert "unrecognized arguments: -banana (see 'numformer app --help')" in capsys.readouterr().err
    assert main(["app", "--out", numbers]) == 2
    assert "name an application, or 'list'" in capsys.readouterr().err


def test_a_folder_of_another_app_is_refused_by_name(trained, capsys):
    out = str(trained / "translate-dates")
    for verb in (["eval"], ["predict", "four"], ["train", "--fast", "--overwrite"]):
        assert main(["app", "translate-numbers", *verb, "--out", out]) == 2
        assert "holds a trained translate-dates, not translate-numbers" in capsys.readouterr().err
    assert (trained / "translate-dates" / "model").is_dir()  # nothing was removed


def test_a_run_stopped_part_way_can_be_replaced_with_overwrite(tmp_path, capsys, monkeypatch):
    from numformer.apps import recommend

    def stop_after_the_first_model(out, *args):
        (out / "model").mkdir()
        (out / "model" / "sasrec.safetensors").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(recommend.APPS[0], "train", stop_after_the_first_model)
    assert main(["app", "sasrec", "train", "--fast", "--out", str(tmp_path)]) != 0  # Ctrl-C: the CLI stops
    monkeypatch.undo()
    assert main(["app", "sasrec", "train", "--fast", "--out", str(tmp_path)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["app", "sasrec", "train", "--fast", "--overwrite", "--out", str(tmp_path)]) == 0


def test_a_stopped_overwrite_leaves_the_last_run_whole(trained, tmp_path, capsys, monkeypatch):
    """--overwrite trains beside the last run and replaces it only once the new one completes:
    Ctrl-C part-way leaves the old model working, and nothing of the user's is removed."""
    import shutil

    from numformer.apps import recommend
    from numformer.serialization.runs import STAGE

    out = tmp_path / "sasrec"
    shutil.copytree(trained / "sasrec", out)
    assert main(["app", "sasrec", "eval", "--out", str(out)]) == 0
    before = (out / "eval.json").read_text()
    for mine in ("train-mine/notes.txt", "figures/my.png", "scratch/ideas.txt", "README.md"):  # sasrec writes none
        (out / mine).parent.mkdir(exist_ok=True)
        (out / mine).write_text("mine")
    capsys.readouterr()

    def stop_part_way(stage, *args):
        (stage / "model").mkdir()
        (stage / "model" / "sasrec.safetensors").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(recommend.APPS[0], "train", stop_part_way)
    assert main(["app", "sasrec", "train", "--fast", "--overwrite", "--out", str(out)]) == 130
    said = " ".join(capsys.readouterr().out.split())  # one line, however long
    assert f"the stopped train's files are in {out / STAGE} (nothing resumes" in said and f"{out} is as it was" in said
    monkeypatch.undo()
    assert main(["app", "sasrec", "eval", "--out", str(out)]) == 0  # the old model, whole
    assert (out / "eval.json").read_text() == before
    assert main(["app", "sasrec", "train", "--fast", "--out", str(out)]) == 2  # replaced only when told
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["app", "sasrec", "train", "--fast", "--seed", "1", "--overwrite", "--out", str(out)]) == 0
    assert not (out / STAGE).exists() and not (out / ".train-old").exists()
    assert not (out / "eval.json").exists()  # it scored the old model
    assert json.loads((out / "split.json").read_text())["seed"] == 1
    for mine in ("train-mine/notes.txt", "figures/my.png", "scratch/ideas.txt", "README.md"):
        assert (out / mine).read_text() == "mine"
    assert set(json.loads((out / "train.json").read_text())["files"]) >= {"model", "split.json", "train-sasrec"}
    assert main(["app", "sasrec", "eval", "--out", str(out)]) == 0


def test_overwrite_replaces_the_last_evals_figures_and_keeps_yours(trained, tmp_path, capsys):
    import shutil

    out = tmp_path / "vit"
    shutil.copytree(trained / "vit", out)
    assert main(["app", "vit", "eval", "--out", str(out)]) == 0
    theirs = [Path(f).name for f in json.loads((out / "eval.json").read_text())["figures"]]
    assert theirs and all((out / "figures" / f).is_file() for f in theirs)
    (out / "figures" / "my.png").write_text("mine")
    assert main(["app", "vit", "train", "--fast", "--steps", "2", "--overwrite", "--out", str(out)]) == 0
    assert not any((out / "figures" / f).exists() for f in theirs)  # they showed the old model
    assert (out / "figures" / "my.png").read_text() == "mine"


def test_a_first_train_stopped_part_way_is_advised_by_its_own_options(tmp_path, capsys, monkeypatch):
    from numformer.apps import recommend

    def stop(stage, *args):
        (stage / "train-sasrec").mkdir()  # its metrics so far
        raise KeyboardInterrupt

    monkeypatch.setattr(recommend.APPS[0], "train", stop)
    assert main(["app", "sasrec", "train", "--fast", "--seed", "2", "--out", str(tmp_path)]) == 130
    assert f"{tmp_path} holds no other run" in " ".join(capsys.readouterr().out.split())
    monkeypatch.undo()
    assert main(["app", "sasrec", "eval", "--out", str(tmp_path)]) == 2
    err = errors(capsys)
    assert f'train --out {tmp_path} --fast --seed 2 --overwrite" to train it again' in err
    assert main(["app", "sasrec", "train", "--fast", "--seed", "2", "--overwrite", "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize("edit", [{"num_items": 10**9}, {"num_layers": 10**6}, {"d_model": 2**20}])
def test_a_config_edited_past_its_weights_is_one_line_before_any_allocation(edit, trained, tmp_path, capsys):
    out = copy_run(trained, "sasrec", tmp_path / "sasrec", checked=False)
    config = json.loads((out / "model" / "config.json").read_text())
    (out / "model" / "config.json").write_text(json.dumps({**config, **edit}))
    assert main(["app", "sasrec", "predict", "--user", "5", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and "does not fit model/config.json" in err


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("vit", {"depth": 10**5}, "does not fit model/config.json"),
        ("vit", {"d_model": 2**16, "num_heads": 1}, "does not fit model/config.json"),
        ("vit", {"mlp_ratio": -1.0}, "mlp_ratio must make a hidden width >= 1"),
        ("vit", {"dropout": 5}, "dropout must be in [0, 1), got 5"),
        ("translate-numbers", {"config": {"num_encoder_layers": 10**5}}, "does not fit model/config.json"),
        ("translate-numbers", {"config": {"max_len": 10**9}}, "does not fit model/config.json"),
        ("translate-numbers", {"config": {"dropout": 2.0}}, "dropout must be in [0, 1), got 2.0"),
    ],
)
def test_a_vit_or_translate_config_edited_past_its_weights_is_one_line(name, edit, message, trained, tmp_path, capsys):
    """As for sasrec: the sizes are checked against the file's header before a model is built."""
    out = copy_run(trained, name, tmp_path / name, checked=False)
    config = json.loads((out / "model" / "config.json").read_text())
    if "config" in edit:
        edit = {"config": {**config["config"], **edit["config"]}}
    (out / "model" / "config.json").write_text(json.dumps({**config, **edit}))
    assert main(["app", name, "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and message in err and "--overwrite" in err


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("vit", {"seed": "a"}, "seed must be 0, the model's, got 'a'"),
        ("vit", {"seed": -5}, "seed must be 0, the model's, got -5"),
        ("sasrec", {"seed": 1}, "seed must be 0, the model's, got 1"),  # another split: never scored
        ("sasrec", {"preset": "full"}, "preset must be 'fast', the model's, got 'full'"),
    ],
)
def test_a_split_edited_to_another_is_one_line(name, edit, message, trained, tmp_path, capsys):
    import shutil

    out = tmp_path / name
    shutil.copytree(trained / name, out)
    (out / "split.json").write_text(json.dumps({**json.loads((out / "split.json").read_text()), **edit}))
    assert main(["app", name, "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and f"split.json: {message}" in err and "--overwrite" in err


@pytest.mark.parametrize(
    ("name", "cls", "edit", "message"),
    [
        ("sasrec", "SASRecConfig", {"d_model": "16"}, "d_model must be an integer, got str '16'"),
        ("sasrec", "SASRecConfig", {"colour": 1}, "'colour'"),
        ("vit", "ViTConfig", {"d_model": 16.0}, "d_model must be an integer, got float 16.0"),
        ("vit", "ViTConfig", {"dropout": "x"}, "dropout must be a number, got str 'x'"),
    ],
)
def test_a_config_of_wrong_fields_is_one_line_naming_the_file_and_field(
    name, cls, edit, message, trained, tmp_path, capsys
):
    out = copy_run(trained, name, tmp_path / name, checked=False)
    config = json.loads((out / "model" / "config.json").read_text())
    (out / "model" / "config.json").write_text(json.dumps({**config, **edit}))
    assert main(["app", name, "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and f"model/config.json does not hold a {cls}" in err and message in err


@pytest.mark.parametrize(
    ("name", "file", "message"),
    [
        ("sasrec", "model/config.json", ".safetensors was saved with"),  # its weights name the key
        ("vit", "baseline/baseline.safetensors", "is missing or damaged: it does not match its checksum"),
        ("vit", "baseline/config.json", "is missing or damaged: it does not match its checksum"),
    ],
)
def test_a_hand_edited_model_folder_is_refused_by_its_manifest(name, file, message, trained, tmp_path, capsys):
    out = copy_run(trained, name, tmp_path / name)
    path = out / file
    path.write_bytes(path.read_bytes().replace(b"1", b"2", 1))
    assert main(["app", name, "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and f"{file}" in err and message in err
    assert f'train --out {out} --fast --overwrite" to train it again' in err


def test_sasrec_predict_reads_only_the_sasrec_weights(trained, tmp_path, capsys):
    import shutil

    out = tmp_path / "sasrec"
    shutil.copytree(trained / "sasrec", out)
    (out / "model" / "lstm.safetensors").unlink()
    assert main(["app", "sasrec", "predict", "--user", "5", "--out", str(out)]) == 0
    assert "top 10 next" in capsys.readouterr().out
    assert main(["app", "sasrec", "eval", "--out", str(out)]) == 2  # eval does need the baseline
    assert "lstm.safetensors" in capsys.readouterr().err


def test_train_never_replaces_a_trained_model_unless_told(trained, capsys):
    out = str(trained / "translate-dates")
    assert main(["app", "translate-dates", "train", "--fast", "--out", out]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["app", "translate-dates", "train", "--fast", "--out", out, "--overwrite", "--steps", "2"]) == 0


def test_a_second_train_into_a_folder_being_written_is_refused(tmp_path, capsys):
    import fcntl

    (tmp_path / "train.json").write_text(json.dumps({"app": "sasrec", "status": "training"}))
    (tmp_path / "train-sasrec").mkdir()
    with open(tmp_path / ".train.lock", "a") as first:  # what a train in progress holds
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["app", "sasrec", "train", "--fast", "--overwrite", "--out", str(tmp_path)]) == 2
        assert "is writing into" in capsys.readouterr().err
        assert (tmp_path / "train-sasrec").is_dir()  # nothing was removed
        assert main(["app", "sasrec", "eval", "--out", str(tmp_path)]) == 2  # not advice to train it again
        assert "a train is writing this folder now: wait for it to end" in capsys.readouterr().err
    # once it has ended (the lock is free), its leftovers are replaced only when told
    assert main(["app", "sasrec", "train", "--fast", "--out", str(tmp_path)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("mine", ["model/my.txt", "figures/plot.png", "baseline/my.txt", "eval.json", "train-x/a"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_train_never_deletes_a_folder_no_app_vouches_for(mine, overwrite, tmp_path, capsys):
    (tmp_path / mine).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / mine).write_text("mine")
    argv = ["app", "sasrec", "train", "--fast", "--out", str(tmp_path)] + (["--overwrite"] if overwrite else [])
    assert main(argv) == 2
    assert "no readable train.json" in capsys.readouterr().err
    assert (tmp_path / mine).read_text() == "mine"


def test_an_out_under_a_file_or_naming_no_app_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["app", "vit", "eval", "--out", str(tmp_path / "afile" / "sub")]) == 2
    assert f"lies under {tmp_path / 'afile'}, which is a file" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.json").write_text(json.dumps({"app": "foo"}))
    assert main(["app", "vit", "eval", "--out", str(tmp_path / "run")]) == 2
    assert "names 'foo', which is no application: choose another --out" in capsys.readouterr().err
    (tmp_path / "run" / "train.json").write_text(json.dumps({"app": "vit"}))
    (tmp_path / "run" / "split.json").mkdir()
    assert main(["app", "vit", "eval", "--out", str(tmp_path / "run")]) == 2
    assert "split.json is not a file" in capsys.readouterr().err


def test_weights_of_another_model_are_one_short_line(trained, tmp_path, capsys):

    from numformer.serialization.safetensors import load_arrays as load_file
    from numformer.serialization.safetensors import save_arrays as save_file

    out = copy_run(trained, "vit", tmp_path / "vit", checked=False)
    path = out / "model" / "model.safetensors"
    weights = load_file(path)  # another model's: the sizes checked first agree, the rest do not
    save_file(
        {k: v for k, v in weights.items() if not k.startswith(("cls", "norm", "patch_embed.bias", "head.bias"))}
        | {"extra": weights["pos_embed"]},
        path,
    )
    assert main(["app", "vit", "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and "problem(s): " in err and " more; run " in err and len(err) < 1000


def test_a_train_that_stops_before_training_anything_needs_no_overwrite(tmp_path, capsys, monkeypatch):
    from numformer.apps import AppError, recommend
    from numformer.serialization.runs import STAGE

    def missing_package(stage, *args):
        raise AppError("MovieLens-100K comes from the recbole package's files")

    monkeypatch.setattr(recommend.APPS[0], "train", missing_package)
    assert main(["app", "sasrec", "train", "--fast", "--out", str(tmp_path)]) == 2
    assert "stopped train" not in capsys.readouterr().out and not (tmp_path / STAGE).exists()
    monkeypatch.undo()
    assert main(["app", "sasrec", "train", "--fast", "--out", str(tmp_path)]) == 0


def test_a_failed_move_into_the_folder_puts_everything_back(trained, tmp_path, capsys, monkeypatch):
    import shutil

    from numformer.serialization.runs import REPLACING, STAGE

    out = tmp_path / "sasrec"
    shutil.copytree(trained / "sasrec", out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rename, calls = Path.rename, []

    def fourth_fails(self, target):
        calls.append(self)
        if len(calls) == 4:
            raise PermissionError(13, "Permission denied", str(self))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", fourth_fails)
    assert main(["app", "sasrec", "train", "--fast", "--seed", "1", "--overwrite", "--out", str(out)]) == 2
    monkeypatch.undo()
    err = errors(capsys)
    assert err.count("\n") == 1 and f"{out} is as it was and the new run is in {out / STAGE}" in err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and STAGE not in p.parts}
    assert after == before and not (out / REPLACING).exists()
    assert main(["app", "sasrec", "eval", "--out", str(out)]) == 0
    assert main(["app", "sasrec", "train", "--fast", "--seed", "1", "--overwrite", "--out", str(out)]) == 0


def test_the_files_of_a_run_being_replaced_when_a_train_was_killed_are_never_removed(tmp_path, capsys):
    from numformer.serialization.runs import REPLACING

    (tmp_path / "train.json").write_text(json.dumps({"app": "sasrec"}))
    (tmp_path / REPLACING / "model").mkdir(parents=True)
    assert main(["app", "sasrec", "train", "--fast", "--overwrite", "--out", str(tmp_path)]) == 2
    assert "move them back" in capsys.readouterr().err and (tmp_path / REPLACING / "model").is_dir()


def test_an_eval_that_a_train_overtook_writes_no_eval_json(trained, tmp_path, capsys, monkeypatch):
    import shutil

    from numformer.apps import recommend

    out = tmp_path / "sasrec"
    shutil.copytree(trained / "sasrec", out)
    (out / "eval.json").unlink(missing_ok=True)
    evaluate = recommend.APPS[0].evaluate

    def overtaken(folder):
        result = evaluate(folder)
        (folder / "train.json").write_text(json.dumps({"app": "sasrec", "new": True}))
        return result

    monkeypatch.setattr(recommend.APPS[0], "evaluate", overtaken)
    assert main(["app", "sasrec", "eval", "--out", str(out)]) == 2
    assert "was trained again while eval ran" in capsys.readouterr().err and not (out / "eval.json").exists()


def test_a_model_larger_than_memory_is_one_line(trained, capsys, monkeypatch):
    from numformer.apps import recommend

    def too_big(folder, *args):
        raise MemoryError("Unable to allocate 128. GiB")

    monkeypatch.setattr(recommend.APPS[0], "evaluate", too_big)
    assert main(["app", "sasrec", "eval", "--out", str(trained / "sasrec")]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and "ran out of memory" in err and "the inputs given, or the model" in err


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("model/config.json", "model/config.json is missing"),
        ("model/model.safetensors", "model.safetensors is missing or damaged"),
        ("split.json", "split.json is missing"),
        ("train.json", "train.json is damaged"),
    ],
)
def test_the_advice_for_a_damaged_folder_is_a_command_that_works(damage, named, trained, tmp_path, capsys):
    """eval names the file and the next step; that step is what train then does: --overwrite
    over this app's run, and for a folder without a readable train.json (which --overwrite
    never clears) another --out."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained / "translate-numbers", out)
    if damage == "train.json":
        (out / damage).write_text("{not json")
    else:
        (out / damage).unlink()
    assert main(["app", "translate-numbers", "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and named in err
    again = ["app", "translate-numbers", "train", "--fast", "--steps", "2", "--out", str(out), "--overwrite"]
    if damage == "train.json":
        assert "another --out" in err and "--overwrite" not in err
        assert main(again) == 2
        assert "no readable train.json" in capsys.readouterr().err
    else:
        assert f'train --out {out} --fast --overwrite" to train it again' in err
        assert main(again) == 0
        assert main(["app", "translate-numbers", "eval", "--out", str(out)]) == 0


def _edit_translate(out: Path, edit: str) -> None:
    split, config = out / "split.json", out / "model" / "config.json"
    info = json.loads(config.read_text())
    if edit.startswith("test="):
        split.write_text(json.dumps({**json.loads(split.read_text()), "test": json.loads(edit[5:])}))
    elif edit == "truncated src_vocab":
        config.write_text(json.dumps({**info, "src_vocab": info["src_vocab"][:-1]}))
    elif edit == "tgt_vocab not a list":
        config.write_text(json.dumps({**info, "tgt_vocab": "abc"}))
    elif edit.startswith("kind="):
        config.write_text(json.dumps({**info, "kind": edit[5:]}))
    else:  # pad_id=N
        config.write_text(json.dumps({**info, "config": {**info["config"], "pad_id": int(edit[7:])}}))


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("test=[[1, 2]]", "split.json is damaged (its test must be"),
        ("test=[]", "split.json is damaged (its test must be"),
        ('test="abc"', "split.json is damaged (its test must be"),
        ("truncated src_vocab", "src_vocab holds"),
        ("tgt_vocab not a list", "tgt_vocab must be a list of distinct strings"),
        ("kind=gru", "kind must be 'transformer', got 'gru'"),
        ("pad_id=5", "pad_id must be 0"),
        ("pad_id=1000000", "pad_id must be an id of both vocabularies"),
    ],
)
def test_a_hand_edited_translate_folder_is_one_line_naming_the_file(edit, named, trained, tmp_path, capsys):
    """Never a traceback, nor a score from a vocabulary that does not fit the model."""
    out = copy_run(trained, "translate-numbers", tmp_path / "run", checked=False)
    _edit_translate(out, edit)
    for verb in (["eval"], ["predict", "12"]):
        if edit.startswith("test=") and verb == ["predict", "12"]:
            continue  # predict reads no test set
        assert main(["app", "translate-numbers", *verb, "--out", str(out)]) == 2
        err = errors(capsys)
        assert err.count("\n") == 1 and named in err and "--overwrite" in err


@pytest.mark.parametrize(
    ("name", "damage", "named"),
    [
        ("vit", "missing", "no such file"),
        ("vit", "truncated", "is truncated or not a safetensors file"),  # a folder from before manifests
        ("vit", "coef (3, 64)", "does not hold coef as float (10, 64), got float"),
        ("classify", "missing", "no such file"),
        ("classify", "coef (3, 7)", "does not hold coef as float (3, "),
        ("classify", "classes [0]", "classes must be the label ids 0..2, got [0]"),
    ],
)
def test_a_damaged_baseline_is_one_line_with_advice(name, damage, named, trained, tmp_path, capsys):
    from numformer.serialization.safetensors import load_arrays as load_file
    from numformer.serialization.safetensors import save_arrays as save_file

    out = copy_run(trained, name, tmp_path / name, checked=False)
    path = out / "baseline" / "baseline.safetensors"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif damage.startswith("coef"):
        rows, cols = (int(n) for n in damage[6:-1].split(", "))
        save_file({**load_file(path), "coef": np.zeros((rows, cols))}, path)
    else:
        config = out / "baseline" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "classes": [0]}))
    assert main(["app", name, "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and named in err and f'train --out {out} --fast --overwrite"' in err


@pytest.mark.parametrize(
    ("name", "inner"), [("forecast", "model/*/*.safetensors"), ("classify", "scratch/config.json")]
)
def test_the_advice_for_a_file_nested_in_the_folder_names_the_app_folder(name, inner, trained, tmp_path, capsys):
    """forecast keeps a model per horizon in model/NAME/, classify its own in scratch/: the
    advice trains the app folder again, never a folder inside it."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained / name, out)
    victim = sorted(out.glob(inner))[0]
    victim.unlink()
    assert main(["app", name, "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and f'train --out {out} --fast --overwrite" to train it again' in err


def test_the_advice_for_an_empty_folder_is_plain_train_and_for_a_begun_one_overwrite(tmp_path, capsys):
    assert main(["app", "sasrec", "eval", "--out", str(tmp_path)]) == 2
    advice = f'run "numformer app sasrec train --out {tmp_path}" first'
    assert f"no trained sasrec in {tmp_path} (split.json is missing): {advice}" in capsys.readouterr().err
    # what an interrupted train left before trains moved in only once complete: a train.json
    (tmp_path / "train.json").write_text(json.dumps({"app": "sasrec", "status": "training"}))
    assert main(["app", "sasrec", "eval", "--out", str(tmp_path)]) == 2
    assert f'train --out {tmp_path} --overwrite" to train it again' in capsys.readouterr().err
    assert main(["app", "sasrec", "train", "--fast", "--overwrite", "--out", str(tmp_path)]) == 0


def test_the_advice_repeats_the_options_of_the_train_that_wrote_the_folder(tmp_path):
    from numformer.apps.folder import retrain_advice

    out = tmp_path / "my run"
    (out / "model").mkdir(parents=True)
    options = {"preset": "fast", "seed": 3, "steps": 7}
    (out / "train.json").write_text(json.dumps({"app": "vit", "options": options}))
    expected = f"run \"numformer app vit train --out '{out}' --fast --seed 3 --steps 7 --overwrite\" to train it again"
    assert retrain_advice(out, "vit") == expected
    plain = f"run \"numformer app vit train --out '{out}' --overwrite\" to train it again"
    damaged = (
        {"preset": "quick", "seed": 3},
        {"preset": "fast", "seed": "3"},
        {"preset": "fast", "seed": 3, "steps": -1},
    )
    for options in damaged:  # never advise a setting other than the one trained
        (out / "train.json").write_text(json.dumps({"app": "vit", "options": options}))
        assert retrain_advice(out, "vit") == plain


def test_pieces_join_back_to_the_exact_text_and_splits_are_disjoint():
    train, test = number_pairs(0, 500, 100)
    assert not {a for a, _ in train} & {a for a, _ in test}
    for a, b in train + test:
        assert from_pieces(to_pieces(a)) == a and from_pieces(to_pieces(b)) == b
    train, test = date_pairs(0, 300, 50)
    assert not {a for a, _ in train} & {a for a, _ in test}
    assert to_pieces("14. März 2024") == ["1", "4", ".", "▁März", "▁2", "0", "2", "4"]
    vocab = Vocab.build(b for _, b in train)
    assert vocab.decode(vocab.encode(train[0][1])) == train[0][1]


def test_eval_prints_nested_results_as_indented_lines():
    from numformer.cli.app import describe as _describe

    assert _describe("steps", 5) == ["steps: 5"]
    assert _describe("beats", False) == ["beats: no"]
    assert _describe("m", {"ok": True, "n": 2}) == ["m: ok=yes, n=2"]
    assert _describe("models", {"a": {"HR": 0.5, "ci": [0, 1]}, "b": {"c": {"x": 1}}}) == [
        "models:",
        "  a: HR=0.5, ci=[0, 1]",
        "  b:",
        "    c: x=1",
    ]


# --- issue 36: nothing silently wrong -----------------------------------------------------------
def _rewrite_weights(path: Path, change) -> None:
    """The safetensors file at ``path`` with ``change(arrays)`` applied, its header kept."""
    from numformer.serialization.safetensors import load_arrays, read_metadata, save_arrays

    arrays = load_arrays(path)
    change(arrays)
    save_arrays(arrays, path, metadata=read_metadata(path))


def _series_file(path: Path, values) -> str:
    path.write_text("\n".join(repr(float(v)) for v in values) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("name", "verb", "weights", "tensor"),
    [
        ("vit", ["predict", "test:0"], "model/model.safetensors", "head.weight"),
        ("vit", ["eval"], "baseline/baseline.safetensors", "coef"),
        ("translate-numbers", ["predict", "402"], "model/model.safetensors", "generator.weight"),
        ("anomaly", ["predict", "SERIES_FILE"], "model/model.safetensors", "head.weight"),
    ],
)
def test_damaged_weights_are_an_error_never_a_nan(name, verb, weights, tensor, trained, tmp_path, capsys):
    """A NaN in weights that load unchecked (no manifest) printed 'p nan' or a score, exit 0."""
    out = copy_run(trained, name, tmp_path / name, checked=False)
    path = out / weights
    from numformer.serialization.safetensors import load_arrays

    key = tensor if tensor in load_arrays(path) else sorted(load_arrays(path))[0]
    _rewrite_weights(path, lambda arrays: arrays[key].flat.__setitem__(0, np.nan))
    verb = [PREDICT["anomaly"][0] if v == "SERIES_FILE" else v for v in verb]
    assert main(["app", name, verb[0], "--out", str(out), *verb[1:]]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and f"{path} holds non-finite numbers ({key})" in err and "--overwrite" in err


@pytest.mark.parametrize(
    ("name", "inputs", "tensor", "message"),
    [
        ("vit", ["test:0"], "head.weight", "the logits of the model in"),
        ("translate-numbers", ["402"], "generator.weight", "the decoder's logits are not finite"),
    ],
)
def test_outputs_that_overflow_float32_are_an_error(name, inputs, tensor, message, trained, tmp_path, capsys):
    """Finite weights can still give infinite logits; a printed nan, or a translation decoded
    from NaN logits, is an error instead."""
    out = copy_run(trained, name, tmp_path / name, checked=False)

    def overflow(arrays):
        arrays[tensor] = np.sign(arrays[tensor]) * np.float32(3e38)

    _rewrite_weights(out / "model" / "model.safetensors", overflow)
    assert main(["app", name, "predict", "--out", str(out), *inputs]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and message in err and "not finite" in err


def _edit_json(path: Path, key: str, value) -> None:
    data = json.loads(path.read_text())
    *inner, last = key.split(".")
    node = data
    for k in inner:
        node = node[k]
    node[last] = value(node[last]) if callable(value) else value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("name", "edits", "message"),
    [
        ("vit", {"model/config.json": {"num_heads": 1}}, "model/config.json: num_heads is 1, but model.safetensors"),
        ("forecast", {"model/config.json": {"co2.scale": 2.0}}, "co2.scale is 2.0, but co2/lstm.safetensors was saved"),
        ("anomaly", {"model/config.json": {"scale": 0.01}}, "scale is 0.01, but model.safetensors was saved"),
        ("vit", {"split.json": {"n_train": 300}}, "split.json: n_train is not the value the model was trained with"),
        (
            "translate-dates",
            {"split.json": {"test": lambda test: test[:3]}},
            "split.json: test is not the value the model was trained with",
        ),
        (
            "vit",
            {"split.json": {"seed": 3}, "model/config.json": {"trained_with.seed": 3}},
            "model/config.json: trained_with.seed is 3, but model.safetensors was saved with 0",
        ),
    ],
)
def test_config_and_split_values_the_weights_cannot_vouch_for_are_named(
    name, edits, message, trained, tmp_path, capsys
):
    """Even without its manifest, a folder's weights vouch for its config (kept in their
    header) and the config for each value of split.json: an edit is one line naming the key."""
    out = copy_run(trained, name, tmp_path / name)
    for manifest in out.rglob("checksums.json"):
        manifest.unlink()
    for file, changes in edits.items():
        for key, value in changes.items():
            _edit_json(out / file, key, value)
    assert main(["app", name, "eval", "--out", str(out)]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and message in err, err


def test_series_values_past_float32_are_refused_by_line(trained, tmp_path, capsys):
    """The models compute in float32: a value beyond 3.4e38 is named with its line, not
    forecast from float64 arithmetic or blamed on the model."""
    values = np.sin(np.arange(200) / 8.0) + 360.0
    spiked = values.copy()
    spiked[150] = 1e39
    path = _series_file(tmp_path / "spike.txt", spiked)
    assert main(["app", "anomaly", "predict", "--out", str(trained / "anomaly"), path]) == 2
    err = errors(capsys)
    assert f"{path}: line 151 holds '1e+39'; every value must be within float32's range" in err
    huge = _series_file(tmp_path / "huge.txt", values * 1e37)  # finite in float64, inf in float32
    assert main(["app", "forecast", "predict", "--out", str(trained / "forecast"), "co2", huge]) == 2
    assert f"{huge}: line 1 holds" in errors(capsys)
    nan = tmp_path / "nan.txt"
    nan.write_text("\n".join(["360.0"] * 199 + ["nan"]) + "\n")
    assert main(["app", "forecast", "predict", "--out", str(trained / "forecast"), "co2", str(nan)]) == 2
    assert "line 200 holds 'nan'" in errors(capsys)
    assert main(["app", "anomaly", "predict", "--out", str(trained / "anomaly"), ""]) == 2
    assert "the file name is empty" in errors(capsys)  # not ". is a folder"


def test_vit_refuses_images_on_another_scale(trained, tmp_path, capsys):
    """The digits are 0-16, divided by 16: a 0-255 or a 0-16 image would be classified wrongly."""
    for top in (255.0, 16.0):
        path = tmp_path / f"img{int(top)}.npy"
        np.save(path, np.linspace(0, top, 64).reshape(8, 8))
        assert main(["app", "vit", "predict", "--out", str(trained / "vit"), str(path)]) == 2
        assert f"holds values in [0, {top:g}]; the model was trained on images scaled to [0, 1]" in errors(capsys)
    np.save(tmp_path / "ok.npy", np.linspace(0, 1, 64).reshape(8, 8))
    assert main(["app", "vit", "predict", "--out", str(trained / "vit"), str(tmp_path / "ok.npy")]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("February 30, 2024", "'February 30, 2024' is not a date (day is out of range for month)"),
        ("March 14, 3024", "trained on dates from 1900 to 2099, got 3024"),
        ("14 March 2024", "expected an English long date such as 'March 14, 2024'"),
    ],
)
def test_translate_dates_refuses_what_is_not_a_date_it_was_trained_on(text, message, trained, capsys):
    assert main(["app", "translate-dates", "predict", "--out", str(trained / "translate-dates"), text]) == 2
    err = errors(capsys)
    assert err.count("\n") == 1 and message in err


def test_a_series_can_come_from_standard_input(monkeypatch):
    """'-' reads standard input, as ``numformer embed --file -`` does."""
    import os

    from numformer.apps.series import read_series

    read, write = os.pipe()
    os.write(write, b"1.5\n\n2.5\n")
    os.close(write)
    saved = os.dup(0)
    os.dup2(read, 0)
    try:
        values = read_series("-", missing=True)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read)
    np.testing.assert_array_equal(values, [1.5, np.nan, 2.5])
