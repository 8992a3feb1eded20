"""What reading a picture gives: the text read, its confidence, and each digit with its box."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Digit:
    """One digit read: its character, the classifier's calibrated confidence, and its box in the picture.

    ``box`` is ``(left, top, width, height)`` in pixels of the decoded picture (EXIF orientation applied).
    """

    text: str
    confidence: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Reading:
    """The digits of one picture read left to right.

    ``text`` is ``""`` when there is no digit, and ``note`` then says why (``"the image is one flat
    colour"``, ``"not a digit: letters or shapes"``, ...). ``confidence`` is the whole text's: the
    product of its digits' confidences.
    """

    text: str
    confidence: float
    digits: tuple[Digit, ...] = field(default=())
    note: str = ""

    @property
    def found(self) -> bool:
        return bool(self.text)
