"""Phone-style photos of MNIST test digits, made by the tests: deterministic by seed, no download.

Each photo is one MNIST test digit drawn as ink (one of several pen colours, stroke widths varied) on
paper (several tints, a faint mottling), under one *condition*, then given sensor noise and saved as
a JPEG of quality 60–90:

- ``plain``: even light (a gentle fall-off of at most 10 %);
- ``gradient``: a desk lamp's fall-off across the page, to 35–55 % at the far side;
- ``vignette``: the lens' darkening towards the corners, to 35–60 %;
- ``shadow``: a shadow's edge across the page (often through the digit), 35–60 % light on its dark
  side, and in some photos the table showing along one edge;
- ``ruled``: ruled paper (light blue lines, sometimes a red margin), tilted up to 1.5°;
- ``squared``: squared paper;
- ``small``: a small digit (8–20 % of the shorter side) anywhere on a large photo, up to 4000×3000;
- ``rotated``: the digit written 5–15° off upright;
- ``blurred``: out of focus (a Gaussian blur of 1.5–4.5 % of the digit's height);
- ``exif``: the ``plain`` photo of the same index stored as a phone does: the pixels as the sensor
  saw them and an EXIF orientation tag (2–8) saying how to turn them upright.

:func:`bad_files` adds the files a folder of photos may also hold and that must be skipped.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter

from tests.helpers import png_bomb

CONDITIONS = ("plain", "gradient", "vignette", "shadow", "ruled", "squared", "small", "rotated", "blurred", "exif")
PAPERS = ((248, 247, 242), (245, 240, 222), (236, 236, 236), (250, 244, 210), (238, 242, 248))
PENS = ((30, 30, 35), (25, 45, 140), (20, 25, 80), (170, 30, 35), (20, 90, 45), (95, 95, 100))  # last: pencil
# EXIF orientation → the transpose that makes stored pixels upright (as PIL.ImageOps.exif_transpose).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# ... and the one that turns an upright picture into what the phone stores (the inverse).
STORED = {2: UPRIGHT[2], 3: UPRIGHT[3], 4: UPRIGHT[4], 5: UPRIGHT[5], 6: UPRIGHT[8], 7: UPRIGHT[7], 8: UPRIGHT[6]}
ORIENTATION_TAG = 0x0112
DRAWN = 640  # pixels on the longer side at which photos are drawn (then enlarged to their size)


@dataclass(frozen=True)
class Photo:
    """One generated photo: its file, condition, and the MNIST test digit it shows."""

    path: Path
    condition: str
    index: int  # in the MNIST test set
    label: int


def plan(folder: Path, test_labels: np.ndarray, per_condition: int = 100, seed: int = 0) -> list[Photo]:
    """The photos :func:`generate` makes with these arguments, without making them.

    Each condition shows other MNIST test digits (``exif`` those of ``plain``, which it stores turned),
    so that the whole set reflects as many digits as it has photos.
    """
    drawn = [condition for condition in CONDITIONS if condition != "exif"]
    order = np.random.default_rng(seed).permutation(len(test_labels))[: per_condition * len(drawn)].tolist()
    photos = []
    for condition in CONDITIONS:
        block = drawn.index(condition if condition != "exif" else "plain")
        for number in range(per_condition):
            index = order[block * per_condition + number]
            photos.append(Photo(folder / f"{condition}-{number:03d}.jpg", condition, index, int(test_labels[index])))
    return photos


def generate(
    folder: Path, test_images: np.ndarray, test_labels: np.ndarray, per_condition: int = 100, seed: int = 0
) -> list[Photo]:
    """``per_condition`` photos of each condition in ``folder`` (``<condition>-NNN.jpg``); the same for a seed."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = plan(folder, test_labels, per_condition, seed)
    for photo_number, entry in enumerate(photos):
        number = photo_number % per_condition
        rng = np.random.default_rng([seed, CONDITIONS.index(entry.condition), number])
        if entry.condition == "exif":  # after plain's, which CONDITIONS lists first
            write_exif_twin(folder / f"plain-{number:03d}.jpg", entry.path, rng)
        else:
            picture = photo(test_images[entry.index], entry.condition, rng)
            picture.save(entry.path, format="JPEG", quality=int(rng.integers(60, 91)))
    return photos


