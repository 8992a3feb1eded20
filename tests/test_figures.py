"""The figures: image grids composed with Pillow (mosaic.py) and the matplotlib ones (plots.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from lenet_cli.outputs import mosaic, plots

RED = np.array(mosaic.RED)


def tile_origin(position: int, columns: int, title: bool, lines: int = 1) -> tuple[int, int]:
    """(top, left) pixel of a tile in a grid drawn by mosaic.save_image_grid."""
    cell_width = mosaic.TILE + 2 * mosaic.PAD
    cell_height = mosaic.TILE + 2 * mosaic.PAD + lines * (mosaic.CAPTION_SIZE + 3)
    title_height = mosaic.TITLE_SIZE + 2 * mosaic.PAD if title else 0
    return title_height + (position // columns) * cell_height + mosaic.PAD, (
        position % columns
    ) * cell_width + mosaic.PAD


def test_grid_shows_every_image_its_caption_and_marks(tmp_path: Path) -> None:
    images = torch.zeros(12, 28, 28, dtype=torch.uint8)
    images[:, 10:18, 12:16] = 255  # a bright bar in each digit
    marked = [index == 5 for index in range(12)]
    path = mosaic.save_image_grid(
        images,
        [f"#{i}: 1 → 7" for i in range(12)],
        tmp_path / "grid.png",
        marked=marked,
        columns=5,
        title="Misclassified test images",
    )
    with Image.open(path) as png:
        assert png.format == "PNG"
        picture = np.asarray(png.convert("RGB")).astype(int)
    assert picture.shape[1] >= 5 * mosaic.TILE and picture.shape[0] >= 3 * mosaic.TILE  # 5 columns, 3 rows
    for position in range(12):
        top, left = tile_origin(position, 5, title=True)
        tile = picture[top : top + mosaic.TILE, left : left + mosaic.TILE]
        # The digit scaled ×3 with its own contrast: the bar white, the background black.
        assert (tile[40, 42] == 255).all() and (tile[5, 5] == 0).all()
        caption = picture[
            top + mosaic.TILE + 2 : top + mosaic.TILE + 2 + mosaic.CAPTION_SIZE + 3, left : left + mosaic.TILE
        ]
        assert (caption < 128).any(), f"no caption under tile {position}"
        frame = picture[top - 2, left + mosaic.TILE // 2]
        assert (np.abs(frame - RED).max() < 40) == marked[position]
    assert (picture[: mosaic.TITLE_SIZE + mosaic.PAD] < 128).any()  # the title


def test_grid_of_model_inputs_and_a_single_image(tmp_path: Path) -> None:
    normalised = torch.randn(1, 32, 32)  # float of any range, as the model saw it
    path = mosaic.save_image_grid(
        normalised, ["a_rather_long_file_name_for_one_tile.png\n3  97%"], tmp_path / "one.png"
    )
    with Image.open(path) as png:
        assert png.width >= mosaic.TILE and png.height > mosaic.TILE + 2 * mosaic.CAPTION_SIZE
        gray = np.asarray(png.convert("L"))
    top, left = tile_origin(0, 1, title=False, lines=2)
    tile = gray[top : top + mosaic.TILE, left : left + mosaic.TILE]
    assert tile.min() == 0 and tile.max() == 255  # stretched over its own min..max
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_long_captions_are_cut_to_the_tile() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    text = mosaic.fit_text(draw, "x" * 200, mosaic.TILE, mosaic.font(mosaic.CAPTION_SIZE))
    assert text.endswith("…") and draw.textlength(text, font=mosaic.font(mosaic.CAPTION_SIZE)) <= mosaic.TILE


def near(picture: np.ndarray, x: float, y: float, colour: np.ndarray, radius: int = 3) -> bool:
    """Whether a pixel within ``radius`` of (x, y) has ``colour`` (RGB, ±30 a channel: anti-aliasing)."""
    x, y = round(x), round(y)
    window = picture[y - radius : y + radius + 1, x - radius : x + radius + 1]
    return bool((np.abs(window - colour).max(axis=2) <= 30).any())


def test_confusion_matrix_colours_each_cell_by_its_count_and_writes_it(tmp_path: Path) -> None:
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    confusion = np.diag([980, 1130, 1020]) + np.array([[0, 3, 0], [0, 0, 0], [7, 0, 0]])
    path = plots.save_confusion_matrix(confusion, ["0", "1", "2"], tmp_path / "confusion.png", title="accuracy")
    with Image.open(path) as png:
        assert png.format == "PNG"
        picture = np.asarray(png.convert("RGB")).astype(int)
    # plots.py's layout at 100 dpi: 0.5 inch a class, 0.75 inch of labels left of the matrix, 0.4 above it.
    assert picture.shape == (250, 325, 3)
    cell, left, top = 50, 75, 40
    norm = LogNorm(vmin=1, vmax=1130)  # log colours from 1 to the largest count
    for true in range(3):
        for predicted in range(3):
            count = confusion[true, predicted]
            x, y = left + cell * predicted + cell // 2, top + cell * true + cell // 2  # the cell's centre
            expected = np.array(colormaps["Blues"](norm(count))[:3]) * 255 if count else np.array([255, 255, 255])
            # Beside the number, the cell's colour: Blues by the log of its count; empty cells white.
            assert np.abs(picture[y + 18, x - 18] - expected).max() <= 3, (true, predicted, picture[y + 18, x - 18])
            around_centre = picture[y - 5 : y + 6, x - 12 : x + 13]
            written = (np.abs(around_centre - expected).max(axis=2) > 100).any()  # the count's glyphs
            assert written == bool(count), (true, predicted)


def test_training_curves_draw_each_metric_where_its_values_are(tmp_path: Path) -> None:
    history = {"train/loss": {0: 0.5, 1: 0.3}, "val/loss": {0: 0.4, 1: 0.35}}  # no accuracy logged
    with Image.open(plots.save_training_curves(history, tmp_path / "curves.png")) as png:
        assert png.size == (900, 360)
        picture = np.asarray(png.convert("RGB")).astype(int)
    train, validation = np.array([0x1F, 0x77, 0xB4]), np.array([0xFF, 0x7F, 0x0E])  # matplotlib's C0 and C1

    def pixel(epoch: float, loss: float) -> tuple[float, float]:
        """Where (epoch, loss) lies in the loss panel: plots.py's subplots_adjust (left 0.08, right 0.98,
        bottom 0.14, top 0.94, wspace 0.28 of 2 panels) and matplotlib's 5 % margins around the data."""
        width = 0.90 / 2.28  # of the figure, each panel
        x = 0.08 + width * (epoch + 0.05) / 1.10
        y = 0.14 + 0.80 * (loss - 0.29) / 0.22
        return x * 900, (1 - y) * 360

    for epoch, loss, colour, other in [
        (0, 0.5, train, validation),
        (1, 0.3, train, validation),
        (0.5, 0.4, train, validation),  # half-way along the line between the two epochs
        (0, 0.4, validation, train),
        (1, 0.35, validation, train),
        (0.5, 0.375, validation, train),
    ]:
        assert near(picture, *pixel(epoch, loss), colour), (epoch, loss)
        assert not near(picture, *pixel(epoch, loss), other), (epoch, loss)
    # The accuracy panel (right half) is empty: no curve, no legend.
    right = picture[:, 460:]
    for colour in (train, validation):
        assert not (np.abs(right - colour).max(axis=2) <= 30).any()
