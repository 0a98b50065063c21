"""``numformer app``: the seed's applications, each with a baseline and a score.

numformer app list
numformer app NAME train [--fast] [--out DIR] [--seed N] [--steps N] [--overwrite]
numformer app NAME eval [--out DIR] [--json]
numformer app NAME predict [--out DIR] INPUT ...
numformer app NAME export [--out DIR] [--onnx-out DIR]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from numformer.cli.common import check_folder, given

VERBS = ("train", "eval", "predict", "export")
HELP = "the seed's applications on real offline data: train, evaluate against a baseline, predict, export to ONNX"
# Options (dests) that mean something to one verb only: given to another, they are refused, not ignored.
VERB_OPTIONS = {"train": "fast seed steps overwrite", "eval": "json", "predict": "user", "export": "onnx_out"}


def example() -> str:
    """The help's examples, with every app's predict inputs from the registry."""
    from numformer.apps import registry

    inputs = "\n".join(f"  {app.name} predict {app.inputs}" for app in registry().values())
    return (
        "examples:\n  numformer app list\n  numformer app translate-numbers train --fast\n"
        "  numformer app translate-numbers eval --json\n"
        "  numformer app translate-numbers predict 'four hundred and two'\n"
        "  numformer app translate-numbers export   (ONNX files in runs/apps/translate-numbers/onnx)\n"
        f"predict inputs:\n{inputs}"
    )


def add_parser(command) -> None:
    parser = command("app", HELP, example())
    parser.add_argument("name", nargs="?", help="an application (see: numformer app list), or 'list'")
    parser.add_argument("verb", nargs="?", choices=VERBS, help="train, eval, predict or export (to ONNX)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="predict: the inputs (a sentence, a date, ...)")
    parser.add_argument("--out", help="the app's folder (default runs/apps/NAME)")
    parser.add_argument("--fast", action="store_true", help="train: the app's fast preset, for tests and quick looks")
    parser.add_argument("--seed", type=int, help="train: seed of the data split and the models (0)")
    parser.add_argument("--steps", type=int, help="train: optimiser steps per model (default: the preset's)")
    parser.add_argument(
        "--overwrite", action="store_true", help="train: replace the run in --out (once the new one has completed)"
    )
    parser.add_argument("--json", action="store_true", help="eval: print exactly one JSON object")
    parser.add_argument("--user", type=int, help="predict (sasrec): the user id")
    parser.add_argument("--onnx-out", help="export: the folder for the .onnx files (default: the app's folder's onnx/)")


def usage(message: str):
    from numformer.apps import AppError

    return AppError(f"numformer app: {message}")


def run(args) -> int:
    from numformer import apps

    if args.name is None:
        raise usage("name an application, or 'list' to see them: numformer app list")
    if args.name == "list":
        return list_apps(args)
    app = apps.get(args.name)
    if args.out is not None and not args.out.strip():
        raise usage(f"--out is empty: name a folder (without --out: {apps.default_out(app.name)})")
    if args.verb is None:
        raise usage(f"say what to do with {app.name}: train, eval, predict or export")
    out = Path(args.out) if args.out else apps.default_out(app.name)
    check_out(app, out, args)
    if args.verb != "predict" and args.inputs:
        raise usage(f"{args.verb} takes no inputs, got {args.inputs[0]!r}")
    refuse_other_verbs_options(args, args.verb, VERB_OPTIONS)
    return {"train": train, "eval": evaluate, "predict": predict, "export": export}[args.verb](app, out, args)


def refuse_other_verbs_options(args, doing: str, options: dict) -> None:
    """An option of a verb other than the one ``doing`` is refused, not ignored."""
    for verb, names in options.items():
        flags = given(args, names) if verb != doing else []
        if flags:
            raise usage(f"{flags[0]} goes with {verb}, not {doing}")


def check_out(app, out: Path, args) -> None:
    """``out`` checked for ``app``'s verb: a folder (or nothing yet) not under a file, holding
    no other app's run."""
    from numformer.apps import folder as app_folder
    from numformer.apps import registry

    check_folder(out, "numformer app: " + (f"--out {out}" if args.out else f"the default --out, {out},"))
    owner = app_folder.owner(out)
    trained = (out / "train.json").exists()
    if owner is not None and owner not in registry():
        read = out / "train.json" if trained else out / app_folder.STAGE / "train.json"
        raise usage(f"{read} names {owner!r}, which is no application: choose another --out")
    if owner is not None and owner != app.name:
        what = "a trained" if trained else "a stopped train of"
        if args.verb == "train":  # never advice that would replace the other app's run
            raise usage(f"{out} holds {what} {owner}, not {app.name}: choose another --out for {app.name}")
        again = app_folder.command(owner, args.verb, out)
        raise usage(f'{out} holds {what} {owner}, not {app.name}: use "{again}", or another --out for {app.name}')


