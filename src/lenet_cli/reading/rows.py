"""A second reader for numbers: the picture's kept ink as one row, read whole by a small sequence model
(a CTC head on LeNet's convolutions, Graves et al. 2006), beside segmentation's digit by digit.

Segmentation cuts a number into digits and reads each; it fails where digits touch (no cut at the right
column, a "61" read as 6) and at times reads letters cut apart as digits. The row reader reads the same
kept ink without cutting it; trained on rows of MNIST's *training* digits, as many touching as not, and on
rows of pictures of no digit read as nothing (``tools/make_row_reader.py``). It is asked only when a
picture may hold more than one digit — several groups of ink, a group with candidate cuts, or a reading
under :data:`ASK_BELOW` — so a single clear digit costs nothing more; :func:`reread` then keeps
segmentation's reading unless the row reader is far surer of its own (docs/reading.md, "Numbers").

No torch: the bundled model is an ONNX file run by ONNX Runtime, as the digit classifier is.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np

from lenet_cli.errors import LenetError
from lenet_cli.images.mnist_style import Steps
from lenet_cli.reading.result import Digit, Reading
from lenet_cli.reading.runtime import bundled_folder, session

HEIGHT, WIDTH, INK_HEIGHT, LEFT = 32, 192, 24, 4  # a row's pixels; the ink's height in it; its left margin
BLANK = 10  # CTC's "no digit in this column", after the ten digits
STRIDE, CENTRE = 4, 7.5  # output column c sees the row around x = 4c + 7.5 (two 5×5 convs, two 2×2 pools)
BUNDLED_FILE = "row-reader.onnx"
# tools/make_row_reader.py --export prints it
BUNDLED_SHA256 = "87e07807eaddcbcd3eacc1151e95f7bd09cb220a902953db7318e6e91e36e530"

# When the row reader is asked, and how far its own reading must beat segmentation's. Chosen on the
# benchmark's sets (500 a set, seed 0) and checked on a second draw (1 000, seed 1): docs/reading.md.
# It is asked about a picture of several groups, a number read, or one group wider than WIDE × its height
# (a "61" has no candidate cuts, its 1 being narrow) read with less confidence than ASK_BELOW. Every group
# with candidate cuts asked about: the same readings, but 29 % of single digits asked about, not ~4 %
# (~0.5 ms each); ASK_BELOW 0.99: touching pairs +0.6 / +1.0 points (both draws), twice as many asked.
ASK_BELOW = 0.95
WIDE = 0.6
# Its "no digit" overrules a number of separate, surely read digits only below VETO_BELOW: it was trained on
# MNIST's pens, and reads a number drawn on the page with a mouse's thick, straight strokes (a heptagon for
# a 0) as one of its negative shapes. Both draws: non-digits refused -0.0 / -0.1 points.
VETO_BELOW = 0.9
MERGE_BELOW = 0.95  # separate groups of ink are read as fewer digits only when segmentation was unsure of one
SURER_BY = 4.0  # nats of the row reader's log-likelihood: its text over segmentation's
RESCUE_ABOVE = 0.5  # a number segmentation refused is read if each of its digits is at least this sure
# ... and if the row reader's text is likelier than not (its CTC probability over every alignment): words
# and letters it reads as long, weak numbers ("10151", "4061") fall under it, touching digits rarely. Three
# draws of 1 000 a set (session 13): 8 of 12 non-digits read so are refused, 2 of 163 numbers read so lost.
RESCUE_LIKELIER = float(np.log(0.5))


@dataclass(frozen=True)
class Row:
    """A picture's kept ink as the row reader takes it: ``pixels`` uint8 (HEIGHT, WIDTH), light on dark;
    and where the row lies in the decoded picture, for the digits' boxes: row x = LEFT + (picture x -
    ``left``) × ``scale``, the ink between ``left`` and ``right``, ``top`` and ``bottom`` (picture pixels)."""

    pixels: np.ndarray
    left: float
    right: float
    top: int
    bottom: int
    scale: float

    def as_json(self) -> dict[str, Any]:
        """For ``lenet serve``'s worker (``serving.gateway.carried``): the pixels as base64."""
        return {
            "pixels": base64.b64encode(self.pixels.tobytes()).decode("ascii"),
            "left": self.left,
            "right": self.right,
            "top": self.top,
            "bottom": self.bottom,
            "scale": self.scale,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Row | None:
        if value is None:
            return None
        pixels = np.frombuffer(base64.b64decode(str(value["pixels"])), np.uint8).reshape(HEIGHT, WIDTH)
        edges = float(value["left"]), float(value["right"])
        return cls(pixels, *edges, int(value["top"]), int(value["bottom"]), float(value["scale"]))


@dataclass(frozen=True)
class Ink:
    """What a row is made from: the kept ink's box and a pixel around it, at the working size — darkness
    (float32, 0 paper … 1 black) and the kept pixels — and the box's corner. Small enough to send from a
    worker process in place of the whole preprocessing (``lenet read``)."""

    darkness: np.ndarray
    chosen: np.ndarray
    top: int
    left: int


def ink_of(steps: Steps) -> Ink | None:
    """The kept ink (``steps.chosen``, its darkness from ``steps.flattened``) in its box and a pixel around
    it (a 3×3 dilation's reach); None when nothing was kept."""
    x, y, width, height = cv2.boundingRect(steps.chosen.view(np.uint8))
    if width == 0:
        return None
    top, left = max(y - 1, 0), max(x - 1, 0)
    window = (slice(top, y + height + 1), slice(left, x + width + 1))
    return Ink(1 - steps.flattened[window], steps.chosen[window], top, left)


def row_of(ink: Ink | None, to_picture: float = 1.0) -> Row | None:
    """The kept ink scaled to INK_HEIGHT px high, light on dark, as the row reader was trained on
    (``tools/make_row_reader.py``); None when there is none. ``to_picture``: picture pixels per working pixel."""
    if ink is None:
        return None
    kept = cv2.dilate(ink.chosen.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    level = float(np.percentile(ink.darkness[ink.chosen], 95))
    strokes = np.where(kept, np.clip(ink.darkness / max(level, 1e-3), 0, 1), 0).astype(np.float32)
    rows, columns = np.nonzero(strokes.max(axis=1) > 0.3)[0], np.nonzero(strokes.max(axis=0) > 0.3)[0]
    if len(rows) == 0:
        return None
    box = strokes[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    scale = INK_HEIGHT / box.shape[0]
    width = min(WIDTH - 2 * LEFT, max(1, round(box.shape[1] * scale)))
    resized = cv2.resize(box, (width, INK_HEIGHT), interpolation=cv2.INTER_AREA)
    pixels = np.zeros((HEIGHT, WIDTH), np.float32)
    top = (HEIGHT - INK_HEIGHT) // 2
    pixels[top : top + INK_HEIGHT, LEFT : LEFT + width] = resized
    return Row(
        np.rint(pixels * 255).astype(np.uint8),
        left=float(ink.left + columns.min()) * to_picture,
        right=float(ink.left + columns.max() + 1) * to_picture,
        top=round(float(ink.top + rows.min()) * to_picture),
        bottom=round(float(ink.top + rows.max() + 1) * to_picture),
        scale=width / box.shape[1] / to_picture,
    )


def greedy(log_probabilities: np.ndarray) -> tuple[str, list[float], list[int]]:
    """CTC's best path (T, 11): each column's likeliest class, repeats merged, blanks dropped. The text, each
    digit's probability (of the column that emitted it) and that column."""
    best = log_probabilities.argmax(axis=1)
    text, confidences, columns = "", [], []
    for column, label in enumerate(best):
        if label != BLANK and (column == 0 or label != best[column - 1]):
            text += str(int(label))
            confidences.append(float(np.exp(log_probabilities[column, label])))
            columns.append(column)
    return text, confidences, columns


def likelihood(log_probabilities: np.ndarray, text: str) -> float:
    """log P(text | row) under CTC (T, 11): the forward algorithm over every alignment of ``text``."""
    labels = [BLANK]
    for character in text:
        labels += [int(character), BLANK]
    count = len(labels)
    alpha = np.full(count, -np.inf)
    alpha[0] = log_probabilities[0, BLANK]
    if count > 1:
        alpha[1] = log_probabilities[0, labels[1]]
    skip = np.array([s >= 2 and labels[s] != BLANK and labels[s] != labels[s - 2] for s in range(count)])
    for column in range(1, len(log_probabilities)):
        previous = alpha.copy()
        alpha[1:] = np.logaddexp(previous[1:], previous[:-1])
        alpha[2:] = np.where(skip[2:], np.logaddexp(alpha[2:], previous[:-2]), alpha[2:])
        alpha += log_probabilities[column, labels]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if count > 1 else alpha[-1])


def worth_a_row(slots: list[list[tuple[int, ...]]] | None, boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether a picture's proposal may hold more than one digit: several groups of ink, a group with
    candidate cuts, or one group wider than WIDE × its height (``boxes``: (left, top, width, height))."""
    if not boxes:
        return False
    if slots is None or len(slots) > 1 or any(len(readings) > 1 for readings in slots):
        return len(boxes) > 1
    _, _, width, height = boxes[slots[0][0][0]]
    return width > WIDE * height


def asked(reading: Reading, slots: list[list[tuple[int, ...]]] | None, boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether the row reader is asked: :func:`worth_a_row`, and several groups, or a number read, or a
    reading (a refusal too) under ASK_BELOW: one group read surely as one digit is not asked about."""
    if not worth_a_row(slots, boxes):
        return False
    several = slots is None or len(slots) > 1
    return several or len(reading.text) > 1 or reading.confidence < ASK_BELOW


def reread(reading: Reading, row: Row, log_probabilities: np.ndarray, groups: int = 1) -> Reading:
    """Segmentation's ``reading`` of a picture, or the row reader's where it is far surer (``log_probabilities``:
    its (T, 11) output for ``row``; ``groups``: the separate groups of ink segmentation found):

    - segmentation reads a number (two digits or more) cut out of one group, or with less confidence than
      VETO_BELOW, and the row reader nothing: no digit (a V cut into "11", letters read one by one);
    - segmentation refused it, the row reader reads a number with every digit above RESCUE_ABOVE and the
      whole number likelier than RESCUE_LIKELIER: that number;
    - the two differ, one of them a number: the row reader's if its log-likelihood beats that of
      segmentation's text by SURER_BY, and it reads a digit for each group or segmentation's weakest
      digit is under MERGE_BELOW (a broken 4 read "61"; a "123" drawn with the page's thick strokes, each
      digit at 0.999, was read "13").
    """
    text, confidences, columns = greedy(log_probabilities)
    if text == reading.text:
        return reading
    if reading.found and not text and len(reading.text) > 1 and (groups == 1 or reading.confidence < VETO_BELOW):
        surest = float(np.exp(likelihood(log_probabilities, "")))
        return Reading("", 0.0, (), f"not a number: the row reader sees no digit (confidence {surest:.2f})")
    if len(text) < 2 and len(reading.text) < 2:
        return reading
    if not reading.found:
        take = (
            len(text) > 1 and min(confidences) > RESCUE_ABOVE and likelihood(log_probabilities, text) > RESCUE_LIKELIER
        )
    else:
        gain = likelihood(log_probabilities, text) - likelihood(log_probabilities, reading.text) if text else 0.0
        weakest = min(digit.confidence for digit in reading.digits)
        take = gain > SURER_BY and (len(text) >= groups or weakest < MERGE_BELOW)
    if not take:
        return reading
    digits = tuple(
        Digit(character, confidence, _box(row, columns, index))
        for index, (character, confidence) in enumerate(zip(text, confidences, strict=True))
    )
    return Reading(text, float(np.prod(confidences)), digits)


def _box(row: Row, columns: list[int], index: int) -> tuple[int, int, int, int]:
    """A digit's box in the picture: from halfway to the previous digit's column to halfway to the next's
    (the first from the ink's left edge, the last to its right edge), the row's ink high."""
    centre = [STRIDE * column + CENTRE for column in columns]  # in row pixels

    def in_picture(x: float) -> float:
        return min(max(row.left + (x - LEFT) / row.scale, row.left), row.right)

    left = row.left if index == 0 else in_picture((centre[index - 1] + centre[index]) / 2)
    right = row.right if index == len(columns) - 1 else in_picture((centre[index] + centre[index + 1]) / 2)
    return round(left), row.top, max(1, round(right) - round(left)), max(1, row.bottom - row.top)


class RowReader:
    """The bundled row reader: uint8 rows (N, HEIGHT, WIDTH) → CTC log-probabilities (N, T, 11)."""

    def __init__(self) -> None:
        path = bundled_folder() / BUNDLED_FILE
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != BUNDLED_SHA256:
            raise LenetError(f"the bundled row reader {path} is missing or does not match its checksum; reinstall")
        self.session = session(path)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        output: np.ndarray = self.session.run(None, {self.input: np.ascontiguousarray(rows, np.uint8)})[0]
        return output


@cache
def bundled() -> RowReader:
    """One row reader per process, opened on the first number (~0.05 s)."""
    return RowReader()
