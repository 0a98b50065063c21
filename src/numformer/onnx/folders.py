"""Exports the command line asks for: a model folder (the demo's GPT, a sentence-transformers
encoder) and an application's trained models, each with its inputs, outputs and dynamic axes.

``export_app`` exports what each app's ``App.onnx_models`` gives: the models its ``predict``
runs, read with the app's own loaders, with example inputs and names. Every file is written
whole or not at all.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numformer import nn
from numformer.onnx.exporter import export, import_onnx
from numformer.serialization.files import atomic_write


@dataclass
class Exported:
    """One ONNX file written: ``path``, what it holds (``model``), and its inputs and outputs as
    ``name: shape`` lines (dynamic axes by name), for the command line to print."""

    path: Path
    model: str
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.path}: {self.model}\n  inputs: {', '.join(self.inputs)}\n  outputs: {', '.join(self.outputs)}"


def _export(module, args, path: Path, what: str, inputs: list, outputs: list, axes: dict, opset) -> Exported:
    """Export ``module`` to ``path`` (its folder made), written whole or not at all."""
    buffer = io.BytesIO()
    proto = export(
        module, args, buffer, input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=opset
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))

    def lines(values):
        return [f"{v.name}: {_shape(v)}" for v in values]

    return Exported(path, what, lines(proto.graph.input), lines(proto.graph.output))


def _shape(value) -> str:
    dims = value.type.tensor_type.shape.dim
    return "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"


# --- model folders ----------------------------------------------------------------------------


class GPTLogits(nn.Module):
    """A GPT's forward for deployment: token ids in, logits out (no targets, no cache)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, idx):
        """Shape: ``idx`` integer ``(N, T)`` -> logits ``(N, T, vocab_size)``."""
        return self.model(idx)[0]


def export_model_folder(folder, out_path, opset_version: int | None = None) -> Exported:
    """Export the model of a folder to the ONNX file ``out_path`` (``numformer export onnx``).

    Args:
        folder: a numformer GPT folder (``GPT.save``'s, as ``numformer demo`` writes in
            ``runs/demo/model``), or a sentence-transformers folder or packaged name
            (``all-MiniLM-L6-v2``).
        out_path: the ``.onnx`` file to write (its folder is made).
        opset_version: the ONNX opset (default 17).

    Returns:
        The ``Exported`` file.

    Shape:
        GPT: ``input_ids`` int64 ``(batch, sequence)``, sequence at most ``block_size`` ->
        ``logits`` ``(batch, sequence, vocab)``. Sentence encoder: ``input_ids`` and
        ``attention_mask`` int64 ``(batch, sequence)`` -> ``embeddings`` ``(batch, dim)``,
        pooled and normalised as ``numformer embed`` computes them.

    Raises:
        FileNotFoundError: no such folder. ValueError: a folder of neither kind, or one whose
        files are damaged (as its loader says). ImportError: no ``onnx`` package."""
    from numformer.models.bert import PACKAGED

    out_path = Path(out_path)
    name = str(folder)
    folder = Path(folder)
    if name not in PACKAGED and not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    if name not in PACKAGED and not _is_numformer_gpt(folder) and _is_numformer_gpt(folder / "model"):
        folder = folder / "model"  # a run folder (numformer train --out): the model it saved
    if name not in PACKAGED and _app_hint(folder):
        raise ValueError(
            f"{folder} is an application's folder, not a GPT or sentence-transformers one{_app_hint(folder)}"
        )
    if name not in PACKAGED and _is_numformer_gpt(folder):
        from numformer.models.gpt import GPT

        model, _, _ = GPT.load(folder)
        c = model.config
        ids = np.random.default_rng(0).integers(0, c.vocab_size, size=(2, min(8, c.block_size)))
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
        what = f"GPT ({c.n_layer} layers, d_model {c.d_model}, context {c.block_size}, vocab {c.vocab_size})"
        return _export(GPTLogits(model), (ids,), out_path, what, ["input_ids"], ["logits"], axes, opset_version)
    from numformer.models.sentence import SentenceEncoder

    if name not in PACKAGED and not all((folder / f).is_file() for f in ("config.json", "model.safetensors")):
        raise ValueError(
            f"{folder} is neither a numformer GPT folder (a config.json with the model's n_layer, as numformer "
            "demo writes) nor a sentence-transformers folder (config.json and model.safetensors)"
        )
    encoder = SentenceEncoder(folder if name not in PACKAGED else name)
    ids, mask = encoder.pad(encoder.tokenize(["an example sentence to trace", "and a second, longer one to pad"]))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    axes["embeddings"] = {0: "batch"}
    what = f"sentence encoder {encoder.name} ({encoder.pooling} pooling, dim {encoder.dim})"
    return _export(
        encoder.module(),
        (ids, mask),
        out_path,
        what,
        ["input_ids", "attention_mask"],
        ["embeddings"],
        axes,
        opset_version,
    )


def _app_hint(folder: Path) -> str:
    """For an application's folder, or a model folder inside one: the command that exports its
    models ("" for any other folder)."""
    from numformer.apps import folder as app_folder

    if app_folder.owner(folder) is None and folder.name in app_folder.INNER:
        folder = folder.parent
    app = app_folder.owner(folder)
    return "" if app is None else f"; it holds a trained {app}: {app_folder.command(app, 'export', folder)}"


def _is_numformer_gpt(folder: Path) -> bool:
    try:
        info = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("model"), dict) and "n_layer" in info["model"]


# --- applications -----------------------------------------------------------------------------


def export_app(name: str, app_folder, onnx_folder=None, opset_version: int | None = None) -> list[Exported]:
    """Export the trained models of application ``name`` (``numformer app NAME export``): what
    its ``predict`` runs, as the app's ``onnx_models`` gives them (read with the app's own
    loaders).

    Args:
        name: the application (``numformer app list``).
        app_folder: its folder (``numformer app NAME train --out``'s, default
            ``runs/apps/NAME``).
        onnx_folder: where the files go (made if missing; default ``app_folder/onnx``):
            ``model.onnx``, or one per model (``sasrec.onnx`` and ``lstm.onnx``;
            ``co2-transformer.onnx``, ...; translate's ``encoder.onnx`` and ``decoder.onnx``).
        opset_version: the ONNX opset (default 17).

    Returns:
        The ``Exported`` files, in ``onnx_models``' order.

    Raises:
        numformer.apps.AppError: no such application, no trained model in the folder (with the
        command that trains one), or damaged files. NotImplementedError: an app with no
        ``onnx_models``. ImportError: no ``onnx``."""
    from numformer import apps

    app = apps.get(name)
    app_folder = Path(app_folder)
    onnx_folder = Path(onnx_folder) if onnx_folder is not None else app_folder / "onnx"
    import_onnx()  # before the models are read
    written = []
    for m in app.onnx_models(app_folder):
        what = f"{name}: {type(m.module).__name__}" + ("" if m.stem == "model" else f" ({m.stem})")
        path = onnx_folder / f"{m.stem}.onnx"
        written.append(
            _export(m.module, m.example_args, path, what, m.input_names, m.output_names, m.dynamic_axes, opset_version)
        )
    return written
