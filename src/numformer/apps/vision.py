"""Vision (app ``vit``): a Vision Transformer on scikit-learn's bundled handwritten digits.

Data: ``sklearn.datasets.load_digits`` (1,797 8x8 grey images, 10 classes; bundled with
scikit-learn, BSD licence), a stratified 20% held out for the test. The ViT cuts each image into
16 patches of 2x2 pixels and trains with random one-pixel shifts (the images' own jitter).
Baseline: logistic regression on the 64 pixels. Score: test accuracy. ``eval`` draws the
confusion matrix and the attention rollout of a few test images.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.apps import (
    App,
    AppError,
    build_config,
    check_sizes,
    fit,
    load_arrays,
    load_weights,
    read_json,
    read_split,
    warmup_cosine,
    write_json,
)
from numformer.models.vit import VisionTransformer, ViTConfig, attention_rollout

DATA = "scikit-learn 1.9.1 load_digits: 1,797 8x8 handwritten digits, 10 classes"
FAST = {"d_model": 16, "depth": 1, "num_heads": 2}
FULL = {"d_model": 64, "depth": 4, "num_heads": 4}


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


def train(out: Path, fast: bool, seed: int, steps: int | None, progress: bool) -> dict:
    from sklearn.linear_model import LogisticRegression

    from numformer.interop import save_file, save_model

    x, y, tx, ty = load(seed)
    if fast:
        x, y = x[:200], y[:200]
    nf.manual_seed(seed)
    config = ViTConfig(**(FAST if fast else FULL))
    model = VisionTransformer(config)
    steps = steps or (20 if fast else 3000)
    optimizer = nf.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)

    def batches(rng):
        rows = rng.integers(0, len(x), 64)
        return shift(x[rows], rng), y[rows]

    def loss_fn(m, batch):
        return nf.nn.functional.cross_entropy(m(batch[0]), batch[1], label_smoothing=0.1)

    seconds = {
        "vit": fit(
            model, optimizer, loss_fn, batches, out, "model", steps, seed, progress, warmup_cosine(optimizer, steps)
        ).seconds
    }
    start = time.perf_counter()
    logreg = LogisticRegression(max_iter=5000).fit(x.reshape(len(x), -1), y)
    seconds["logistic_regression"] = time.perf_counter() - start
    (out / "model").mkdir(parents=True, exist_ok=True)
    save_model(model, out / "model" / "model.safetensors")
    write_json(out / "model" / "config.json", config.to_dict())
    (out / "baseline").mkdir(parents=True, exist_ok=True)
    save_file({"coef": logreg.coef_, "intercept": logreg.intercept_}, out / "baseline" / "baseline.safetensors")
    write_json(out / "split.json", {"seed": seed, "fast": fast, "n_train": len(x)})
    info = {"app": "vit", "steps": steps, "train_seconds": {k: round(v, 1) for k, v in seconds.items()}}
    write_json(out / "train.json", info)
    return info


def _load_model(out: Path) -> VisionTransformer:
    path = out / "model" / "config.json"
    c = build_config(ViTConfig, read_json(path, "vit"), path, "vit")
    sizes = {  # checked against the file before a model of the config's size is built
        "pos_embed": (1, c.num_patches + 1, c.d_model),
        "patch_embed.weight": (c.d_model, c.in_channels * c.patch_size**2),
        "head.weight": (c.num_classes, c.d_model),
        f"blocks.{c.depth - 1}.mlp.fc1.weight": (int(c.d_model * c.mlp_ratio), c.d_model),
    }
    check_sizes(out / "model" / "model.safetensors", "vit", sizes)
    model = VisionTransformer(c)
    load_weights(model, out / "model" / "model.safetensors", "vit")
    return model.eval()


def _classify(model, images: np.ndarray) -> tuple[np.ndarray, list]:
    with nf.no_grad():
        logits, weights = model(images, need_weights=True)
    return logits.array, weights


def evaluate(out: Path) -> dict:
    split = read_split(out, "vit")
    _, _, tx, ty = load(split["seed"])
    model = _load_model(out)
    logits, weights = _classify(model, tx)
    predicted = logits.argmax(1)
    pixels = tx.reshape(len(tx), -1)
    shapes = {"coef": (10, pixels.shape[1]), "intercept": (10,)}
    baseline = load_arrays(out / "baseline" / "baseline.safetensors", "vit", shapes)
    base_pred = (pixels @ baseline["coef"].T + baseline["intercept"]).argmax(1)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (ty, predicted), 1)
    figures = _figures(out / "figures", tx, ty, predicted, confusion, attention_rollout(weights))
    trained = read_json(out / "train.json", "vit")
    return {
        "app": "vit",
        "data": DATA,
        "metric": "accuracy (test set)",
        "score": round(float((predicted == ty).mean()), 4),
        "baseline": "logistic regression on the pixels",
        "baseline_score": round(float((base_pred == ty).mean()), 4),
        "n_test": len(ty),
        "train_seconds": trained["train_seconds"],
        "figures": figures,
        "fast": split["fast"],
    }


def _figures(folder: Path, images, labels, predicted, confusion, rollout) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(confusion, cmap="Blues")
    for i in range(10):
        for j in range(10):
            if confusion[i, j]:
                ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title="ViT on the digits test set", xticks=range(10), yticks=range(10))
    fig.tight_layout()
    fig.savefig(folder / "vit_confusion.png", dpi=110)
    plt.close(fig)
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
    fig.tight_layout()
    fig.savefig(folder / "vit_rollout.png", dpi=110)
    plt.close(fig)
    return [str(folder / "vit_confusion.png"), str(folder / "vit_rollout.png")]


def _image(text: str, test_images) -> np.ndarray:
    """``test:K`` (the K-th test image) or a ``.npy`` file holding one 8x8 image in [0, 1]."""
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
    return image.astype(np.float32)


def predict(out: Path, inputs: list[str]) -> list[str]:
    split = read_split(out, "vit")
    _, _, tx, ty = load(split["seed"])
    model = _load_model(out)
    images = np.stack([_image(t, tx) for t in inputs])
    logits, _ = _classify(model, images)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lines = []
    for text, row in zip(inputs, p):
        truth = f" (true label {ty[int(text[5:])]})" if text.startswith("test:") else ""
        lines.append(f"{text}: digit {row.argmax()} (p {row.max():.3f}){truth}")
    return lines


APPS = [
    App(
        name="vit",
        summary="VisionTransformer: handwritten digits",
        data=DATA,
        licence="BSD (bundled with scikit-learn)",
        metric="accuracy",
        baseline="logistic regression on pixels",
        train=train,
        evaluate=evaluate,
        predict=predict,
        predict_help="test:K | IMAGE.npy ...",
    )
]
