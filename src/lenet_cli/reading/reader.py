"""``lenet_cli.read(image)`` and ``Reader``: the digits in a picture, from Python, without torch.

    >>> import lenet_cli
    >>> lenet_cli.read("photo.jpg").text          # a path, bytes, a PIL image or a NumPy array
    '2026'
    >>> reader = lenet_cli.Reader()                # reuse: the model is opened once (~0.1 s)
    >>> [reading.text for reading in reader.read_many(["a.png", "b.png"])]

A picture that cannot be decoded raises :class:`~lenet_cli.images.decode.BadImage` (a ``LenetError``);
a picture with no digit gives a :class:`~lenet_cli.reading.result.Reading` with ``text == ""`` and a ``note``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from lenet_cli.errors import LenetError
from lenet_cli.images.decode import WORK_SIZE, BadImage, read_grayscale, to_gray
from lenet_cli.reading.model import OnnxClassifier
from lenet_cli.reading.pipeline import Proposal, decide, propose
from lenet_cli.reading.result import Reading

# What read() takes: a file path, the bytes of an image file, a PIL image, or pixels (H, W), (H, W, 3|4).
ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]  # noqa: UP007 - a runtime alias on 3.10


class Reader:
    """Reads digits with one model, opened once.

    Args:
        model: An ONNX file written by ``lenet export`` (``--with_preprocessing`` or not); ``None``: the
            model bundled with lenet-cli.
        threads: ONNX Runtime's threads (1: fastest for single pictures and the quickest start).
    """

    def __init__(self, model: str | os.PathLike | None = None, threads: int = 1) -> None:
        self.classifier = OnnxClassifier(None if model is None else Path(model), threads=threads)

    def read(self, image: ImageLike, name: str | None = None) -> Reading:
        """The digits in ``image``, left to right (``name``: how messages call it)."""
        return self.read_many([image], [name] if name is not None else None)[0]

    def read_many(self, images: Iterable[ImageLike], names: Iterable[str] | None = None) -> list[Reading]:
        """The digits in each of ``images``, their fields classified in one batch."""
        images = list(images)
        labels = list(names) if names is not None else [describe(image) for image in images]
        return self.read_grays([gray(image, label) for image, label in zip(images, labels, strict=True)], labels)

    def read_grays(self, grays: Iterable[np.ndarray], names: Iterable[str]) -> list[Reading]:
        """The digits in decoded pictures (float32 (H, W) intensities, as ``images.decode`` gives)."""
        return self.decide([propose(pixels, name) for pixels, name in zip(grays, names, strict=True)])

    def decide(self, proposals: Sequence[Proposal]) -> list[Reading]:
        """What each picture's proposed fields read as: all fields classified in one call."""
        inputs = [proposal.inputs for proposal in proposals]
        logits = self.classifier(np.concatenate(inputs)) if inputs else np.zeros((0, 10), np.float32)
        readings, start = [], 0
        for proposal in proposals:
            count = len(proposal.inputs)
            readings.append(decide(proposal, logits[start : start + count], self.classifier.calibration))
            start += count
        return readings

    def classify(self, fields: np.ndarray) -> np.ndarray:
        """Logits (N, C) for uint8 (N, 28, 28) fields, light on dark (the pipeline's ``classify``)."""
        return self.classifier(fields)


def as_json(reading: Reading) -> dict[str, Any]:
    """A reading as JSON (``lenet read --json``, ``lenet serve``): text, confidence, digits, and note if any."""
    answer: dict[str, Any] = {
        "text": reading.text,
        "confidence": round(reading.confidence, 6),
        "digits": [
            {"text": digit.text, "confidence": round(digit.confidence, 6), "box": list(digit.box)}
            for digit in reading.digits
        ],
    }
    if reading.note:
        answer["note"] = reading.note
    return answer


_default: Reader | None = None


def read(image: ImageLike) -> Reading:
    """The digits in ``image`` (a path, bytes, a PIL image or a NumPy array) with the bundled model."""
    global _default  # noqa: PLW0603 - one session per process, opened on the first call
    if _default is None:
        _default = Reader()
    return _default.read(image)


def gray(image: ImageLike, name: str) -> np.ndarray:
    """Any :data:`ImageLike` → float32 (H, W) intensities, as ``images.decode.read_grayscale`` gives."""
    if isinstance(image, (str, os.PathLike)):
        return read_grayscale(Path(image), name)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return read_grayscale(io.BytesIO(bytes(image)), name)
    if isinstance(image, Image.Image):
        if max(image.size) > 2 * WORK_SIZE:
            image = image.copy()
            image.thumbnail((2 * WORK_SIZE, 2 * WORK_SIZE), Image.Resampling.BOX, reducing_gap=None)
        return to_gray(image)
    if isinstance(image, np.ndarray):
        return _pixels(image, name)
    raise BadImage(f"{name}: cannot read a {type(image).__name__}; give a path, bytes, a PIL image or a NumPy array")


def _pixels(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2 and array.size:
        if not np.isfinite(array).all():
            raise BadImage(f"{name}: holds NaN or infinite values")
        return array.astype(np.float32)
    if array.ndim == 3 and array.shape[2] in (3, 4) and array.size:
        mode = "RGB" if array.shape[2] == 3 else "RGBA"
        return to_gray(Image.fromarray(np.ascontiguousarray(np.clip(array, 0, 255).astype(np.uint8)), mode))
    raise BadImage(f"{name}: pixels of shape {array.shape}; give (H, W) grayscale or (H, W, 3 or 4) RGB(A)")


def describe(image: Any) -> str:
    """How messages and results name ``image``: its path, or its kind."""
    if isinstance(image, (str, os.PathLike)):
        return os.fsdecode(image)
    if isinstance(image, np.ndarray):
        return f"array {image.shape}"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "bytes"
    return type(image).__name__


__all__ = ["BadImage", "ImageLike", "LenetError", "Reader", "as_json", "read"]
