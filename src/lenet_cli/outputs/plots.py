"""Figures drawn with matplotlib: the confusion matrix and the training curves (image grids: ``mosaic``).

matplotlib is imported only when a figure is drawn, and without pyplot: a ``Figure`` renders itself
to PNG (Agg) with no backend or screen. The axes sit at fixed positions instead of ``tight_layout``,
which measured every label's extent again and took a third of the confusion matrix's time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lenet_cli.atomic import replace_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches, not registered with pyplot (nothing to close)."""
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib only when a figure is drawn

    return Figure(figsize=(width, height))


def save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``figure`` as PNG atomically (a kill leaves the old file or the new one)."""
    path = Path(path)
    with replace_atomically(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
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
    from matplotlib.colors import LogNorm  # noqa: PLC0415 - matplotlib only when a figure is drawn

    counts = np.asarray(confusion, dtype=np.int64)
    size = len(classes)
    side = 0.5 * size  # inches of the square matrix
    left, bottom, top, colorbar_room = 0.75, 0.6, 0.4, 1.0  # inches for labels, title and colour bar
    width, height = left + side + colorbar_room, bottom + side + top
    figure = new_figure(width, height)
    axis = figure.add_axes((left / width, bottom / height, side / width, side / height))
    colorbar_axis = figure.add_axes(((left + side + 0.15) / width, bottom / height, 0.18 / width, side / height))
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
    figure.colorbar(image, cax=colorbar_axis, label="images (log scale)")
    if title:
        axis.set_title(title, fontsize=10)
    return save_figure(figure, path)


def save_training_curves(
    history: Mapping[str, Mapping[int, float]], path: str | Path, title: str | None = None
) -> Path:
    """Loss and accuracy per epoch, train and validation side by side.

    ``history`` maps a logged metric name (``train/loss``, ``val/acc``, …) to ``{epoch: value}``;
    missing metrics are left out of the plot.
    """
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 - matplotlib only when a figure is drawn

    figure = new_figure(9, 3.6)
    axes = figure.subplots(1, 2)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.86 if title else 0.94, wspace=0.28)
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
    return save_figure(figure, path)
