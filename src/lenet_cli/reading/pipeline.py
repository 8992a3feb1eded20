"""One reading pipeline for every front door (``lenet read``, ``lenet_cli.read()``, ``lenet predict``,
``lenet serve``): a picture's grayscale intensities → candidate 28×28 digit fields (``propose``) →
any classifier's probabilities for them → the text read (``decide``).

The classifier is a parameter, so the same steps run with ONNX Runtime (the reader, the server) and
with the LightningModule (``lenet predict`` on a checkpoint): ``classify`` takes uint8 (N, 28, 28)
fields, light on dark as MNIST, and returns logits (N, classes). ``decide`` turns logits into calibrated
confidences with the model's :class:`Calibration` (temperature scaling) and refuses what is no digit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lenet_cli.images.decode import BadImage
from lenet_cli.images.mnist_style import Steps, preprocess
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
    ``decide`` combines its answers. Empty ``fields`` with a ``note``: nothing to read (no digit)."""

    fields: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    note: str = ""
    steps: Steps | None = None  # for --data.explain_dir


def propose(gray: np.ndarray, name: str = "image") -> Proposal:
    """The candidate digit fields of a picture (float32 (H, W) intensities, as ``images.decode`` gives)."""
    try:
        steps = preprocess(gray, name)
    except BadImage as error:
        return Proposal(np.zeros((0, 28, 28), np.uint8), [], note=_reason(str(error)))
    rows, columns = np.nonzero(steps.chosen)
    scale = max(gray.shape) / max(steps.chosen.shape)
    box = (
        int(columns.min() * scale),
        int(rows.min() * scale),
        int((columns.max() - columns.min() + 1) * scale),
        int((rows.max() - rows.min() + 1) * scale),
    )
    return Proposal(steps.digit[None], [box], steps=steps)


def decide(proposal: Proposal, logits: np.ndarray, calibration: Calibration = Calibration()) -> Reading:
    """The text read from the classifier's ``logits`` (K, classes) for ``proposal.fields``."""
    if len(proposal.fields) == 0:
        return Reading("", 0.0, (), proposal.note or "no digit")
    probabilities = softmax(logits, calibration.temperature)
    digits = tuple(
        Digit(str(int(np.argmax(row))), float(np.max(row)), box)
        for row, box in zip(probabilities, proposal.boxes, strict=True)
    )
    confidence = float(np.prod([digit.confidence for digit in digits]))
    return Reading("".join(digit.text for digit in digits), confidence, digits)


def read_gray(
    gray: np.ndarray, classify: Classify, calibration: Calibration = Calibration(), name: str = "image"
) -> Reading:
    """Read a picture's digits with ``classify`` (uint8 fields (N, 28, 28) → logits (N, classes))."""
    proposal = propose(gray, name)
    return decide(proposal, classify(proposal.fields) if len(proposal.fields) else np.zeros((0, 10)), calibration)


def _reason(message: str) -> str:
    # "photo.png: no digit in it (only faint marks...)" → "only faint marks..."
    _, _, detail = message.partition("no digit in it")
    return detail.strip(" ()") or message
