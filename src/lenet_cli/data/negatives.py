"""Pictures that are no digit, made for training (outlier exposure, Hendrycks et al. 2019): letters,
words, strokes, shapes and blobs. The model learns to spread its probability evenly over the classes
for them, so a low confidence means "no digit" (``lenet_cli.reading.pipeline.Calibration``). Not made:
a straight stroke or half a digit (a 1 looks so), nor a letter that someone's digit looks like.

Made deterministically from a seed with OpenCV's Hershey faces and Pillow's bundled font only, never
the machine's own fonts, and put into MNIST's 28×28 field here, not by ``images.mnist_style``: the
bundled model is rebuilt the same everywhere and whatever the reading code becomes. The project's
evaluation uses other makers (tests/writing.py: the machine's TrueType fonts, OpenCV's script faces).
"""

from __future__ import annotations

import string

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Letters that are also digits in someone's hand (O 0, l 1, Z 2, S 5, b 6, q 9, ...) are never negatives.
DIGIT_LIKE = set("OoDQlI1iJjZzSsbBgqGTt")
LETTERS = [c for c in string.ascii_letters if c not in DIGIT_LIKE]
FACES = (  # OpenCV's Hershey faces, not the script ones (tests/writing.py's held-out negatives use those)
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_SIMPLEX | cv2.FONT_ITALIC,
    cv2.FONT_HERSHEY_COMPLEX | cv2.FONT_ITALIC,
)
SIZE = 96  # pixels of the square each negative is drawn on


def negatives(count: int, seed: int = 0) -> np.ndarray:
    """``count`` non-digit fields, uint8 (count, 28, 28) light on dark as MNIST."""
    rng = np.random.default_rng([seed, 23])
    makers = (_letters, _letters, _strokes, _shape)
    fields: list[np.ndarray] = []
    while len(fields) < count:
        field = _mnist_field(makers[len(fields) % len(makers)](rng))
        if field is not None:  # None: drawn off the canvas; draw another
            fields.append(field)
    return np.stack(fields)


def _mnist_field(ink: np.ndarray) -> np.ndarray | None:
    """uint8 ink (H, W) → MNIST's field: its box scaled to 20 px on the longer side, centre of mass at (14, 14)."""
    rows, columns = np.nonzero(ink > 25)
    if len(rows) < 4:
        return None
    box = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1].astype(np.float32)
    scale = 20 / max(box.shape)
    size = (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale)))
    resized = np.asarray(cv2.resize(box, size, interpolation=cv2.INTER_AREA), np.float32)
    digit = resized / max(float(resized.max()), 1e-6)
    mass = float(digit.sum())
    centre_row = float((digit.sum(axis=1) * np.arange(digit.shape[0])).sum()) / mass
    centre_column = float((digit.sum(axis=0) * np.arange(digit.shape[1])).sum()) / mass
    top = min(max(round(14 - centre_row), 0), 28 - digit.shape[0])
    left = min(max(round(14 - centre_column), 0), 28 - digit.shape[1])
    field = np.zeros((28, 28), np.float32)
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.rint(field * 255).astype(np.uint8)


def _letters(rng: np.random.Generator) -> np.ndarray:
    text = "".join(rng.choice(LETTERS, int(rng.choice([1, 1, 2, 3]))))
    canvas = np.zeros((SIZE, SIZE * 2), np.uint8)
    if rng.random() < 0.7:
        face = int(rng.choice(FACES))
        scale = rng.uniform(1.2, 2.5) / (2 if face == cv2.FONT_HERSHEY_PLAIN else 1) * 2
        cv2.putText(canvas, text, (8, 70), face, scale / 2, 255, int(rng.integers(1, 6)), cv2.LINE_AA)
    else:
        picture = Image.fromarray(canvas)
        ImageDraw.Draw(picture).text(
            (8, 8), text, fill=255, font=ImageFont.load_default(size=int(rng.integers(40, 70)))
        )
        canvas = np.asarray(picture)
    shear = rng.uniform(-0.3, 0.3)
    matrix = np.array([[1, shear, -shear * SIZE / 2], [0, 1, 0]], np.float32)
    return np.asarray(cv2.warpAffine(canvas, matrix, (SIZE * 2, SIZE)))


def _strokes(rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        points = rng.uniform(10, SIZE - 10, (int(rng.integers(3, 9)), 2)).astype(np.int32)
        cv2.polylines(canvas, [points], bool(rng.random() < 0.3), 255, int(rng.integers(2, 8)), cv2.LINE_AA)
    return canvas


def _shape(rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    width = int(rng.integers(2, 8))
    fill = -1 if rng.random() < 0.3 else width
    centre = (int(rng.integers(35, 61)), int(rng.integers(35, 61)))
    kind = int(rng.integers(4))
    if kind == 0:
        half = rng.integers(12, 38, 2)
        cv2.rectangle(
            canvas, (centre[0] - half[0], centre[1] - half[1]), (centre[0] + half[0], centre[1] + half[1]), 255, fill
        )
    elif kind == 1:
        corners = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radius = rng.uniform(15, 40, corners)
        polygon = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1).astype(
            np.int32
        )
        if fill < 0:
            cv2.fillPoly(canvas, [polygon], 255, cv2.LINE_AA)
        else:
            cv2.polylines(canvas, [polygon], True, 255, width, cv2.LINE_AA)
    elif kind == 2:  # a cross or an asterisk
        for angle in rng.uniform(0, np.pi, int(rng.integers(2, 5))):
            offset = (30 * np.cos(angle), 30 * np.sin(angle))
            start = (int(centre[0] - offset[0]), int(centre[1] - offset[1]))
            cv2.line(canvas, start, (int(centre[0] + offset[0]), int(centre[1] + offset[1])), 255, width, cv2.LINE_AA)
    else:  # a blob
        axes = (int(rng.integers(10, 38)), int(rng.integers(10, 38)))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    return canvas
