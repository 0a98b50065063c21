"""General figures for the tour and reports: heatmaps, grids of heatmaps and line plots.
Every figure gets a title, axis labels and (with several series) a legend.

Figures are ``matplotlib.figure.Figure`` objects saved straight to PNG, never through pyplot, so
writing one neither needs a display nor changes the backend of the program that calls it (a
notebook keeps showing its own figures inline)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def heatmap(
    matrix,
    path,
    title: str,
    xlabel: str,
    ylabel: str,
    xticks=None,
    yticks=None,
    cmap: str = "viridis",
    colorbar: str = "value",
    annotate: bool = False,
) -> None:
    matrix = np.asarray(matrix, dtype=float)
    fig = Figure(figsize=(max(5, 0.5 * matrix.shape[1] + 3), max(4, 0.4 * matrix.shape[0] + 2)))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap=cmap, aspect="auto")
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks, rotation=45 if len(xticks) > 8 else 0)
    if yticks is not None:
        ax.set_yticks(range(len(yticks)), yticks)
    if annotate:
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(image, ax=ax, label=colorbar)
    _save(fig, path)


def heatmap_grid(matrices, titles, path, suptitle: str, xlabel: str, ylabel: str, ticks=None, cols: int = 2) -> None:
    rows = -(-len(matrices) // cols)
    fig = Figure(figsize=(4.5 * cols, 4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, m, t in zip(axes.flat, matrices, titles):
        image = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
        if ticks is not None:
            ax.set_xticks(range(len(ticks)), ticks, rotation=45)
            ax.set_yticks(range(len(ticks)), ticks)
        ax.set(title=t, xlabel=xlabel, ylabel=ylabel)
    for ax in list(axes.flat)[len(matrices) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), label="attention weight")
    fig.suptitle(suptitle)
    fig.savefig(path, dpi=100)


def lines(
    series: dict,
    path,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
    points: dict | None = None,
    vlines: dict | None = None,
) -> None:
    """``series``: label -> (x, y) drawn as lines; ``points``: label -> (x, y) as markers;
    ``vlines``: label -> x as dashed vertical lines."""
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, marker="o" if len(x) <= 12 else None)
    for label, (x, y) in (points or {}).items():
        ax.scatter(x, y, label=label, s=18, color="black", zorder=3)
    for i, (label, x) in enumerate((vlines or {}).items()):
        ax.axvline(x, ls="--", color=f"C{i + 2}", label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)