def list_apps(args) -> int:
    from numformer import apps
    from numformer.viz.tables import say, table

    if args.verb or args.inputs:
        raise usage("'list' takes no verb or input")
    refuse_other_verbs_options(args, "list", {**VERB_OPTIONS, "an app's verbs": "out"})
    rows, sources = [], []
    for app in apps.registry().values():
        m = app.measured
        rows.append([app.name, app.metric, *_measured(m), _yours(apps.default_out(app.name) / "eval.json")])
        sources.append(f"{app.name}: {app.summary}; data: {app.data}; baseline: {app.baseline}")
    title = "applications (score and baseline: the project's last full run on 2 cores)"
    table(title, ["app", "metric", "score", "baseline", "train", "yours"], rows)
    for line in sources:
        say(line)
    where = apps.default_out("NAME")
    say(f"yours: your last eval's score in {where}, from this folder (a run with its own --out: its eval.json)")
    if any(row[-1].endswith("*") for row in rows):
        say("*: your run was trained with --fast, a quick look not comparable with the score beside it")
    return 0


def _measured(m: dict) -> list[str]:
    if not m:
        return ["-", "-", "-"]
    return [f"{m['score']:.4f}", f"{m['baseline_score']:.4f}", f"{m['train_minutes']:.0f} min"]