def photo(digit: np.ndarray, condition: str, rng: np.random.Generator) -> Image.Image:
    """One RGB photo of ``digit`` (uint8 (28, 28), light on dark, as MNIST has it) under ``condition``."""
    if condition == "small":
        long_side = int(rng.choice([1000, 1600, 2400, 3200, 4000]))
        digit_fraction = rng.uniform(0.08, 0.2)
    else:
        long_side = int(rng.choice([640, 800, 1024, 1280]))
        digit_fraction = rng.uniform(0.3, 0.6)
    portrait = rng.random() < 0.5
    size = (long_side * 3 // 4, long_side) if portrait else (long_side, long_side * 3 // 4)  # (width, height)
    # Drawn at most DRAWN pixels on the longer side, then enlarged: detail finer than that would not
    # survive lenet's 512-pixel working image anyway, and drawing 12 megapixels in numpy is slow.
    scale = min(1.0, DRAWN / long_side)
    width, height = round(size[0] * scale), round(size[1] * scale)
    short = min(width, height)

    paper = np.array(PAPERS[rng.integers(len(PAPERS))], np.float32)
    picture = np.empty((height, width, 3), np.float32)
    picture[:] = paper
    picture *= (1 + _smooth_noise(rng, height, width, cells=6) * rng.uniform(0.003, 0.012))[..., None]
    if condition in ("ruled", "squared"):
        _draw_lines(picture, condition, rng)

    # The digit: MNIST's 28×28 field enlarged so that its 20-pixel box is digit_fraction of the shorter side.
    field = max(8, round(short * digit_fraction * 28 / 20))
    rotation = rng.uniform(5, 15) * rng.choice([-1, 1]) if condition == "rotated" else 0.0
    ink = _ink(digit, field, rng, rotation) * rng.uniform(0.85, 1.0)
    # Its 20-pixel box (4 of 28 pixels in from the field's sides) at least 4 % of the shorter side in.
    inset, margin = round(ink.shape[0] * 4 / 28), 0.04 * short
    spread = 0.4 if condition == "small" else 0.1  # how far from the centre the digit may sit
    low_x, high_x = margin - inset, width - ink.shape[1] + inset - margin
    low_y, high_y = margin - inset, height - ink.shape[0] + inset - margin
    left = round(
        np.clip(width / 2 - ink.shape[1] / 2 + rng.uniform(-spread, spread) * width, low_x, max(low_x, high_x))
    )
    top = round(
        np.clip(height / 2 - ink.shape[0] / 2 + rng.uniform(-spread, spread) * height, low_y, max(low_y, high_y))
    )
    pen = np.array(PENS[rng.integers(len(PENS))], np.float32)
    rows, columns = (
        slice(max(top, 0), min(top + ink.shape[0], height)),
        slice(max(left, 0), min(left + ink.shape[1], width)),
    )
    coverage = ink[rows.start - top : rows.stop - top, columns.start - left : columns.stop - left, None]
    picture[rows, columns] *= 1 - coverage * (1 - pen / 255)  # ink absorbs: multiplies what the paper reflects
    if condition == "ruled" and rng.random() < 0.5 and left > 0.25 * width:
        margin_line = int(rng.uniform(0.08, 0.15) * width)  # the red margin, left of the digit
        picture[:, margin_line : margin_line + max(1, round(short * 0.003))] *= np.array([0.95, 0.6, 0.6], np.float32)

    picture *= _lighting(condition, rng, height, width)[..., None]
    if condition == "shadow" and rng.random() < 0.4:
        _table_edge(picture, rng)
    picture += rng.standard_normal((height, width, 1), dtype=np.float32) * rng.uniform(1, 3)  # sensor noise
    image = Image.fromarray(_to_uint8(picture))
    if condition == "blurred":
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.015, 0.045) * field * 20 / 28))
    if (width, height) != size:
        image = Image.fromarray(cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_LINEAR))
    return image


def write_exif_twin(upright_path: Path, path: Path, rng: np.random.Generator) -> int:
    """``upright_path``'s photo stored turned, with the EXIF orientation that turns it back; the tag."""
    orientation = int(rng.integers(2, 9))
    with Image.open(upright_path) as upright:
        stored = upright.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    stored.save(path, format="JPEG", quality=int(rng.integers(60, 91)), exif=exif.tobytes())
    return orientation


def bad_files(folder: Path, seed: int = 0) -> dict[str, str]:
    """Files that are no digit photos, written into ``folder``: name → the reason lenet must give."""
    rng = np.random.default_rng([seed, 1234])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.jpg").write_text("not a photo: a shopping list")
    (folder / "empty.jpg").write_bytes(b"")
    blank = photo(np.zeros((28, 28), np.uint8), "shadow", rng)
    blank.save(folder / "blank-page.jpg", quality=80)
    grid = photo(np.zeros((28, 28), np.uint8), "squared", rng)
    grid.save(folder / "squared-page.jpg", quality=80)
    buffer = io.BytesIO()
    photo(np.full((28, 28), 255, np.uint8), "plain", rng).save(buffer, format="JPEG", quality=80)
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:2000])
    png_bomb(folder / "bomb.png")
    return {
        "notes.jpg": "not an image file",
        "empty.jpg": "not an image file",
        "blank-page.jpg": "no digit",
        "squared-page.jpg": "no digit",
        "truncated.jpg": "corrupt or truncated",
        "bomb.png": "decompression bomb",
    }


