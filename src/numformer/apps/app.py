"""``App``: what every application is (its data, metric and baseline, its presets, its three
verbs, and the models it hands to ONNX export), and the helpers its verbs share: training one
model (``fit``), saving and loading model folders, and reading the JSON files a train wrote,
each failure one ``AppError`` with the command that makes the file again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from numformer.apps.folder import AppError, command, folder_of, holds_a_run, retrain_advice
from numformer.serialization import folders
from numformer.serialization.files import read_json as _read_json
from numformer.serialization.files import write_json
from numformer.serialization.safetensors import load_arrays, read_shapes, save_arrays

EVAL_KEYS = ("app", "data", "metric", "score", "baseline", "baseline_score", "n_test")


def split_digests(split: dict) -> dict:
    """``{key: a short SHA-256 of its JSON value}`` of a split.json: what the model folder's
    config keeps to vouch for each value of the split it was trained on."""
    return {
        key: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16] for key, value in split.items()
    }


class OnnxModel(NamedTuple):
    """One trained model of an app as ``numformer.onnx.export`` takes it (``App.onnx_models``).

    Attributes:
        stem: the file's name without ``.onnx`` (``model``, ``encoder``, ``co2-lstm``, ...).
        module: the ``nn.Module`` whose forward is exported (eval mode).
        example_args: a tuple of example inputs (arrays or tensors), one per graph input.
        input_names, output_names: the graph's names for them.
        dynamic_axes: ``{name: {axis: symbol}}``: the axes that may change size (batch, length).
    """

    stem: str
    module: object
    example_args: tuple
    input_names: list
    output_names: list
    dynamic_axes: dict


class App:
    """One application of the seed's section 8. A subclass sets the class attributes and
    implements the three verbs.

    Attributes:
        name: the CLI's name (``numformer app NAME``).
        summary, data, licence, metric, baseline: what ``app list`` and the README show.
        inputs: what ``predict`` takes, as the CLI's help writes it (``TEXT ...``).
        takes_user: ``predict`` takes ``--user ID`` (its input is a user id).
        presets: ``{"fast": ..., "full": ...}``, each one dataclass of every setting a train
            reads (sizes, data, steps): ``--fast`` picks ``fast``, else ``full``.
        measured: the project's own last full run (``measured.json``): score, baseline score,
            train minutes.
    """

    name: str = ""
    summary: str = ""
    data: str = ""
    licence: str = ""
    metric: str = ""
    baseline: str = ""
    inputs: str = "TEXT ..."
    takes_user: bool = False
    presets: dict = {}

    def __init__(self, **attributes):
        """An application; ``attributes`` set (or override) its class attributes (``name``, ...)."""
        self.measured: dict = {}
        vars(self).update(attributes)

    def train(self, out: Path, preset, seed: int, steps: int | None, progress: bool) -> dict:
        """Train the model and its baselines into ``out`` (a staged folder) with ``preset``'s
        settings, ``steps`` in place of its step counts (``fit_models``), and write the
        split.json they were trained on. Returns train.json's contents (seconds to 0.1 s)."""
        split, info = self.fit_models(out, replace(preset, steps), seed, progress)
        write_json(out / "split.json", split)
        return {"app": self.name, **info, "train_seconds": {k: round(v, 1) for k, v in info["train_seconds"].items()}}

    def fit_models(self, out: Path, preset, seed: int, progress: bool) -> tuple[dict, dict]:
        """``train``'s work: fit the models with ``preset`` and save them (``save_models``).
        Returns the split (its "preset", "seed" and the data's own keys) and train.json's
        other contents, at least "train_seconds" (``{model: seconds}``)."""
        raise NotImplementedError

    def evaluate(self, out: Path) -> dict:
        """Score the trained model and the baseline on the test split: at least ``EVAL_KEYS``."""
        raise NotImplementedError

    def predict(self, out: Path, inputs: list[str]) -> list[str]:
        """One line of output per input (``inputs`` as the CLI got them)."""
        raise NotImplementedError

    def onnx_models(self, out: Path) -> list[OnnxModel]:
        """The trained models in ``out`` that ``predict`` runs, read with this app's own loaders,
        for ``numformer.onnx.export_app`` (``numformer app NAME export``): each with example
        inputs of the shapes ``predict`` feeds, its graph names and its dynamic axes.

        Args:
            out: the app's folder (``train``'s ``--out``).

        Returns:
            One ``OnnxModel`` per file to write, in order.

        Raises:
            NotImplementedError: this app has no model to export (the default).
            AppError: no trained model in ``out``, or damaged files, naming the command that
                trains one."""
        raise NotImplementedError(f"{self.name}: no model to export to ONNX (its App.onnx_models is not written)")

    # --- helpers for the verbs ----------------------------------------------------------
    def fail(self, path: Path, problem: str) -> AppError:
        """An ``AppError`` naming ``problem`` in ``path`` and how to write the file again."""
        folder = folder_of(path)
        evaluated = path == folder / "eval.json"
        advice = f'run "{command(self.name, "eval", folder)}" again' if evaluated else retrain_advice(folder, self.name)
        return AppError(f"{problem}; {advice}")

    def read_json(self, path: Path) -> dict:
        """A JSON object this app's train wrote.

        Raises:
            AppError: a missing or damaged file, naming it and the command that writes it again."""
        folder = folder_of(path)
        name = path.relative_to(folder).as_posix()
        if path.exists() and not path.is_file():
            raise self.fail(path, f"{path} is not a file")
        if not path.is_file():
            what = (
                f"{self.name} in {folder} is incomplete"
                if holds_a_run(folder)
                else f"no trained {self.name} in {folder}"
            )
            raise AppError(f"{what} ({name} is missing): {retrain_advice(folder, self.name)}")
        try:
            data = _read_json(path)
        except ValueError as err:
            raise self.fail(path, f"{path} is damaged ({err})") from None
        if not isinstance(data, dict):
            raise self.fail(path, f"{path} is damaged (not a JSON object)")
        return data

    def read_split(self, out: Path) -> dict:
        """The split.json this app's train wrote into ``out``, checked against what the model
        folder's manifest vouches for: its ``preset`` and ``seed`` must be those the model was
        trained with (``model/config.json``'s "trained_with"), so an edit that would make eval
        score another split is named, not taken.

        Raises:
            AppError: a missing, damaged or edited file, naming it and the command that writes it again."""
        path = out / "split.json"
        split = self.read_json(path)
        self._check_vouched(out / "model", None)  # the config that vouches for the split, itself vouched for
        config = out / "model" / folders.CONFIG
        trained = self.read_json(config).get("trained_with")
        for key in ("preset", "seed"):
            if not isinstance(trained, dict) or key not in trained:
                raise self.fail(config, f"{config} has no trained_with.{key}")
            if split.get(key) != trained[key]:
                got = repr(split[key]) if key in split else "nothing"
                raise self.fail(path, f"{path}: {key} must be {trained[key]!r}, the model's, got {got}")
        vouched = trained.get("split")
        if isinstance(vouched, dict):  # a digest of each value (folders from before: preset and seed only)
            given = split_digests(split)
            for key in sorted(set(vouched) | set(given)):
                if key not in given:
                    raise self.fail(path, f"{path}: {key} is missing; the model was trained with one")
                if key not in vouched:
                    raise self.fail(path, f"{path}: {key} is not a key of the split the model was trained on")
                if given[key] != vouched[key]:
                    raise self.fail(
                        path,
                        f"{path}: {key} is not the value the model was trained with (model/config.json's "
                        "trained_with vouches for another)",
                    )
        return split

    def preset_of(self, split: dict):
        """The preset a train used, from its split.json (checked by ``read_split``)."""
        return self.presets[split["preset"]]

    def model_folder(self, folder: Path, only=None) -> tuple[dict, Path]:
        """A model folder this app's train wrote, checked (``check_folder``): its config.json
        (less the "trained_with" that vouches for the split) and that file's path.

        Raises:
            AppError: an edited config, a missing or damaged file, naming it."""
        self.check_folder(folder, only)
        path = folder / folders.CONFIG
        return {k: v for k, v in self.read_json(path).items() if k != "trained_with"}, path

    def scored(self, out: Path, split: dict, metric, score, baseline_score, n_test, data=None, baseline=None, **more):
        """What ``evaluate`` returns: ``EVAL_KEYS`` (``data`` and ``baseline`` as ``app list``
        shows them unless given), ``more``, then the train's seconds (train.json) and preset."""
        trained = self.read_json(out / "train.json")
        return {
            "app": self.name,
            "data": data or self.data,
            "metric": metric,
            "score": score,
            "baseline": baseline or self.baseline,
            "baseline_score": baseline_score,
            "n_test": n_test,
            **more,
            "train_seconds": trained["train_seconds"],
            "preset": split["preset"],
        }

    def config(self, cls, fields, path: Path):
        """``cls.from_dict(fields)`` (a model's config saved in ``path``).

        Raises:
            AppError: fields ``cls`` refuses, naming the file and the field."""
        try:
            return cls.from_dict(fields, source=str(path))
        except ValueError as err:
            raise self.fail(path, f"{path} does not hold a {cls.__name__} ({err})") from None

    def save_models(self, folder: Path, config: dict, models: dict, split: dict, files=None) -> None:
        """A model folder of this app: ``config.json`` (``config`` and ``trained_with``: the
        preset, the seed and a digest of each value of ``split``, the split.json the train
        writes), one safetensors file per model (``{file name: module}``), other ``files``,
        and the manifest. Each weights file keeps the config in its header (``folders.VOUCHED``)."""
        trained_with = {"preset": split["preset"], "seed": split["seed"], "split": split_digests(split)}
        config = {**config, "trained_with": trained_with}
        header = folders.config_header(config)
        writers = {name: arrays_writer(_state(model), header) for name, model in models.items()}
        folders.write_model_folder(folder, config, None, {**writers, **(files or {})})

    def check_folder(self, folder: Path, only=None) -> None:
        """A model folder's config against the one its weights files were saved with (each
        value that differs is named), then its files (``only`` these, and its config) against
        its manifest (a folder from before manifests: a warning).

        Raises:
            AppError: an edited config value, or a missing or damaged file, naming it."""
        self._check_vouched(folder, only)
        try:
            folders.verify(folder, only=only)
        except (ValueError, FileNotFoundError) as err:
            raise self.fail(folder / folders.CONFIG, str(err)) from None

    def _check_vouched(self, folder: Path, only) -> None:
        try:
            folders.check_vouched(folder, only)
        except ValueError as err:
            raise self.fail(folder / folders.CONFIG, str(err)) from None

    def check_sizes(self, path: Path, expected: dict[str, tuple]) -> None:
        """Before a model is built from a config: the named tensors of the weights file at
        ``path`` (its header only) must have the ``expected`` shapes, so a config that asks for
        a huge model is one ``AppError`` naming the file, not an allocation failure."""
        if path.exists() and not path.is_file():
            raise self.fail(path, f"{self.name}: {path} is not a file")
        try:
            shapes = read_shapes(path)
        except FileNotFoundError:
            raise self.fail(path, f"{self.name}: no such file: {path}") from None
        except ValueError as err:
            raise self.fail(path, f"{self.name}: {err}") from None
        except OSError as err:
            raise AppError(f"{self.name}: cannot read {path}: {err.strerror or err}") from None
        wrong = [
            f"{k} is {shapes[k] if k in shapes else 'missing'}, the config says {tuple(v)}"
            for k, v in expected.items()
            if shapes.get(k) != tuple(v)
        ]
        if wrong:
            config = (path.parent / folders.CONFIG).relative_to(folder_of(path)).as_posix()
            raise self.fail(path, f"{self.name}: {path} does not fit {config}: " + "; ".join(wrong))

    def load_weights(self, model, path: Path):
        """``model`` with the weights saved at ``path`` (eval mode).

        Raises:
            AppError: a missing or damaged file, weights of another model (the first three
            problems and how many more), or weights that are not finite, naming the file."""
        try:
            arrays = load_arrays(path)
            folders.load_state(model, arrays, path)
        except (ValueError, FileNotFoundError) as err:
            head, *problems = str(err).splitlines()  # load_state_dict lists every key, one a line
            shown = [p.strip() for p in problems[:3]] + ([f"and {len(problems) - 3} more"] if len(problems) > 3 else [])
            what = f"{head.rstrip(':')}: {'; '.join(shown)}" if shown else head
            raise self.fail(path, f"{self.name}: {what}") from None
        self._check_finite(path, arrays)
        return model.eval()

    def _check_finite(self, path: Path, arrays: dict) -> None:
        bad = folders.non_finite(arrays)
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise self.fail(path, f"{self.name}: {path} holds non-finite numbers ({', '.join(bad[:3])}{more}): damaged")

    def check_output(self, values, what: str, folder: Path) -> None:
        """A model's output, which must be finite: a NaN or an infinity is an error, never a
        printed ``nan`` or a score.

        Raises:
            AppError: naming the model folder and ``what`` (its logits, its scores, ...)."""
        import numpy as np

        if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
            raise self.fail(
                folder / folders.CONFIG,
                f"{self.name}: the {what} of the model in {folder} are not finite (its weights overflow float32)",
            )

    def load_arrays(self, path: Path, shapes: dict[str, tuple]) -> dict:
        """The arrays of a safetensors file that are no module's weights (a baseline's fitted
        numbers), each checked to be floating point of the shape given: an int dim is that
        size, a str dim any size, the same wherever the name recurs.

        Shape: e.g. ``{"coef": ("classes", 64), "intercept": ("classes",)}``.

        Raises:
            AppError: a missing or damaged file, or an array it lacks or holds in another shape."""
        try:
            arrays = load_arrays(path)
        except (FileNotFoundError, ValueError) as err:
            raise self.fail(path, f"{self.name}: {err}") from None
        sizes = {}
        for name, dims in shapes.items():
            array = arrays.get(name)
            fits = array is not None and array.dtype.kind == "f" and array.ndim == len(dims)
            for dim, size in zip(dims, array.shape if fits else ()):
                fits = fits and (sizes.setdefault(dim, size) if isinstance(dim, str) else dim) == size
            if not fits:
                got = "nothing" if array is None else f"{array.dtype} {array.shape}"
                raise self.fail(path, f"{self.name}: {path} does not hold {name} as float {tuple(dims)}, got {got}")
        self._check_finite(path, {name: arrays[name] for name in shapes})
        return arrays


