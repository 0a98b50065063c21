"""Vision (app ``vit``): a Vision Transformer on scikit-learn's bundled handwritten digits.

Data: ``sklearn.datasets.load_digits`` (1,797 8x8 grey images, 10 classes; bundled with
scikit-learn, BSD licence), a stratified 20% held out for the test. The ViT cuts each image into
16 patches of 2x2 pixels and trains with random one-pixel shifts (the images' own jitter).
Baseline: logistic regression on the 64 pixels. Score: test accuracy. ``eval`` draws the
confusion matrix and the attention rollout of a few test images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.apps.app import App, AppError, OnnxModel, arrays_writer, fit_adamw, pyplot, save_figure, softmax
from numformer.models.vit import VisionTransformer, ViTConfig, attention_rollout

DATA = "scikit-learn 1.9.1 load_digits: 1,797 8x8 handwritten digits, 10 classes"


@dataclass(frozen=True)
class Preset:
    """Every setting a vit train reads."""

    name: str
    train_images: int | None  # the first so many training images (None: all 1,437)
    d_model: int
    depth: int
    num_heads: int
    steps: int


PRESETS = {
    "fast": Preset("fast", train_images=200, d_model=16, depth=1, num_heads=2, steps=20),
    "full": Preset("full", train_images=None, d_model=64, depth=4, num_heads=4, steps=3000),
}


def load(seed: int):
    """(train_x, train_y, test_x, test_y): images (N, 8, 8) scaled to [0, 1], stratified 80/20."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    train, test = train_test_split(np.arange(len(x)), test_size=0.2, stratify=digits.target, random_state=seed)
    return x[train], digits.target[train], x[test], digits.target[test]