def _ink(digit: np.ndarray, field: int, rng: np.random.Generator, rotation: float) -> np.ndarray:
    """The digit's ink coverage (0–1) at ``field`` pixels: smooth MNIST strokes made crisp, as a pen's."""
    enlarged = Image.fromarray(digit.astype(np.float32) / 255, mode="F").resize(
        (field, field), Image.Resampling.BICUBIC
    )
    if rotation:
        enlarged = enlarged.rotate(rotation, Image.Resampling.BILINEAR, expand=True)
    coverage = np.asarray(enlarged, np.float32)
    # MNIST's strokes are anti-aliased at 28 px; enlarged they are blurry ridges. Cutting them at a level
    # near the middle gives a pen's sharp edge; the level sets the stroke's width (0.35: bolder).
    level = rng.uniform(0.35, 0.55)
    edge = max(1.0, field / 28 * 0.5)  # pixels of anti-aliased edge, about half an MNIST pixel
    gradient = np.hypot(*np.gradient(coverage))
    return np.clip((coverage - level) / np.maximum(gradient * edge, 1e-3) + 0.5, 0, 1).astype(np.float32)


def _lighting(condition: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Relative light (H, W), 1 at the brightest."""
    ys, xs = (axis.astype(np.float32) for axis in np.ogrid[0:height, 0:width])
    xs, ys = xs / width - 0.5, ys / height - 0.5  # -0.5 … 0.5
    angle = rng.uniform(0, 2 * math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)  # -0.7 … 0.7 across the page
    along = (along - along.min()) / (along.max() - along.min())  # 0 … 1
    if condition == "gradient":
        # A lamp beside the page: the light falls off with distance, fastest near the lamp.
        darkest = rng.uniform(0.35, 0.55)
        return (1 - (1 - darkest) * along ** rng.uniform(0.7, 1.5)).astype(np.float32)
    gentle = 1 - rng.uniform(0, 0.1) * along
    if condition == "vignette":
        corner = rng.uniform(0.35, 0.6)
        radius = (xs**2 + ys**2) / 0.5  # 0 at the centre, 1 in the corners
        return (gentle * (1 - (1 - corner) * radius ** rng.uniform(1, 2))).astype(np.float32)
    if condition == "shadow":
        # A straight edge (an arm, a phone) somewhere across the middle of the page, its penumbra soft.
        cut = rng.uniform(0.25, 0.75)
        softness = rng.uniform(0.002, 0.02)
        dark = rng.uniform(0.35, 0.6)
        inside = 0.5 + 0.5 * np.tanh((along - cut) / (2 * softness))  # a logistic step
        return (gentle * (1 - (1 - dark) * inside)).astype(np.float32)
    return gentle.astype(np.float32)


def _draw_lines(picture: np.ndarray, kind: str, rng: np.random.Generator) -> None:
    height, width, _ = picture.shape
    short = min(height, width)
    colour = np.array([rng.uniform(140, 185), rng.uniform(180, 205), rng.uniform(215, 240)], np.float32)
    if kind == "squared":
        colour = np.full(3, rng.uniform(165, 200), np.float32) * np.array([0.95, 0.98, 1.05], np.float32)
    spacing = short * (rng.uniform(0.05, 0.09) if kind == "ruled" else rng.uniform(0.03, 0.06))
    thickness = max(1.0, short * rng.uniform(0.002, 0.004))
    tilt = math.radians(rng.uniform(-1.5, 1.5))
    ys, xs = (axis.astype(np.float32) for axis in np.ogrid[0:height, 0:width])
    offset = rng.uniform(0, spacing)

    def lines(coordinate: np.ndarray) -> np.ndarray:
        distance = np.abs((coordinate - offset + spacing / 2) % spacing - spacing / 2)
        return np.clip(thickness / 2 + 0.5 - distance, 0, 1)  # anti-aliased lines of ``thickness`` px

    coverage = lines(ys * math.cos(tilt) + xs * math.sin(tilt))
    if kind == "squared":
        coverage = np.maximum(coverage, lines(xs * math.cos(tilt) - ys * math.sin(tilt)))
    picture *= 1 - coverage[..., None] * (1 - colour / 255)


def _table_edge(picture: np.ndarray, rng: np.random.Generator) -> None:
    """The table beside the page showing along one edge: a dark band touching the border."""
    height, width, _ = picture.shape
    band = int(rng.uniform(0.03, 0.08) * min(height, width))
    table = np.array([rng.uniform(60, 110), rng.uniform(50, 90), rng.uniform(40, 70)], np.float32)
    side = int(rng.integers(4))
    if side == 0:
        picture[:band] = table
    elif side == 1:
        picture[-band:] = table
    elif side == 2:
        picture[:, :band] = table
    else:
        picture[:, -band:] = table


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    coarse = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _to_uint8(picture: np.ndarray) -> np.ndarray:
    return np.clip(picture, 0, 255).round().astype(np.uint8)