def _state(model) -> dict:
    from numformer.backend import to_numpy

    return {k: to_numpy(v.array) for k, v in model.state_dict().items()}


def arrays_writer(arrays: dict, metadata: dict | None = None):
    """A model folder's file writer for arrays (a model's state, a baseline's fitted numbers)."""
    return lambda tmp: save_arrays(arrays, tmp, metadata=metadata)


def replace(preset, steps: int | None):
    """``preset`` with ``steps`` (``--steps``) in place of its step counts (every field named
    ``steps`` or ``*_steps``), when given."""
    if steps is None:
        return preset
    names = [f.name for f in dataclasses.fields(preset) if f.name == "steps" or f.name.endswith("_steps")]
    return dataclasses.replace(preset, **dict.fromkeys(names, steps))


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
    from numformer.train import Trainer

    config = _train_config(out / f"train-{name}", steps, seed, progress, eval_every, patience, val_batches is not None)
    start = time.perf_counter()
    trainer = Trainer(
        model, optimizer, loss_fn, batches, val_batches, scheduler=scheduler, config=config, count=count, unit=unit
    )
    result = trainer.fit()
    return _fitted(trainer, result, name, time.perf_counter() - start, validated=val_batches is not None)


def _train_config(folder: Path, steps: int, seed: int, progress: bool, eval_every, patience, validated: bool):
    """``fit``'s ``TrainConfig``: one checkpoint, at the end, in ``folder``."""
    from numformer.train import TrainConfig

    if eval_every is not None and eval_every < 1:
        raise ValueError(f"fit: eval_every must be >= 1, got {eval_every}")
    if patience is not None and patience < 1:
        raise ValueError(f"fit: patience must be >= 1, got {patience}")
    if patience is not None and not validated:
        raise ValueError("fit: patience counts validation evaluations: it needs val_batches")
    return TrainConfig(
        max_steps=steps,
        eval_every=min(eval_every or steps, steps),
        eval_batches=1,
        checkpoint_every=steps,
        keep_checkpoints=1,
        early_stopping_patience=patience,
        out_dir=str(folder),
        seed=seed,
        progress=progress,
    )


