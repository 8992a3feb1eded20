"""Writing as people bring it, made from the MNIST *test* split (never trained on) and from shapes and
fonts: deterministic by seed, no download. Used by tests/test_reading.py, benchmarks/reading.py and
benchmarks/row_reader.py (which writes its training rows from the MNIST *training* split).

Each generator returns grayscale pictures (float32 (H, W), 0 black … 255 white, as ``images.decode``
gives) with the text they show (``""`` for a picture with no digit):

- ``tight``: the digit's ink box cut out, sometimes a few percent into the strokes (forms, other sets);
- ``one_edge``: a margin on three sides, the ink touching the fourth;
- ``low_resolution``: the digit shrunk to 8×8 … 20×20 pixels, then enlarged (nearest or bilinear);
- ``light_on_dark`` and ``thick``: chalk on a board, a felt pen;
- ``numbers``: 2–6 digits side by side with gaps, slant and drift, 10 % of neighbours touching;
  ``touching``: two digits whose strokes meet;
- ``negatives``: blank paper, letters and words from the machine's TrueType fonts, scribbles, shapes.

Held out (made another way, never looked at while tuning): ``held_out_numbers`` (wider spacing
distribution, written on photographed paper: gradient, noise, blur) and ``held_out_negatives``
(OpenCV's Hershey script fonts, spirals, hatching).
"""

from __future__ import annotations

import glob
import string
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lenet_cli.data import idx

Sample = tuple[np.ndarray, str]
# Letters that are also digits in someone's hand (O 0, l 1, Z 2, S 5, b 6, q 9, ...): not negatives.
DIGIT_LIKE = set("OoDQlI1iJjZzSsbBgqGTt")
LETTERS = "".join(c for c in string.ascii_letters if c not in DIGIT_LIKE)
PAPER = 240.0


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    arrays = idx.load(None, allow_download=False, splits=("test",))
    return arrays["test_images"].numpy(), arrays["test_labels"].numpy()


def _paper(ink: np.ndarray, rng: np.random.Generator, noise: float = 2.0) -> np.ndarray:
    """Ink (float 0…1, 1 = black) → dark strokes on light paper, float32 0…255 with a little noise."""
    paper = rng.uniform(200, 250)
    pen = rng.uniform(0, 60)
    gray = paper - (paper - pen) * ink
    return (gray + rng.normal(0, noise, ink.shape)).clip(0, 255).astype(np.float32)


def _ink_box(digit: np.ndarray, level: int = 30) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(digit > level)
    return int(rows.min()), int(rows.max()) + 1, int(columns.min()), int(columns.max()) + 1


def _enlarged(ink: np.ndarray, scale: float) -> np.ndarray:
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    return np.asarray(cv2.resize(ink.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)).clip(0, 1)


def _pick(count: int, rng: np.random.Generator, total: int) -> np.ndarray:
    return rng.choice(total, count, replace=False)


def tight(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng([seed, 1])
    samples = []
    for i in _pick(count, rng, len(images)):
        top, bottom, left, right = _ink_box(images[i], level=0)
        if rng.random() < 0.5:  # cut a few percent into the strokes on some sides
            height, width = bottom - top, right - left
            top += int(rng.random() < 0.5) * round(height * rng.uniform(0, 0.04))
            bottom -= int(rng.random() < 0.5) * round(height * rng.uniform(0, 0.04))
            left += int(rng.random() < 0.5) * round(width * rng.uniform(0, 0.04))
            right -= int(rng.random() < 0.5) * round(width * rng.uniform(0, 0.04))
        ink = images[i][top:bottom, left:right] / 255.0
        samples.append((_paper(_enlarged(ink, rng.uniform(1, 5)), rng), str(labels[i])))
    return samples


def one_edge(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng([seed, 2])
    samples = []
    for i in _pick(count, rng, len(images)):
        top, bottom, left, right = _ink_box(images[i], level=0)
        ink = _enlarged(images[i][top:bottom, left:right] / 255.0, rng.uniform(1, 4))
        margin = [round(max(ink.shape) * rng.uniform(0.1, 0.6)) for _ in range(4)]
        margin[int(rng.integers(4))] = 0  # top, bottom, left, right: one side touched
        ink = np.pad(ink, ((margin[0], margin[1]), (margin[2], margin[3])))
        samples.append((_paper(ink, rng), str(labels[i])))
    return samples


def low_resolution(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0, side: int = 8) -> list[Sample]:
    """The digit's box shrunk to ``side`` pixels on its longer side, then enlarged 4–16× (as a user's
    thumbnail or a small scan would be)."""
    rng = np.random.default_rng([seed, 3, side])
    samples = []
    for i in _pick(count, rng, len(images)):
        top, bottom, left, right = _ink_box(images[i], level=0)
        ink = images[i][top:bottom, left:right] / 255.0
        small = cv2.resize(ink.astype(np.float32), _size(ink.shape, side), interpolation=cv2.INTER_AREA)
        small = np.pad(small, 1 + int(rng.integers(0, 3)))
        up = float(rng.uniform(4, 16))
        how = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        large = cv2.resize(small, _size(small.shape, round(max(small.shape) * up)), interpolation=how)
        samples.append((_paper(np.clip(large, 0, 1), rng), str(labels[i])))
    return samples


def _size(shape: tuple[int, ...], longer: int) -> tuple[int, int]:
    scale = longer / max(shape)
    return max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale))


