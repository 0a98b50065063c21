"""An application's folder (``numformer app NAME ... --out OUT``, default ``runs/apps/NAME``):
what a train and an eval write there, which app wrote it, and the command that makes it again.

The folder is a ``RunFolder`` (``numformer.serialization.runs``): one train at a time (its
lock), a new train staged beside the last run and moved in only once it has completed, and only
the run's own files replaced. ``train.json`` vouches for a run: it names the app, the options it
was trained with and the files it wrote.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from numformer.serialization.runs import STAGE, RunFolder

# What trains and evals write into an app's folder (and train-*): a folder holding any of these
# holds a run, which a new train replaces only with --overwrite (and never without a train.json
# vouching for it).
ARTIFACTS = ("model", "baseline", "scratch", "split.json", "train.json", "eval.json", "figures")
# the folders inside an app folder that a train writes (files nest up to two levels in them)
INNER = ("model", "baseline", "scratch")


class AppError(ValueError):
    """A request an application cannot serve (no trained model, input it cannot take, ...):
    one line on the CLI, exit code 2."""


def default_out(name: str) -> Path:
    return Path("runs") / "apps" / name


def run_folder(out: Path) -> RunFolder:
    """``out`` as a run folder whose own files are the apps' ``ARTIFACTS`` and ``train-*``."""
    return RunFolder(out, (*ARTIFACTS, "train-*"))


def folder_of(path: Path) -> Path:
    """The app folder ``OUT`` that a file an app wrote lies in: the nearest of its three
    parents holding a train.json (``OUT/model/h24/transformer.safetensors`` -> ``OUT``), or,
    with none, the parent of the nearest ``model``/``baseline``/``scratch``, or its own parent."""
    parents = path.parents[:3]
    for folder in parents:
        if (folder / "train.json").exists():
            return folder
    for folder in parents:
        if folder.name in INNER:
            return folder.parent
    return path.parent


def _json_object(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owner(out: Path) -> str | None:
    """The app whose train wrote the folder ``out`` (its train.json's "app"; for a folder with
    no train.json, that of a stopped train in ``STAGE``), or None when it is not readable."""
    path = out / "train.json" if (out / "train.json").exists() else out / STAGE / "train.json"
    info = _json_object(path)
    return info["app"] if info is not None and isinstance(info.get("app"), str) else None


def holds_a_run(out: Path) -> bool:
    """Whether ``out`` holds what a train or eval writes, which a new train replaces only with
    ``--overwrite``."""
    return bool(run_folder(out).existing())


def command(app: str, verb: str, out: Path, *flags: str) -> str:
    """The ``numformer app`` command line for ``out``, quoted for a POSIX shell (no ``--out``
    for the app's default folder)."""
    where = [] if out == default_out(app) else ["--out", str(out)]
    return shlex.join(["numformer", "app", app, verb, *where, *flags])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def train_flags(out: Path) -> list[str]:
    """The options the train that wrote ``out`` was given (``--fast``, ``--seed``, ``--steps``),
    from train.json's "options" (for a folder with no train.json, a stopped train's, in
    ``STAGE``); none when none is readable or they are damaged (never advise another setting)."""
    path = out / "train.json" if (out / "train.json").exists() else out / STAGE / "train.json"
    info = _json_object(path)
    options = info.get("options") if info is not None else None
    if not isinstance(options, dict):
        return []
    preset, seed, steps = options.get("preset"), options.get("seed", 0), options.get("steps")
    if not (
        preset in ("fast", "full") and _is_int(seed) and seed >= 0 and (steps is None or _is_int(steps) and steps >= 1)
    ):
        return []
    flags = ["--fast"] if preset == "fast" else []
    flags += ["--seed", str(seed)] if seed else []
    return flags + (["--steps", str(steps)] if steps is not None else [])


def retrain_advice(out: Path, app: str) -> str:
    """The command that trains ``app`` into ``out`` from where the folder stands, with the
    options its last train was given: plain ``train`` into an empty folder, ``--overwrite``
    over this app's run, another ``--out`` for a folder no readable train.json vouches for
    (which ``--overwrite`` never clears), and waiting while a train is writing it."""
    if run_folder(out).locked():
        return "a train is writing this folder now: wait for it to end"
    if not holds_a_run(out):
        return f'run "{command(app, "train", out, *train_flags(out))}" first'
    if owner(out) == app:
        return f'run "{command(app, "train", out, *train_flags(out), "--overwrite")}" to train it again'
    return f"train into another --out, or remove the files in {out} yourself"


def strings(path: Path, key: str) -> list[str]:
    """The strings a JSON object file lists under ``key``; none when it cannot be read."""
    info = _json_object(path)
    listed = info.get(key, []) if info is not None else []
    return [v for v in listed if isinstance(v, str)] if isinstance(listed, list) else []


def files_of_the_last_run(out: Path) -> list[str]:
    """What a new train replaces in ``out``: the files the last train listed in its train.json
    ("files": plain names of what a train writes), its eval.json (which scored the old model)
    and the figures that eval lists (as ``figures/NAME``, unless the run owns ``figures``)."""
    own = [
        f for f in strings(out / "train.json", "files") if (f in ARTIFACTS or f.startswith("train-")) and "/" not in f
    ]
    figures = [Path(f).name for f in strings(out / "eval.json", "figures")]
    extra = [] if "figures" in own else [f"figures/{n}" for n in figures if n not in ("", ".", "..")]
    return [*own, "eval.json", *extra]