def shift(images: np.ndarray, rng) -> np.ndarray:
    """Each image moved by up to one pixel in each direction (zeros come in at the edge)."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    dy, dx = rng.integers(0, 3, len(images)), rng.integers(0, 3, len(images))
    rows = dy[:, None] + np.arange(8)[None]
    cols = dx[:, None] + np.arange(8)[None]
    return padded[np.arange(len(images))[:, None, None], rows[:, :, None], cols[:, None, :]]


def _classify(model, images: np.ndarray) -> tuple[np.ndarray, list]:
    with nf.no_grad():
        logits, weights = model(images, need_weights=True)
    return logits.numpy(), weights


def _figures(folder: Path, images, labels, predicted, confusion, rollout) -> list[str]:
    plt = pyplot(folder)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(confusion, cmap="Blues")
    for i in range(10):
        for j in range(10):
            if confusion[i, j]:
                ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title="ViT on the digits test set", xticks=range(10), yticks=range(10))
    figures = [save_figure(fig, folder / "vit_confusion.png")]
    k = min(6, len(images))
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.4))
    axes = np.asarray(axes).reshape(2, k)
    side = int(np.sqrt(rollout.shape[1]))
    for i in range(k):
        axes[0, i].imshow(images[i], cmap="gray_r")
        axes[0, i].set_title(f"{labels[i]} -> {predicted[i]}", fontsize=8)
        axes[1, i].imshow(rollout[i].reshape(side, side), cmap="magma")
        for a in axes[:, i]:
            a.axis("off")
    fig.suptitle("test images and the class token's attention rollout (2x2 patches)", fontsize=9)
    return [*figures, save_figure(fig, folder / "vit_rollout.png")]


class Vision(App):
    name = "vit"
    summary = "VisionTransformer: handwritten digits"
    data = DATA
    licence = "BSD (bundled with scikit-learn)"
    metric = "accuracy"
    baseline = "logistic regression on pixels"
    inputs = "test:K | IMAGE.npy ..."
    presets = PRESETS

    def fit_models(self, out: Path, preset: Preset, seed: int, progress: bool) -> tuple[dict, dict]:
        from sklearn.linear_model import LogisticRegression

        x, y, _, _ = load(seed)
        x, y = x[: preset.train_images], y[: preset.train_images]
        nf.manual_seed(seed)
        config = ViTConfig(d_model=preset.d_model, depth=preset.depth, num_heads=preset.num_heads)
        model = VisionTransformer(config)

        def batches(rng):
            rows = rng.integers(0, len(x), 64)
            return shift(x[rows], rng), y[rows]

        def loss_fn(m, batch):
            return nf.nn.functional.cross_entropy(m(batch[0]), batch[1], label_smoothing=0.1)

        fitted = fit_adamw(model, loss_fn, batches, out, "model", preset.steps, seed, progress, 2e-3, 0.05)
        seconds = {"vit": fitted.seconds}
        start = time.perf_counter()
        logreg = LogisticRegression(max_iter=5000).fit(x.reshape(len(x), -1), y)
        seconds["logistic_regression"] = time.perf_counter() - start
        split = {"preset": preset.name, "seed": seed, "n_train": len(x)}
        self.save_models(out / "model", config.to_dict(), {"model.safetensors": model}, split)
        baseline = {"baseline.safetensors": arrays_writer({"coef": logreg.coef_, "intercept": logreg.intercept_})}
        self.save_models(out / "baseline", {"kind": "logistic_regression"}, {}, split, baseline)
        return split, {"steps": preset.steps, "train_seconds": seconds}

    def _model(self, out: Path) -> VisionTransformer:
        folder = out / "model"
        info, path = self.model_folder(folder)
        c = self.config(ViTConfig, info, path)
        sizes = {  # checked against the file before a model of the config's size is built
            "pos_embed": (1, c.num_patches + 1, c.d_model),
            "patch_embed.weight": (c.d_model, c.in_channels * c.patch_size**2),
            "head.weight": (c.num_classes, c.d_model),
            f"blocks.{c.depth - 1}.mlp.fc1.weight": (int(c.d_model * c.mlp_ratio), c.d_model),
        }
        self.check_sizes(folder / "model.safetensors", sizes)
        return self.load_weights(VisionTransformer(c), folder / "model.safetensors")

    def evaluate(self, out: Path) -> dict:
        split = self.read_split(out)
        _, _, tx, ty = load(split["seed"])
        model = self._model(out)
        logits, weights = _classify(model, tx)
        self.check_output(logits, "logits", out / "model")
        predicted = logits.argmax(1)
        pixels = tx.reshape(len(tx), -1)
        self.check_folder(out / "baseline")
        shapes = {"coef": (10, pixels.shape[1]), "intercept": (10,)}
        baseline = self.load_arrays(out / "baseline" / "baseline.safetensors", shapes)
        base_logits = pixels @ baseline["coef"].T + baseline["intercept"]
        self.check_output(base_logits, "logits", out / "baseline")
        base_pred = base_logits.argmax(1)
        confusion = np.zeros((10, 10), dtype=int)
        np.add.at(confusion, (ty, predicted), 1)
        figures = _figures(out / "figures", tx, ty, predicted, confusion, attention_rollout(weights))
        return self.scored(
            out,
            split,
            "accuracy (test set)",
            round(float((predicted == ty).mean()), 4),
            round(float((base_pred == ty).mean()), 4),
            len(ty),
            baseline="logistic regression on the pixels",
            figures=figures,
        )

    def predict(self, out: Path, inputs: list[str]) -> list[str]:
        split = self.read_split(out)
        _, _, tx, ty = load(split["seed"])
        model = self._model(out)
        images = np.stack([_image(t, tx) for t in inputs])
        logits, _ = _classify(model, images)
        self.check_output(logits, "logits", out / "model")
        p = softmax(logits)
        lines = []
        for text, row in zip(inputs, p):
            truth = f" (true label {ty[int(text[5:])]})" if text.startswith("test:") else ""
            lines.append(f"{text}: digit {row.argmax()} (p {row.max():.3f}){truth}")
        return lines

    def onnx_models(self, out: Path) -> list[OnnxModel]:
        """The ViT: images ``(batch, C, H, W)`` in [0, 1] -> ``logits`` ``(batch, 10)``."""
        model = self._model(out)
        c = model.config
        images = np.random.default_rng(0).random((2, c.in_channels, c.image_size, c.image_size)).astype(np.float32)
        axes = {"images": {0: "batch"}, "logits": {0: "batch"}}
        return [OnnxModel("model", model, (images,), ["images"], ["logits"], axes)]


def _image(text: str, test_images) -> np.ndarray:
    """``test:K`` (the K-th test image) or a ``.npy`` file holding one 8x8 image on the data's
    scale, [0, 1] (the digits' 0-16 divided by 16): an image on another scale, such as 0-255,
    would be classified wrongly, so it is refused."""
    if text.startswith("test:"):
        try:
            k = int(text[5:])
        except ValueError:
            raise AppError(f"vit: {text!r} is not test:K with an integer K") from None
        if not 0 <= k < len(test_images):
            raise AppError(f"vit: test image {k} does not exist (0 .. {len(test_images) - 1})")
        return test_images[k]
    path = Path(text)
    if path.suffix != ".npy" or not path.is_file():
        raise AppError(f"vit: expected test:K or an existing .npy file with one 8x8 image, got {text!r}")
    try:
        image = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise AppError(f"vit: {path} is not a .npy array of numbers ({type(err).__name__})") from None
    real = np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    if image.shape != (8, 8) or not real or not np.isfinite(image).all():
        raise AppError(f"vit: {path} must hold one finite 8x8 image, got {image.dtype} {image.shape}")
    if image.min() < 0 or image.max() > 1:
        raise AppError(
            f"vit: {path} holds values in [{image.min():g}, {image.max():g}]; the model was trained on images "
            "scaled to [0, 1] (the digits' 0-16 divided by 16): scale yours the same way"
        )
    return image.astype(np.float32)


APPS = [Vision()]
