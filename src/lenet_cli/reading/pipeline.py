"""One reading pipeline for every front door (``lenet read``, ``lenet_cli.read()``, ``lenet predict``,
``lenet serve``): a picture's grayscale intensities → candidate 28×28 digit fields (``propose``) →
any classifier's probabilities for them, each field read as cut and in two turned views
(``Proposal.inputs``) → the text read (``decide``).

The classifier is a parameter, so the same steps run with ONNX Runtime (the reader, the server) and
with the LightningModule (``lenet predict`` on a checkpoint): ``classify`` takes uint8 (N, 28, 28)
fields, light on dark as MNIST, and returns logits (N, classes); callers give it ``proposal.inputs``.
``decide`` turns logits into calibrated confidences with the model's :class:`Calibration` (temperature
scaling) and refuses what is no digit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from lenet_cli.images.decode import BadImage
from lenet_cli.images.mnist_style import Steps, preprocess
from lenet_cli.reading import rows
from lenet_cli.reading.result import Digit, Reading

Classify = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Calibration:
    """How a model's logits become confidences: ``softmax(logits / temperature)``, fitted on the validation
    split; a digit whose confidence is below ``reject_below`` is not read."""

    temperature: float = 1.0
    reject_below: float = 0.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class Proposal:
    """What the classifier is asked about one picture: ``fields`` uint8 (K, 28, 28), their boxes, and how
    ``decide`` combines its answers. Empty ``fields`` with a ``note``: nothing to read (no digit).

    ``slots`` lists the digits left to right, each with its possible readings: ``(i,)`` field ``i`` as one
    digit, or ``(i, j)`` two touching digits cut apart; ``decide`` keeps the reading the classifier is
    surest of. Default (None): each field is one digit.
    """

    fields: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    note: str = ""
    steps: Steps | None = None  # for --data.explain_dir
    slots: list[list[tuple[int, ...]]] | None = None
    seams: list[tuple[int, ...]] = field(default_factory=list)  # cuts where two components met: likelier
    row: rows.Row | None = None  # the kept ink as one row, for the row reader: made by ``keep_row``
    ink: rows.Ink | None = None  # what the row is made from, kept by ``keep_ink`` when ``steps`` is dropped
    to_picture: float = 1.0  # decoded picture pixels per working pixel (``steps``)

    @cached_property
    def inputs(self) -> np.ndarray:
        """What the classifier is given: ``fields``, then each of :data:`VIEWS` of them (:func:`views`)."""
        return views(self.fields)

    def keep_ink(self) -> None:
        """Keep what the row reader's row is made from (``rows.ink_of``) when the picture may hold a number
        (``rows.worth_a_row``): before ``steps`` is dropped (a worker process sends the proposal on)."""
        if self.ink is None and self.steps is not None and rows.worth_a_row(self.slots, self.boxes):
            self.ink = rows.ink_of(self.steps)

    def keep_row(self) -> rows.Row | None:
        """The kept ink as one row (``rows.row_of``), made when the row reader is first asked about it."""
        if self.row is None:
            self.keep_ink()
            self.row = rows.row_of(self.ink, self.to_picture)
        return self.row


# Each field is also read turned 12° one way at 0.9 its size and 12° the other way at 1.1 (distortions the
# robust model trained on), and a digit's confidence is the mean of the three readings' probabilities:
# a digit reads the same each way, a scribble, a shape or a letter less surely. benchmarks/reading.py, 500 a set,
# reject_below refitted to the same 0.2 % of validation digits: non-digits refused 89.6 → 93.6 %, MNIST
# validation 99.32 → 99.52 %, every digit set within ±0.4 points; on a second draw (1 000 a set, seed 1)
# non-digits refused 92.8 %. Cuts are still chosen on the fields as cut: views lowered the confidence of
# squeezed halves and read 2 points fewer touching pairs. ±12° alone, ±12° and ±6°, 0.9/1.1 alone, a shear
# or a 1-px shift: each refused fewer non-digits or more digits (docs/DEVELOPING.md).
VIEWS = ((12.0, 0.9), (-12.0, 1.1))  # (degrees anticlockwise, scale) about MNIST's centre of mass (14, 14)


# A field whose strokes are thicker than THICK_STROKE pixels (2 × ink area / outline length, ink ≥ 128) is
# read eroded by one pixel each side. 4.4 px is thicker than 99 % of MNIST's training digits (median 2.4), so
# few are touched; a thick pen's 1 is otherwise a bar, near the shapes the model learnt to refuse. On the
# evaluation's three draws (1 000 a set, seeds 0-2) digits wrongly refused 0.33 / 0.57 / 0.27 → 0.27 / 0.45 /
# 0.23 %, thick pen +0.1 to +0.5 points, non-digits refused within 0.1 point, every other set within one
# picture; 3.8 px refused more digits, two erosions or 4.8 px no fewer (docs/DEVELOPING.md).
THICK_STROKE = 4.4


def field_stroke_width(field: np.ndarray) -> float:
    """The mean stroke width of a uint8 (28, 28) field, in pixels: twice its ink's area over its outline.
    Not ``images.ink.stroke_width`` (a picture's strokes, from its distance transform's ridge): THICK_STROKE
    was measured with this one."""
    ink = (field >= 128).astype(np.uint8)
    outlines, _ = cv2.findContours(ink, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return 2 * float(ink.sum()) / max(sum(cv2.arcLength(outline, True) for outline in outlines), 1.0)


def thinned(fields: np.ndarray) -> np.ndarray:
    """uint8 (K, 28, 28) fields, each with strokes thicker than :data:`THICK_STROKE` eroded by a 3×3 square and
    stretched back to full ink; the others as they are."""
    out = fields.copy()
    for index, one in enumerate(fields):
        if field_stroke_width(one) > THICK_STROKE:
            eroded = cv2.erode(one, np.ones((3, 3), np.uint8))
            out[index] = np.rint(eroded * (255.0 / max(int(eroded.max()), 1))).astype(np.uint8)
    return out


def views(fields: np.ndarray) -> np.ndarray:
    """uint8 (K, 28, 28) fields → (K × (1 + len(VIEWS)), 28, 28): the fields as the classifier reads them
    (:func:`thinned`), then each view of all of them."""
    fields = thinned(fields)
    turned = [fields]
    for angle, scale in VIEWS:
        matrix = cv2.getRotationMatrix2D((14.0, 14.0), angle, scale)
        turned.append(np.stack([cv2.warpAffine(one, matrix, (28, 28)) for one in fields]) if len(fields) else fields)
    return np.concatenate(turned)


def propose(gray: np.ndarray, name: str = "image") -> Proposal:
    """The candidate digit fields of a picture (float32 (H, W) intensities, as ``images.decode`` gives), and
    their views (``inputs``), made here: where the digits are found (a reading worker, a request's thread)."""
    try:
        steps = preprocess(gray, name)
    except BadImage as error:
        return Proposal(np.zeros((0, 28, 28), np.uint8), [], note=_reason(str(error)))
    to_picture = max(np.shape(gray)) / max(steps.gray.shape)
    proposal = Proposal(
        steps.fields, steps.boxes, steps=steps, slots=steps.slots, seams=steps.seams, to_picture=to_picture
    )
    proposal.inputs  # noqa: B018 - cached on the proposal, and sent with it from a worker process
    return proposal


def decide(
    proposal: Proposal,
    logits: np.ndarray,
    calibration: Calibration = Calibration(),
    read_rows: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Reading:
    """The text read from the classifier's ``logits`` for ``proposal.inputs`` (K × views, classes; or
    (K, classes) for ``proposal.fields`` alone: one view): segmentation's reading (:func:`segmented`), or
    the row reader's where the picture may hold a number and it is far surer (``reading.rows``).
    ``read_rows``: uint8 rows (N, 32, 192) → CTC log-probabilities; None: the bundled row reader, asked
    only about digits (a classifier of ten classes)."""
    reading = segmented(proposal, logits, calibration)
    if logits.shape[1] != 10 or not rows.asked(reading, proposal.slots, proposal.boxes):
        return reading
    row = proposal.keep_row()
    if row is None:
        return reading
    read_rows = read_rows or rows.bundled()
    groups = len(proposal.slots) if proposal.slots is not None else len(proposal.fields)
    return rows.reread(reading, row, read_rows(row.pixels[None])[0], groups)


def segmented(proposal: Proposal, logits: np.ndarray, calibration: Calibration = Calibration()) -> Reading:
    """Segmentation's reading: each digit field classified on its own (``logits`` as for :func:`decide`).

    Each digit's reading is the one with the highest mean log-confidence per digit on the fields as cut, a
    cut into two needing ``CUT_MARGIN`` more than the whole (a wide 2 or 0 must stay one). Each digit's
    class and confidence are those of its views' mean probabilities. Digits whose calibrated confidence is
    under ``calibration.reject_below`` are no digit; when they are half or more of the picture's, nothing
    is read (letters, words, scribbles, shapes).
    """
    count = len(proposal.fields)
    if count == 0:
        return Reading("", 0.0, (), proposal.note or "no digit")
    probabilities = softmax(logits, calibration.temperature).reshape(-1, count, logits.shape[1])
    as_cut, pooled = probabilities[0], probabilities.mean(axis=0)
    slots = proposal.slots if proposal.slots is not None else [[(i,)] for i in range(count)]
    digits: list[Digit] = []
    for readings in slots:
        best = readings[0] if len(readings) == 1 else max(readings, key=lambda r: _score(as_cut, r, proposal))
        digits += [Digit(str(int(np.argmax(pooled[i]))), float(np.max(pooled[i])), proposal.boxes[i]) for i in best]
    refused = sum(digit.confidence < calibration.reject_below for digit in digits)
    confidence = float(np.prod([digit.confidence for digit in digits]))
    if 2 * refused >= len(digits):
        surest = sorted(digit.confidence for digit in digits)[refused - 1]  # of those refused (under reject_below)
        return Reading("", 0.0, (), f"not a digit: letters, a scribble or a shape? (confidence {surest:.2f})")
    if len(digits) > 1 and confidence < NUMBER_BELOW:
        return Reading("", 0.0, (), f"not a number: letters or a word? (confidence {confidence:.2f})")
    return Reading("".join(digit.text for digit in digits), confidence, tuple(digits))


# In mean log-confidence per digit: how much surer a cut must make the classifier than the whole. The
# classifier reads two squeezed digits as one with confidence (0.98 for a "15" as 5), and the halves of
# one digit as two: a cut through strokes needs a margin, a cut where two components meet a head start.
# A cut counts only when the classifier is sure of both parts: letters and shapes cut in two give one
# confident half (an E as "13": 0.84 and 1.0), touching digits two.
CUT_MARGIN = 0.1
SEAM_MARGIN = -0.1
CUT_SURE = 0.9
# A number read with less confidence than this is not given: letters cut apart read as digits one by one,
# each a little surer than reject_below, rarely all (benchmarks/reading.py, 500 per set: non-digits refused
# +1.6 points, held-out non-digits +1.2, numbers and single digits unchanged; 0.3 and 0.5 began to refuse numbers).
NUMBER_BELOW = 0.2


def _score(probabilities: np.ndarray, reading: tuple[int, ...], proposal: Proposal) -> float:
    confidences = probabilities[list(reading)].max(axis=1)
    surest = np.log(np.maximum(confidences, 1e-12))
    if len(reading) == 1:
        return float(surest.mean())
    if confidences.min() < CUT_SURE:
        return -np.inf
    return float(surest.mean()) - (SEAM_MARGIN if reading in proposal.seams else CUT_MARGIN)


def read_gray(
    gray: np.ndarray, classify: Classify, calibration: Calibration = Calibration(), name: str = "image"
) -> Reading:
    """Read a picture's digits with ``classify`` (uint8 fields (N, 28, 28) → logits (N, classes))."""
    proposal = propose(gray, name)
    return decide(proposal, classify(proposal.inputs) if len(proposal.fields) else np.zeros((0, 10)), calibration)


def _reason(message: str) -> str:
    # "photo.png: no digit in it (only faint marks...)" → "only faint marks..."
    _, _, detail = message.partition("no digit in it")
    return detail.strip(" ()") or message
