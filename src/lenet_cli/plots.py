"""Figures written by the tool (matplotlib, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on machines with no screen
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from lenet_cli.atomic import replace_atomically


def save_image_grid(
    images: torch.Tensor,
    captions: Sequence[str],
    path: str | Path,
    marked: Sequence[bool] | None = None,
    columns: int = 10,
    title: str | None = None,
) -> Path:
    """A grid of grayscale images (N, H, W) with a caption under each; ``marked`` ones in red.

    Images may be uint8 or float (any range: each is shown with its own min..max, as the model saw it).
    """
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)  # each needs ~0.15 in
    row_height = 1.25 + 0.15 * lines
    figure, axes = plt.subplots(
        rows, columns, figsize=(1.2 * columns, row_height * rows + (0.4 if title else 0)), squeeze=False
    )
    for position, axis in enumerate(axes.flat):
        axis.axis("off")
        if position >= count:
            continue
        axis.imshow(images[position].float().cpu().numpy(), cmap="gray", interpolation="nearest")
        is_marked = bool(marked[position]) if marked is not None else False
        axis.set_title(captions[position], fontsize=7, color="red" if is_marked else "black")
        if is_marked:
            axis.axis("on")
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(2)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def save_figure(figure: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``figure`` as PNG atomically (a kill leaves the old file or the new one) and close it."""
    path = Path(path)
    with replace_atomically(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    plt.close(figure)
    return path


def save_confusion_matrix(
    confusion: Sequence[Sequence[int]] | torch.Tensor,
    classes: Sequence[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """The confusion matrix (rows: true class, columns: predicted) with its count in every cell.

    Colours are on a log scale, so that a handful of mistakes stands out next to a thousand correct
    images on the diagonal; empty cells stay white.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    size = len(classes)
    figure, axis = plt.subplots(figsize=(1.0 + 0.55 * size, 0.6 + 0.5 * size))
    shown = np.ma.masked_equal(counts, 0)
    norm = LogNorm(vmin=1, vmax=max(int(counts.max()), 2))
    image = axis.imshow(shown, cmap="Blues", norm=norm)
    for true in range(size):
        for predicted in range(size):
            count = counts[true, predicted]
            if count:
                dark = norm(count) > 0.6  # white text on the darker cells
                axis.text(
                    predicted,
                    true,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    axis.set_xticks(range(size), classes)
    axis.set_yticks(range(size), classes)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    figure.colorbar(image, ax=axis, label="images (log scale)", fraction=0.046, pad=0.04)
    if title:
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)


def save_training_curves(
    history: Mapping[str, Mapping[int, float]], path: str | Path, title: str | None = None
) -> Path:
    """Loss and accuracy per epoch, train and validation side by side.

    ``history`` maps a logged metric name (``train/loss``, ``val/acc``, …) to ``{epoch: value}``;
    missing metrics are left out of the plot.
    """
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, quantity, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "acc", "accuracy")):
        for stage, name in (("train", "train"), ("val", "validation")):
            values = history.get(f"{stage}/{quantity}")
            if values:
                epochs = sorted(values)
                axis.plot(epochs, [values[e] for e in epochs], marker="o", markersize=3, label=name)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)
