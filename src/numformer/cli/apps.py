"""``numformer app``: the seed's applications, each with a baseline and a score.

numformer app list
numformer app NAME train [--fast] [--out DIR] [--seed N] [--steps N] [--overwrite]
numformer app NAME eval [--out DIR] [--json]
numformer app NAME predict [--out DIR] INPUT ...
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

VERBS = ("train", "eval", "predict")


def add_command(command) -> None:
    app = command("app", "the seed's applications on real offline data: train, evaluate against a baseline, predict")
    app.add_argument("name", help="an application (see: numformer app list), or 'list'")
    app.add_argument("verb", nargs="?", choices=VERBS, help="train, eval or predict")
    app.add_argument("inputs", nargs="*", metavar="INPUT", help="predict: the inputs (a sentence, a date, ...)")
    app.add_argument("--out", help="the app's folder (default runs/apps/NAME)")
    app.add_argument("--fast", action="store_true", help="train: a small setting for tests and quick looks")
    app.add_argument("--seed", type=int, help="train: seed of the data split and the models (0)")
    app.add_argument("--steps", type=int, help="train: optimiser steps per model (default: the app's)")
    app.add_argument(
        "--overwrite", action="store_true", help="train: replace the run in --out (once the new one has completed)"
    )
    app.add_argument("--json", action="store_true", help="eval: print exactly one JSON object")
    app.add_argument("--user", type=int, help="predict (sasrec): the user id")


def _usage(message: str):
    from numformer.apps import AppError

    return AppError(f"numformer app: {message}")


def run(args) -> int:
    from numformer import apps
    from numformer.viz.tables import say, table

    if args.name == "list":
        if args.verb or args.inputs:
            raise _usage("'list' takes no verb or input")
        for flag, verb, given in _VERB_OPTIONS + (("--out", "an app's verbs", lambda a: a.out is not None),):
            if given(args):
                raise _usage(f"{flag} goes with {verb}, not list")
        rows, sources = [], []
        for app in apps.registry().values():
            m = app.measured
            mine = Path(apps.default_out(app.name)) / "eval.json"
            last = "-"
            if mine.is_file():
                try:
                    mine = json.loads(mine.read_text())
                    last = f"{mine['score']:.4f}" + ("*" if mine.get("fast") is True else "")
                except (ValueError, KeyError, TypeError, AttributeError):
                    last = "?"
            score = f"{m['score']:.4f}" if m else "-"
            base = f"{m['baseline_score']:.4f}" if m else "-"
            minutes = f"{m['train_minutes']:.0f} min" if m else "-"
            rows.append([app.name, app.metric, score, base, minutes, last])
            sources.append(f"{app.name}: {app.summary}; data: {app.data}; baseline: {app.baseline}")
        table(
            "applications (score and baseline: the project's last full run on 2 cores)",
            ["app", "metric", "score", "baseline", "train", "yours"],
            rows,
        )
        for line in sources:
            say(line)
        where = apps.default_out("NAME")
        say(f"yours: your last eval's score in {where}, from this folder (a run with its own --out: its eval.json)")
        if any(row[-1].endswith("*") for row in rows):
            say("*: your run was trained with --fast, a quick look not comparable with the score beside it")
        return 0
    app = apps.get(args.name)
    if args.verb is None:
        raise _usage(f"say what to do with {app.name}: train, eval or predict")
    out = Path(args.out) if args.out else apps.default_out(app.name)
    given = f"--out {out}" if args.out else f"the default --out, {out},"
    if out.exists() and not out.is_dir():
        raise _usage(f"{given} is a file; an app's --out is a folder")
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise _usage(f"{given} lies under {blocked}, which is a file, not a folder")
    owner = apps.owner(out)
    if owner is not None and owner not in apps.registry():
        read = out / "train.json" if (out / "train.json").exists() else out / apps.STAGE / "train.json"
        raise _usage(f"{read} names {owner!r}, which is no application: choose another --out")
    if owner is not None and owner != app.name:
        what = "a trained" if (out / "train.json").exists() else "a stopped train of"
        if args.verb == "train":  # never advice that would replace the other app's run
            raise _usage(f"{out} holds {what} {owner}, not {app.name}: choose another --out for {app.name}")
        raise _usage(
            f'{out} holds {what} {owner}, not {app.name}: use "{apps.command(owner, args.verb, out)}", '
            f"or another --out for {app.name}"
        )
    if args.verb != "predict" and args.inputs:
        raise _usage(f"{args.verb} takes no inputs, got {args.inputs[0]!r}")
    for flag, verb, passed in _VERB_OPTIONS:
        if args.verb != verb and passed(args):
            raise _usage(f"{flag} goes with {verb}, not {args.verb}")
    if args.verb == "train":
        if args.steps is not None and args.steps < 1:
            raise _usage(f"--steps must be >= 1, got {args.steps}")
        args.seed = 0 if args.seed is None else args.seed
        if not 0 <= args.seed < 2**32:
            raise _usage(f"--seed must be in [0, 2^32), got {args.seed}")
        with _train_lock(out):
            return _train(app, out, owner, args)
    if args.verb == "eval":
        scored = _bytes(out / "train.json")
        result = _guarded(app, app.evaluate, out)
        if _bytes(out / "train.json") != scored:  # a train replaced the run while eval read it
            raise _usage(f'{out} was trained again while eval ran: run "{apps.command(app.name, "eval", out)}" again')
        apps.write_json(out / "eval.json", result)
        if args.json:
            print(json.dumps(result))
            return 0
        rows = [
            [app.name, result["metric"], f"{result['score']:.4f}", f"{result['baseline_score']:.4f}", result["n_test"]]
        ]
        table(
            f"{app.name}: {result['data']}",
            ["model", "metric", "score", f"baseline ({result['baseline']})", "n test"],
            rows,
        )
        for key, value in result.items():
            if key not in apps.EVAL_KEYS and key not in ("examples_wrong",):
                for line in _describe(key, value):
                    say(line)
        return 0
    if args.user is not None:
        if not app.takes_user:
            raise _usage(f"--user is not an input of {app.name}: numformer app {app.name} predict {app.predict_help}")
        inputs = [str(args.user)] + list(args.inputs)
    else:
        inputs = list(args.inputs)
    if not inputs:
        raise _usage(f"predict needs input: numformer app {app.name} predict {app.predict_help}")
    for line in _guarded(app, app.predict, out, inputs):
        print(line)
    return 0


def _train(app, out: Path, owner: str | None, args) -> int:
    """``train`` into ``out``, which this process holds (``_train_lock``): into ``out/STAGE``
    first, then, once the train has completed, in place of the run ``out`` held (``_replace``).
    A train that stops part-way leaves ``out`` as it was."""
    from numformer.apps import REPLACING, STAGE, command, holds_a_run, read_json, write_json
    from numformer.viz.tables import say

    stage = out / STAGE
    if (out / REPLACING).exists():
        raise _usage(
            f"{out / REPLACING} holds the files of the run a train was replacing when it was killed: "
            f"move them back into {out}, or remove them, yourself"
        )
    if holds_a_run(out):
        if owner is None:  # no train.json naming an app: not a folder numformer can vouch for
            raise _usage(
                f"{out} holds files but no readable train.json naming the app that wrote them (an "
                "interrupted or damaged run, or not a numformer folder); remove them yourself or choose "
                "another --out"
            )
        if not args.overwrite:
            what = "a trained (or partly trained)" if (out / "train.json").exists() else "a stopped train of"
            raise _usage(f"{out} already holds {what} {app.name}; pass --overwrite to replace it")
    if stage.exists():  # a stopped train's files, and --overwrite was given
        shutil.rmtree(stage)
    options = {"fast": args.fast, "seed": args.seed, "steps": args.steps}  # what retrain advice repeats
    write_json(stage / "train.json", {"app": app.name, "status": "training", "options": options})
    try:
        info = app.train(stage, args.fast, args.seed, args.steps, sys.stderr.isatty())
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
    files = sorted(p.name for p in stage.iterdir())  # what --overwrite may later replace
    write_json(stage / "train.json", {**read_json(stage / "train.json", app.name), "options": options, "files": files})
    _replace(out, stage)
    seconds = info.get("train_seconds", {})
    say(f"trained {app.name} into {out}: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    say(f"next: {command(app.name, 'eval', out)}")
    return 0


def _replace(out: Path, stage: Path) -> None:
    """Move a completed train's files from ``stage`` into ``out``, in place of the last run's:
    the last run's files of the names the new run wrote, of those its train.json lists as its
    own ("files"), its eval.json (which scored the old model) and the figures that eval.json
    lists go to ``out/REPLACING`` first, and are removed once every new file is in. Nothing
    else in ``out`` is touched: a ``train-notes/`` or a figure of the user's stays. Ctrl-C,
    SIGTERM and SIGHUP are ignored for the few renames (the train has completed), and a rename
    that fails moves everything back, so ``out`` never holds half of each run.

    Raises:
        AppError: a rename failed; ``out`` is as it was and the new run is still in ``stage``."""
    from numformer.apps import REPLACING, AppError

    old = out / REPLACING
    new = sorted(p.name for p in stage.iterdir())
    names = {*new, *_files_of_the_last_run(out), "eval.json"}
    names |= {f"figures/{n}" for n in _figures_of_the_last_eval(out)} if "figures" not in names else set()
    aside = [n for n in sorted(names) if (out / n).exists() or (out / n).is_symlink()]
    old.mkdir()
    if any(n.startswith("figures/") for n in aside):
        (old / "figures").mkdir()
    moved_aside, moved_in = [], []
    with _signals_ignored():
        try:
            for name in aside:
                (out / name).rename(old / name)
                moved_aside.append(name)
            for name in new:
                (stage / name).rename(out / name)
                moved_in.append(name)
        except OSError as err:
            for name in reversed(moved_in):
                (out / name).rename(stage / name)
            for name in reversed(moved_aside):
                (old / name).rename(out / name)
            if (old / "figures").is_dir() and "figures" not in moved_aside:
                (old / "figures").rmdir()
            old.rmdir()
            raise AppError(
                f"could not move the new run into {out} ({err.strerror or err}: {err.filename}); "
                f"{out} is as it was and the new run is in {stage}"
            ) from None
    stage.rmdir()
    shutil.rmtree(old)


def _figures_of_the_last_eval(out: Path) -> list[str]:
    """The names of the figures the last eval in ``out`` wrote (its eval.json's "figures",
    files in ``out/figures``); none when it lists none or cannot be read."""
    names = [Path(f).name for f in _strings(out / "eval.json", "figures")]
    return [n for n in names if n not in ("", ".", "..")]


def _files_of_the_last_run(out: Path) -> list[str]:
    """The names the train that wrote ``out`` listed in its train.json ("files"; plain names of
    what a train writes, others ignored); none for a run from before trains listed them."""
    from numformer.apps import ARTIFACTS

    files = _strings(out / "train.json", "files")
    return [f for f in files if (f in ARTIFACTS or f.startswith("train-")) and "/" not in f]


def _strings(path: Path, key: str) -> list[str]:
    """The strings a JSON object file lists under ``key``; none when it cannot be read."""
    try:
        listed = json.loads(path.read_text()).get(key, [])
    except (OSError, ValueError, AttributeError):
        return []
    return [v for v in listed if isinstance(v, str)] if isinstance(listed, list) else []


@contextlib.contextmanager
def _signals_ignored():
    """Ignore SIGINT, SIGTERM and SIGHUP inside the block (in the main thread, the only one
    that can set handlers), then restore the handlers there were."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), signal.SIG_IGN) for n in names}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def _train_lock(out: Path):
    """Hold ``out/.train.lock`` (an advisory ``flock``, released when the process ends, however
    it ends) while a train checks, clears and writes ``out``: a second train into the same
    folder, started before the first has written anything, is refused rather than let the two
    write over each other."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    from numformer.apps import TRAIN_LOCK

    with open(out / TRAIN_LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise _usage(
                f"another 'numformer app ... train' is writing into {out} now; wait for it to end, "
                "or choose another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Options that mean something to one verb only: given to another, they are refused, not ignored.
_VERB_OPTIONS = (
    ("--fast", "train", lambda a: a.fast),
    ("--seed", "train", lambda a: a.seed is not None),
    ("--steps", "train", lambda a: a.steps is not None),
    ("--overwrite", "train", lambda a: a.overwrite),
    ("--json", "eval", lambda a: a.json),
    ("--user", "predict", lambda a: a.user is not None),
)


def _word(value) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def _describe(key: str, value, depth: int = 0) -> list[str]:
    """``key: value`` as lines: a mapping of plain values on one line (``a=1, b=2``), deeper
    mappings indented beneath their key."""
    pad = "  " * depth
    if not isinstance(value, dict):
        return [f"{pad}{key}: {_word(value)}"]
    if all(not isinstance(v, dict) for v in value.values()):
        return [f"{pad}{key}: " + ", ".join(f"{k}={_word(v)}" for k, v in value.items())]
    lines = [f"{pad}{key}:"]
    for k, v in value.items():
        lines += _describe(k, v, depth + 1)
    return lines


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _guarded(app, verb, out, *args):
    """An app's eval or predict; a folder holding some other app's files (their keys or types
    differ), or a config edited to a model larger than memory, is one line, not a traceback."""
    from numformer.apps import AppError, retrain_advice

    try:
        return verb(out, *args)
    except (KeyError, TypeError) as err:
        raise AppError(f"{out} does not hold this app's trained files ({type(err).__name__}: {err})") from None
    except MemoryError as err:
        raise AppError(
            f"{out} describes a model larger than this machine's memory ({err}; a config.json edited by "
            f"hand?); {retrain_advice(out, app.name)}"
        ) from None