def light_on_dark(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng([seed, 4])
    samples = []
    for i in _pick(count, rng, len(images)):
        ink = _enlarged(np.pad(images[i] / 255.0, int(rng.integers(0, 8))), rng.uniform(1, 6))
        samples.append((255 - _paper(ink, rng), str(labels[i])))
    return samples


def thick(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng([seed, 5])
    samples = []
    for i in _pick(count, rng, len(images)):
        ink = _enlarged(np.pad(images[i] / 255.0, 4), rng.uniform(3, 6))
        width = int(rng.integers(3, 9))
        grown = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
        samples.append((_paper(grown, rng), str(labels[i])))
    return samples


def _slanted(ink: np.ndarray, shear: float) -> np.ndarray:
    height, width = ink.shape
    pad = int(abs(shear) * height) + 1
    matrix = np.array([[1, -shear, pad + shear * height / 2], [0, 1, 0]], np.float32)
    return np.asarray(cv2.warpAffine(ink.astype(np.float32), matrix, (width + 2 * pad, height)))


def write_number(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, length: int, touching: float = 0.1, gap=(2, 9)
) -> Sample:
    """``length`` test digits side by side (gaps of ``gap`` px at MNIST scale, a shared slant, a drifting
    baseline), each neighbour pair touching with probability ``touching``."""
    chosen = rng.choice(len(images), length, replace=False)
    shear = rng.uniform(-0.25, 0.25)
    height = 28 + 12
    canvas = np.zeros((height, 40 * length + 20), np.float32)
    x = 6
    drift = rng.uniform(-2, 2)
    for position, i in enumerate(chosen):
        top, bottom, left, right = _ink_box(images[i], level=0)
        digit = _slanted(images[i][top:bottom, left:right] / 255.0, shear)
        columns = np.nonzero(digit.max(axis=0) > 0.1)[0]
        digit = digit[:, columns.min() : columns.max() + 1]
        y = int(
            np.clip(
                round(6 + drift * position + rng.uniform(-1, 1) + (20 - digit.shape[0]) / 2), 0, height - digit.shape[0]
            )
        )
        if position and rng.random() < touching:
            x -= int(rng.integers(1, 4))  # into the previous digit's strokes
        elif position:
            x += int(rng.integers(*gap))
        canvas[y : y + digit.shape[0], x : x + digit.shape[1]] = np.maximum(
            canvas[y : y + digit.shape[0], x : x + digit.shape[1]], digit
        )
        x += digit.shape[1]
    canvas = canvas[:, : x + 6]
    return _enlarged(canvas, rng.uniform(1.5, 4)), "".join(str(labels[i]) for i in chosen)


def numbers(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng([seed, 6])
    samples = []
    for number in range(count):
        ink, text = write_number(images, labels, rng, 2 + number % 5)
        samples.append((_paper(ink, rng), text))
    return samples


def touching(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng([seed, 7])
    return [
        (_paper(ink, rng), text)
        for ink, text in (write_number(images, labels, rng, 2, touching=1.0) for _ in range(count))
    ]


def held_out_numbers(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Sample]:
    """Numbers written differently (wider gaps, more slant) on photographed paper: a lamp's gradient,
    sensor noise, a little blur, a bigger page."""
    rng = np.random.default_rng([seed, 8])
    samples = []
    for number in range(count):
        ink, text = write_number(images, labels, rng, 2 + number % 5, touching=0.1, gap=(4, 16))
        ink = np.pad(ink, round(ink.shape[0] * rng.uniform(0.3, 1.5)))
        height, width = ink.shape
        light = 1 - rng.uniform(0.2, 0.45) * np.linspace(0, 1, width)[None, :] * np.ones((height, 1))
        gray = (rng.uniform(200, 245) * light - rng.uniform(130, 190) * ink).clip(5, 255)
        gray = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), rng.uniform(0.5, 1.5))
        samples.append(((gray + rng.normal(0, 4, gray.shape)).clip(0, 255).astype(np.float32), text))
    return samples


def _fonts() -> list[str]:
    return sorted(glob.glob("/usr/share/fonts/**/*.ttf", recursive=True))


def _text_ink(text: str, font: str, size: int, rng: np.random.Generator) -> np.ndarray:
    face = ImageFont.truetype(font, size)
    left, top, right, bottom = face.getbbox(text)
    picture = Image.new("L", (right - left + size, bottom - top + size), 0)
    ImageDraw.Draw(picture).text((size // 2 - left, size // 2 - top), text, fill=255, font=face)
    ink = np.asarray(picture, np.float32) / 255
    return _slanted(ink, rng.uniform(-0.2, 0.2))


def _scribble(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    canvas = np.zeros((size, size), np.float32)
    points = rng.uniform(size * 0.15, size * 0.85, (int(rng.integers(5, 14)), 2)).astype(np.int32)
    cv2.polylines(canvas, [points], False, 1.0, int(rng.integers(2, 6)), cv2.LINE_AA)
    return canvas


def _shape(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    canvas = np.zeros((size, size), np.float32)
    width = int(rng.integers(2, 6))
    kind = int(rng.integers(4))
    low, high = int(size * 0.2), int(size * 0.8)
    if kind == 0:  # a square or rectangle
        cv2.rectangle(canvas, (low, low + int(rng.integers(0, 15))), (high, high), 1.0, width, cv2.LINE_AA)
    elif kind == 1:  # a triangle
        triangle = np.array([[size // 2, low], [low, high], [high, high]], np.int32)
        cv2.polylines(canvas, [triangle], True, 1.0, width, cv2.LINE_AA)
    elif kind == 2:  # a star
        angles = np.linspace(0, 4 * np.pi, 6)[:-1] - np.pi / 2
        star = np.stack([size / 2 + size * 0.35 * np.cos(angles), size / 2 + size * 0.35 * np.sin(angles)], 1)
        cv2.polylines(canvas, [star.astype(np.int32)], True, 1.0, width, cv2.LINE_AA)
    else:  # a filled blob
        axes = (int(rng.integers(15, 40)), int(rng.integers(15, 40)))
        cv2.ellipse(canvas, (size // 2, size // 2), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    return canvas


def negatives(count: int, seed: int = 0) -> list[Sample]:
    """Blank paper, letters, words, scribbles and shapes, in turn: nothing here is a digit."""
    rng = np.random.default_rng([seed, 9])
    fonts = _fonts()
    makers: list[Callable[[], np.ndarray]] = [
        lambda: np.zeros((int(rng.integers(28, 200)),) * 2, np.float32),
        lambda: _text_ink(str(rng.choice(list(LETTERS))), str(rng.choice(fonts)), int(rng.integers(24, 80)), rng),
        lambda: _text_ink("".join(rng.choice(list(LETTERS), int(rng.integers(3, 7)))), str(rng.choice(fonts)), 40, rng),
        lambda: _scribble(rng),
        lambda: _shape(rng),
    ]
    return [(_paper(makers[number % len(makers)](), rng), "") for number in range(count)]


def held_out_negatives(count: int, seed: int = 0) -> list[Sample]:
    """Letters in OpenCV's Hershey script faces, spirals and hatching: made unlike ``negatives``."""
    rng = np.random.default_rng([seed, 10])
    samples = []
    for number in range(count):
        canvas = np.zeros((100, 160), np.uint8)
        kind = number % 3
        if kind == 0:
            face = int(rng.choice([cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX]))
            text = "".join(rng.choice(list(LETTERS), int(rng.integers(1, 4))))
            cv2.putText(canvas, text, (15, 70), face, 1.8, 255, int(rng.integers(2, 5)), cv2.LINE_AA)
        elif kind == 1:
            turns = np.linspace(0, rng.uniform(4, 12), 200)
            spiral = np.stack([80 + 4 * turns * np.cos(turns), 50 + 4 * turns * np.sin(turns)], 1)
            cv2.polylines(canvas, [spiral.astype(np.int32)], False, 255, 2, cv2.LINE_AA)
        else:
            for offset in range(20, 140, int(rng.integers(8, 16))):
                cv2.line(canvas, (offset, 20), (offset + 20, 80), 255, 2, cv2.LINE_AA)
        samples.append((_paper(canvas / 255.0, rng), ""))
    return samples
