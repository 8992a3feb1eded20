"""Figures written by the tool (matplotlib, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on machines with no screen
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lenet_cli.atomic import replace_atomically  # noqa: E402


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
    figure, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.4 * rows + (0.4 if title else 0)), squeeze=False)
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