def _fitted(trainer, result, name: str, seconds: float, validated: bool) -> Fitted:
    """What ``fit``'s trainer did; with validation, its model given the best step's weights."""
    from numformer.train import load_checkpoint

    what = "the model" if name == "model" else f"the {name} model"
    if result.status == "interrupted":  # Ctrl-C or SIGTERM: the CLI's one "interrupted" line, exit 130
        raise KeyboardInterrupt
    if result.status not in ("completed", "early_stopped"):
        raise AppError(f"training {what} stopped: {result.reason}")
    if not validated:
        return Fitted(seconds, result.step, result.step, None)
    if not math.isfinite(result.best_val_loss):  # no evaluation saved a best checkpoint
        raise AppError(f"training {what}: no validation loss was finite")
    state = load_checkpoint(trainer.checkpoint_dir, trainer.model, tag="best", restore_rng=False)
    return Fitted(seconds, result.step, state["step"], result.best_val_loss)


def fit_adamw(model, loss_fn, batches, out, name, steps, seed, progress, lr, weight_decay=0.01, **options) -> Fitted:
    """``fit`` with ``AdamW(lr, weight_decay, betas)`` (``options``' ``betas``, else PyTorch's)
    and, unless ``options`` say ``warmup=False``, the ``warmup_cosine`` schedule; the other
    ``options`` go to ``fit``."""
    from numformer.optim import AdamW

    optimizer = AdamW(model.parameters(), lr=lr, betas=options.pop("betas", (0.9, 0.999)), weight_decay=weight_decay)
    scheduler = warmup_cosine(optimizer, steps) if options.pop("warmup", True) else None
    return fit(model, optimizer, loss_fn, batches, out, name, steps, seed, progress, scheduler, **options)


def pyplot(folder: Path):
    """matplotlib's ``pyplot``, drawing off screen (Agg), with ``folder`` made for its figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    return plt


def save_figure(fig, path: Path) -> str:
    """``fig`` laid out and saved at ``path`` (110 dpi), then closed. Returns ``str(path)``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def softmax(logits):
    """Rows of ``logits`` as probabilities (NumPy, the dtype kept).

    Shape: ``(N, C)`` -> ``(N, C)``."""
    import numpy as np

    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def warmup_cosine(optimizer, steps: int):
    """Linear warm-up over the first 5% of ``steps``, then cosine decay to zero."""
    from numformer.optim.lr_scheduler import WarmupCosineLR

    return WarmupCosineLR(optimizer, min(max(steps // 20, 1), steps - 1) if steps > 1 else 0, max(steps, 1))