def _yours(path: Path) -> str:
    """The score of the eval.json at ``path`` (* for a fast preset's), "-" for none, "?" damaged."""
    if not path.is_file():
        return "-"
    try:
        mine = json.loads(path.read_text())
        return f"{mine['score']:.4f}" + ("*" if mine.get("preset") == "fast" else "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"


def train(app, out: Path, args) -> int:
    """``train`` into ``out``, which this process holds (the run folder's lock): into its stage
    first, then, once the train has completed, in place of the run ``out`` held. A train that
    stops part-way leaves ``out`` as it was."""
    from numformer.apps import folder as app_folder

    if args.steps is not None and args.steps < 1:  # checked after the verb: --steps goes with train only
        raise usage(f"--steps must be >= 1, got {args.steps}")
    seed = 0 if args.seed is None else args.seed
    if not 0 <= seed < 2**32:
        raise usage(f"--seed must be in [0, 2^32), got {seed}")
    folder = app_folder.run_folder(out)
    with folder.lock("'numformer app ... train'"):
        _check_replaceable(app, out, app_folder.owner(out), args.overwrite)
        return _train_staged(app, folder, args, seed)


def _check_replaceable(app, out: Path, owner: str | None, overwrite: bool) -> None:
    from numformer.apps import folder as app_folder
    from numformer.serialization.runs import REPLACING

    if (out / REPLACING).exists():
        raise usage(
            f"{out / REPLACING} holds the files of the run a train was replacing when it was killed: "
            f"move them back into {out}, or remove them, yourself"
        )
    if not app_folder.holds_a_run(out):
        return
    if owner is None:  # no train.json naming an app: not a folder numformer can vouch for
        raise usage(
            f"{out} holds files but no readable train.json naming the app that wrote them (an "
            "interrupted or damaged run, or not a numformer folder); remove them yourself or choose another --out"
        )
    if not overwrite:
        what = "a trained (or partly trained)" if (out / "train.json").exists() else "a stopped train of"
        raise usage(f"{out} already holds {what} {app.name}; pass --overwrite to replace it")


def _train_staged(app, folder, args, seed: int) -> int:
    from numformer.apps import folder as app_folder
    from numformer.serialization.files import write_json
    from numformer.viz.tables import say

    out, stage = folder.path, folder.stage
    if stage.exists():  # a stopped train's files, and --overwrite was given
        shutil.rmtree(stage)
    preset = "fast" if args.fast else "full"
    options = {"preset": preset, "seed": seed, "steps": args.steps}  # what retrain advice repeats
    write_json(stage / "train.json", {"app": app.name, "status": "training", "options": options})
    try:
        info = app.train(stage, app.presets[preset], seed, args.steps, sys.stderr.isatty())
    except BaseException:
        if [p.name for p in stage.iterdir()] == ["train.json"]:  # it stopped before training anything
            shutil.rmtree(stage)
        else:
            kept = "is as it was" if (out / "train.json").exists() else "holds no other run"
            say(
                f"the stopped train's files are in {stage} (nothing resumes from them; the next train "
                f"with --overwrite replaces them); {out} {kept}"
            )
        raise
    files = sorted({p.name for p in stage.iterdir()} | {"train.json"})  # what --overwrite may later replace
    write_json(stage / "train.json", {**info, "app": app.name, "options": options, "files": files})
    folder.commit(app_folder.files_of_the_last_run(out))
    seconds = info.get("train_seconds", {})
    say(f"trained {app.name} into {out}: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    say(f"next: {app_folder.command(app.name, 'eval', out)}")
    return 0


def evaluate(app, out: Path, args) -> int:
    from numformer.apps import EVAL_KEYS
    from numformer.apps import folder as app_folder
    from numformer.serialization.files import write_json
    from numformer.viz.tables import say, table

    scored = _bytes(out / "train.json")
    result = guarded(app, app.evaluate, out)
    if _bytes(out / "train.json") != scored:  # a train replaced the run while eval read it
        raise usage(f'{out} was trained again while eval ran: run "{app_folder.command(app.name, "eval", out)}" again')
    write_json(out / "eval.json", result)
    if args.json:
        print(json.dumps(result))
        return 0
    score, base = f"{result['score']:.4f}", f"{result['baseline_score']:.4f}"
    rows = [[app.name, result["metric"], score, base, result["n_test"]]]
    table(
        f"{app.name}: {result['data']}",
        ["model", "metric", "score", f"baseline ({result['baseline']})", "n test"],
        rows,
    )
    for key, value in result.items():
        if key not in EVAL_KEYS and key not in ("examples_wrong",):
            for line in describe(key, value):
                say(line)
    return 0


def predict(app, out: Path, args) -> int:
    if args.user is not None:
        if not app.takes_user:
            raise usage(f"--user is not an input of {app.name}: numformer app {app.name} predict {app.inputs}")
        inputs = [str(args.user)] + list(args.inputs)
    else:
        inputs = list(args.inputs)
    if not inputs:
        raise usage(f"predict needs input: numformer app {app.name} predict {app.inputs}")
    for line in guarded(app, app.predict, out, inputs):
        print(line)
    return 0


def export(app, out: Path, args) -> int:
    """The trained models ``predict`` runs as ONNX files (``numformer.onnx.export_app``), in
    ``--onnx-out`` (default ``out/onnx``; a new folder's parent must exist). A file of the same
    name there is replaced: it is made again from the trained model."""
    from numformer.cli.export import require_onnx
    from numformer.onnx import export_app
    from numformer.viz.tables import say

    onnx_out = Path(args.onnx_out) if args.onnx_out else out / "onnx"
    check_folder(onnx_out, f"numformer app: --onnx-out {onnx_out}")
    if args.onnx_out and not onnx_out.exists() and not onnx_out.parent.is_dir():
        raise usage(f"--onnx-out {onnx_out}: no such folder for it: {onnx_out.parent}")
    require_onnx("numformer app export")
    try:
        written = guarded(app, lambda folder: export_app(app.name, folder, onnx_out), out)
    except NotImplementedError as err:
        raise usage(str(err)) from None
    for exported in written:
        for line in exported.describe().splitlines():
            say(line)
    return 0


def _word(value) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def describe(key: str, value, depth: int = 0) -> list[str]:
    """``key: value`` as lines: a mapping of plain values on one line (``a=1, b=2``), deeper
    mappings indented beneath their key."""
    pad = "  " * depth
    if not isinstance(value, dict):
        return [f"{pad}{key}: {_word(value)}"]
    if all(not isinstance(v, dict) for v in value.values()):
        return [f"{pad}{key}: " + ", ".join(f"{k}={_word(v)}" for k, v in value.items())]
    lines = [f"{pad}{key}:"]
    for k, v in value.items():
        lines += describe(k, v, depth + 1)
    return lines


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def guarded(app, verb, out, *args):
    """An app's eval or predict; a folder holding some other app's files (their keys or types
    differ), or a config edited to a model larger than memory, is one line, not a traceback;
    a result that is not finite is an error, not a number."""
    import math

    from numformer.apps import AppError
    from numformer.apps.folder import retrain_advice

    try:
        result = verb(out, *args)
    except (KeyError, TypeError) as err:
        raise AppError(f"{out} does not hold this app's trained files ({type(err).__name__}: {err})") from None
    except MemoryError as err:
        raise AppError(
            f"this machine ran out of memory ({err}): the inputs given, or the model {out} describes (a "
            f"config.json edited by hand?), are larger than it can hold; {retrain_advice(out, app.name)}"
        ) from None
    if isinstance(result, dict) and not all(
        math.isfinite(result[k]) for k in ("score", "baseline_score") if isinstance(result.get(k), float)
    ):
        raise AppError(
            f"{app.name}: eval's scores are not finite ({result.get('score')}, {result.get('baseline_score')})"
        )
    return result
