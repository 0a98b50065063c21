"""Exports the command line asks for: a model folder (the demo's GPT, a sentence-transformers
encoder) and an application's trained models, each with its inputs, outputs and dynamic axes.

``export_app`` reads each app's models with the app's own loading functions (``numformer.apps``)
and exports what its ``predict`` runs; the table ``APP_MODELS`` says, per app, which models and
with which example inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numformer import nn
from numformer.onnx.exporter import export
from numformer.ops.masks import Equal
from numformer.tensor import Tensor


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
    path.parent.mkdir(parents=True, exist_ok=True)
    proto = export(module, args, path, input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=opset)

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
    if name not in PACKAGED and _is_numformer_gpt(folder):
        from numformer.models.gpt import GPT

        model, _, _ = GPT.load(folder)
        c = model.config
        ids = np.random.default_rng(0).integers(0, c.vocab_size, size=(2, min(8, c.block_size)))
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
        what = f"GPT ({c.n_layer} layers, d_model {c.d_model}, context {c.block_size}, vocab {c.vocab_size})"
        return _export(GPTLogits(model), (ids,), out_path, what, ["input_ids"], ["logits"], axes, opset_version)
    from numformer.models.sentence import SentenceEncoder

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


def _is_numformer_gpt(folder: Path) -> bool:
    try:
        info = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("model"), dict) and "n_layer" in info["model"]


# --- applications -----------------------------------------------------------------------------


class LastScores(nn.Module):
    """A recommender's scores of every item as the next one after each history (what ``numformer
    app sasrec predict`` ranks)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, seq):
        """Shape: ``seq`` integer ``(N, max_len)``, left-padded with 0 -> ``(N, num_items + 1)``
        (column 0 the padding id)."""
        return self.model.score(self.model(seq)[:, -1])


class Seq2SeqEncoder(nn.Module):
    """A ``Seq2SeqTransformer``'s encoder: source ids in, memory out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, src):
        """Shape: ``src`` integer ``(N, S)`` -> memory ``(N, S, d_model)``."""
        return self.model.encode(src)[0]


class Seq2SeqDecoder(nn.Module):
    """One decoding step of a ``Seq2SeqTransformer`` without a cache: the target so far, the
    memory and the source ids (for their padding) in, the next token's logits at every target
    position out (a decoder takes the last)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tgt, memory, src):
        """Shape: ``tgt`` ``(N, T)``, ``memory`` ``(N, S, d_model)``, ``src`` ``(N, S)`` ->
        ``(N, T, tgt_vocab_size)``."""
        padding = Equal.apply(Tensor(src), value=self.model.config.pad_id).array
        return self.model.decode(tgt, memory, padding)


def _ids(rng, high: int, shape, low: int = 1) -> np.ndarray:
    return rng.integers(low, high, size=shape).astype(np.int64)


def _classify(out: Path):
    from numformer.apps import classify

    model = classify._load_model(out / "model")
    rng = np.random.default_rng(0)
    ids = _ids(rng, model.bert.config.vocab_size, (2, 12))
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    yield "model", model, (ids, mask), ["input_ids", "attention_mask"], ["logits"], {**axes, "logits": {0: "batch"}}


def _vit(out: Path):
    from numformer.apps import vision

    model = vision._load_model(out)
    c = model.config
    images = np.random.default_rng(0).random((2, c.in_channels, c.image_size, c.image_size)).astype(np.float32)
    yield "model", model, (images,), ["images"], ["logits"], {"images": {0: "batch"}, "logits": {0: "batch"}}


def _forecast(out: Path):
    from numformer.apps import series

    for name in series.SERIES:
        models, _ = series._forecast_models(out, name)
        for kind, model in models.items():
            c = model.config
            x = np.random.default_rng(0).standard_normal((2, c.window, c.n_features)).astype(np.float32)
            axes = {"windows": {0: "batch"}, "forecast": {0: "batch"}}
            yield f"{name}-{kind}", model, (x,), ["windows"], ["forecast"], axes


