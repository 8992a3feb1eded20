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
    """``count`` non-digit fields, uint8 (count, 28, 28) light on dark as MNIST, the kinds in turn."""
    rng = np.random.default_rng([seed, 23])
    fields: list[np.ndarray] = []
    while len(fields) < count:
        field = _mnist_field(MAKERS[len(fields) % len(MAKERS)](rng))
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
    """One to three letters, in a Hershey face or Pillow's bundled font, spaced or touching, slanted."""
    text = "".join(rng.choice(LETTERS, int(rng.choice([1, 1, 1, 2, 2, 3]))))
    canvas = np.zeros((SIZE, SIZE * 2), np.uint8)
    if rng.random() < 0.6:
        face = int(rng.choice(FACES))
        scale = rng.uniform(1.2, 2.5) / (2 if face == cv2.FONT_HERSHEY_PLAIN else 1)
        weight = int(rng.integers(1, 7))
        if rng.random() < 0.3:  # tight letters whose strokes meet
            x = 8
            for letter in text:
                (width, _), _ = cv2.getTextSize(letter, face, scale, weight)
                cv2.putText(canvas, letter, (x, 70), face, scale, 255, weight, cv2.LINE_AA)
                x += int(width * rng.uniform(0.7, 0.95))
        else:
            cv2.putText(canvas, text, (8, 70), face, scale, 255, weight, cv2.LINE_AA)
    else:
        picture = Image.fromarray(canvas)
        font = ImageFont.load_default(size=int(rng.integers(40, 75)))
        ImageDraw.Draw(picture).text(
            (8, 8), text, fill=255, font=font, stroke_width=int(rng.integers(0, 3)), stroke_fill=255
        )
        canvas = np.asarray(picture)
    shear = rng.uniform(-0.3, 0.3)
    matrix = np.array([[1, shear, -shear * SIZE / 2], [0, 1, 0]], np.float32)
    return np.asarray(cv2.warpAffine(canvas, matrix, (SIZE * 2, SIZE)))


def _scribble(rng: np.random.Generator) -> np.ndarray:
    """One open line through 6–16 random points; from 9 points on sometimes smoothed (corner cutting),
    never with fewer: a smooth line through a few points is often someone's 2, 6 or 9."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    points = rng.uniform(10, SIZE - 10, (int(rng.integers(6, 17)), 2))
    for _ in range(int(rng.integers(0, 3)) if len(points) >= 9 else 0):  # Chaikin's corner cutting
        cut = np.empty((2 * len(points) - 2, 2))
        cut[0::2], cut[1::2] = 0.75 * points[:-1] + 0.25 * points[1:], 0.25 * points[:-1] + 0.75 * points[1:]
        points = cut
    cv2.polylines(canvas, [points.astype(np.int32)], False, 255, int(rng.integers(2, 8)), cv2.LINE_AA)
    return canvas


def _strokes(rng: np.random.Generator) -> np.ndarray:
    """Three to five short lines of 3–6 points each, open or closed (two could make a 4 or a 7)."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(3, 6))):
        points = rng.uniform(10, SIZE - 10, (int(rng.integers(3, 7)), 2)).astype(np.int32)
        cv2.polylines(canvas, [points], bool(rng.random() < 0.3), 255, int(rng.integers(2, 8)), cv2.LINE_AA)
    return canvas


