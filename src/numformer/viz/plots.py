"""Plots written as PNG files (needs the ``train`` extra), as ``matplotlib.figure.Figure`` objects
saved straight to disk: no pyplot, so the caller's matplotlib backend is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot_metrics(metrics_path, png_path) -> None:
    """Three panels from a trainer's ``metrics.jsonl``: train and validation loss, learning
    rate, gradient norm, each against the step."""
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line]
    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    axes[0].plot(steps, [r["loss"] for r in rows], label="train", lw=1)
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if val:
        axes[0].plot(*zip(*val), "o-", label="validation")
    axes[0].set(title="Loss", xlabel="step", ylabel="loss")
    axes[0].legend()
    axes[1].plot(steps, [r["lr"] for r in rows], color="tab:green", label="learning rate")
    axes[1].set(title="Learning rate", xlabel="step", ylabel="lr")
    axes[1].legend()
    axes[2].plot(steps, [r["grad_norm"] for r in rows], color="tab:red", label="gradient norm")
    axes[2].set(title="Gradient norm (before clipping)", xlabel="step", ylabel="norm", yscale="log")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


def plot_lr_finder(result, png_path) -> None:
    """The LR finder's curve (raw and smoothed loss against lr, log scale) with every
    suggestion marked."""
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    ax.plot(result.lrs, result.losses, alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed loss")
    for (name, lr), color in zip(result.suggestions.items(), ["C2", "C3", "C4", "C5"]):
        ax.axvline(lr, color=color, ls="--", label=f"{name}: {lr:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title="Learning-rate finder")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


def plot_attention(weights, labels, png_path, title: str = "Attention") -> None:
    """Heatmap of one head's weights ``(T, T)``: row = query token, column = key token."""
    weights = np.asarray(weights)
    size = max(6.0, 0.22 * len(labels) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=90)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(xlabel="key (attended to)", ylabel="query (attending)", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