def _anomaly(out: Path):
    from numformer.apps import series

    model, _ = series._autoencoder(out)
    c = model.config
    x = np.random.default_rng(0).standard_normal((2, c.window, c.n_features)).astype(np.float32)
    yield (
        "model",
        model,
        (x,),
        ["windows"],
        ["reconstruction"],
        {"windows": {0: "batch"}, "reconstruction": {0: "batch"}},
    )


def _sasrec(out: Path):
    from numformer.apps import recommend

    models, config = recommend._models(out)
    seq = _ids(np.random.default_rng(0), config.num_items + 1, (2, config.max_len))
    seq[:, : config.max_len // 2] = 0  # left padding, as the app's histories
    for name, model in models.items():
        axes = {"history": {0: "batch"}, "scores": {0: "batch"}}
        yield name, LastScores(model), (seq,), ["history"], ["scores"], axes


def _translate(app: str):
    def models(out: Path):
        from numformer.apps import translate

        model, _, _, _ = translate._load(out / "model", app, "transformer")
        rng = np.random.default_rng(0)
        c = model.config
        src = _ids(rng, c.src_vocab_size, (2, 6), low=4)
        src[1, 4:] = c.pad_id
        tgt = _ids(rng, c.tgt_vocab_size, (2, 3), low=4)
        src_axes = {0: "batch", 1: "source"}
        yield "encoder", Seq2SeqEncoder(model), (src,), ["src"], ["memory"], {"src": src_axes, "memory": src_axes}
        with_memory = {"tgt": {0: "batch", 1: "target"}, "memory": src_axes, "src": src_axes}
        memory = Seq2SeqEncoder(model).eval()(src)
        yield (
            "decoder",
            Seq2SeqDecoder(model),
            (tgt, memory.array, src),
            ["tgt", "memory", "src"],
            ["logits"],
            {**with_memory, "logits": {0: "batch", 1: "target"}},
        )

    return models


# What each application's predict runs: name -> a generator of (file stem, module, example args,
# input names, output names, dynamic axes) from the app's folder. The apps' LSTM baselines
# export too where they are nn.LSTM models (forecast, sasrec); translate's LSTMSeq2Seq does not
# (see numformer.onnx's docstring).
APP_MODELS = {
    "classify": _classify,
    "vit": _vit,
    "forecast": _forecast,
    "anomaly": _anomaly,
    "sasrec": _sasrec,
    "translate-numbers": _translate("translate-numbers"),
    "translate-dates": _translate("translate-dates"),
}


def export_app(name: str, app_folder, onnx_folder=None, opset_version: int | None = None) -> list[Exported]:
    """Export the trained models of application ``name`` (``numformer app NAME export``): what
    its ``predict`` runs (``APP_MODELS``).

    Args:
        name: the application (``numformer app list``).
        app_folder: its folder (``numformer app NAME train --out``'s, default
            ``runs/apps/NAME``).
        onnx_folder: where the files go (default ``app_folder/onnx``): ``model.onnx``, or one
            per model (``sasrec.onnx`` and ``lstm.onnx``; ``co2-transformer.onnx``, ...;
            translate's ``encoder.onnx`` and ``decoder.onnx``).
        opset_version: the ONNX opset (default 17).

    Returns:
        The ``Exported`` files, in that order.

    Raises:
        numformer.apps.AppError: no trained model in the folder (with the command that trains
        one), or damaged files. ValueError: no such application. ImportError: no ``onnx``."""
    if name not in APP_MODELS:
        raise ValueError(f"export_app: no exportable application {name!r}; choose from {', '.join(APP_MODELS)}")
    app_folder = Path(app_folder)
    onnx_folder = Path(onnx_folder) if onnx_folder is not None else app_folder / "onnx"
    written = []
    for stem, module, args, inputs, outputs, axes in APP_MODELS[name](app_folder):
        what = f"{name}: {type(module).__name__}" + ("" if stem == "model" else f" ({stem})")
        written.append(_export(module, args, onnx_folder / f"{stem}.onnx", what, inputs, outputs, axes, opset_version))
    return written