def _polygon(rng: np.random.Generator) -> np.ndarray:
    """A triangle, square, rectangle, rhombus or star, turned and stretched, outlined; or a filled polygon
    of 3–8 corners. Never an outline of five corners or more: that is someone's 0."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    filled = rng.random() < 0.35
    star = not filled and rng.random() < 0.3
    corners = int(rng.integers(3, 9)) if filled else int(rng.integers(5, 8)) if star else int(rng.integers(3, 5))
    angles = np.linspace(0, 2 * np.pi, corners * (2 if star else 1), endpoint=False) + rng.uniform(0, 2 * np.pi)
    radius = np.full(len(angles), 36.0)
    if star:
        radius[1::2] *= rng.uniform(0.3, 0.55)
    radius *= rng.uniform(0.85, 1.15, len(angles))
    stretch = rng.uniform(0.7 if filled else 0.5, 1.0)  # a thin filled one is a 1
    xy = np.stack([radius * np.cos(angles), stretch * radius * np.sin(angles)], 1) + SIZE / 2
    polygon = xy.astype(np.int32)
    if filled:
        cv2.fillPoly(canvas, [polygon], 255, cv2.LINE_AA)
    else:
        cv2.polylines(canvas, [polygon], True, 255, int(rng.integers(2, 8)), cv2.LINE_AA)
    return canvas


def _marks(rng: np.random.Generator) -> np.ndarray:
    """A cross, an x, an asterisk, a plus with a frame, or a check mark."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    width = int(rng.integers(2, 8))
    centre = rng.uniform(40, 56, 2)
    kind = int(rng.integers(4))
    if kind < 2:  # a cross (2 lines) or an asterisk (3–4)
        spokes = 2 if kind == 0 else int(rng.integers(3, 5))
        start = rng.uniform(0, np.pi)
        for angle in start + np.arange(spokes) * np.pi / spokes + rng.uniform(-0.2, 0.2, spokes):
            offset = rng.uniform(22, 36) * np.array([np.cos(angle), np.sin(angle)])
            cv2.line(
                canvas,
                tuple((centre - offset).astype(int)),
                tuple((centre + offset).astype(int)),
                255,
                width,
                cv2.LINE_AA,
            )
    elif kind == 2:  # a framed plus or x
        half = int(rng.integers(22, 36))
        box = (centre - half).astype(int), (centre + half).astype(int)
        cv2.rectangle(canvas, tuple(box[0]), tuple(box[1]), 255, width, cv2.LINE_AA)
        if rng.random() < 0.5:
            cv2.line(canvas, tuple(box[0]), tuple(box[1]), 255, width, cv2.LINE_AA)
            cv2.line(
                canvas, (int(box[0][0]), int(box[1][1])), (int(box[1][0]), int(box[0][1])), 255, width, cv2.LINE_AA
            )
        else:
            cv2.line(
                canvas, (int(centre[0]), int(box[0][1])), (int(centre[0]), int(box[1][1])), 255, width, cv2.LINE_AA
            )
            cv2.line(
                canvas, (int(box[0][0]), int(centre[1])), (int(box[1][0]), int(centre[1])), 255, width, cv2.LINE_AA
            )
    else:  # a check mark
        points = np.array([[-30, 0], [-8, 25], [34, -30]], np.float64) * rng.uniform(0.7, 1.1) + centre
        points[:, 1] += rng.normal(0, 4, 3)
        cv2.polylines(canvas, [points.astype(np.int32)], False, 255, width, cv2.LINE_AA)
    return canvas


def _blob(rng: np.random.Generator) -> np.ndarray:
    """A filled ellipse, a filled random polygon or a smooth random blot, none long and thin (a 1)."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    centre = (int(rng.integers(38, 58)), int(rng.integers(38, 58)))
    kind = int(rng.integers(3))
    if kind == 0:
        major = int(rng.integers(15, 38))
        axes = (major, int(major * rng.uniform(0.55, 1.0)))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    elif kind == 1:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 10))))
        radius = rng.uniform(22, 40, len(angles))
        xy = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [xy.astype(np.int32)], 255, cv2.LINE_AA)
    else:  # thresholded smooth noise: an ink blot
        noise = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), rng.uniform(6, 12))
        yy, xx = np.mgrid[:SIZE, :SIZE]
        falloff = ((yy - centre[1]) ** 2 + (xx - centre[0]) ** 2) / (2 * 28.0**2)
        blot = noise / max(float(noise.std()), 1e-6) - falloff * 2
        canvas[blot > np.quantile(blot, rng.uniform(0.75, 0.9))] = 255
        # Its largest piece alone (specks beside a blot are read apart), and only if it is not a sliver.
        _, pieces, stats, _ = cv2.connectedComponentsWithStats(canvas)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        canvas = np.where(pieces == largest, 255, 0).astype(np.uint8)
        (_, _), (width, height), _ = cv2.minAreaRect(cv2.findNonZero(canvas))
        if max(width, height) > 2.2 * max(min(width, height), 1):
            canvas[:] = 0  # drawn again
    return canvas


# The kinds in turn: letters most, as most of what people write that is no digit is letters.
MAKERS = (_letters, _scribble, _letters, _polygon, _letters, _strokes, _marks, _blob)
