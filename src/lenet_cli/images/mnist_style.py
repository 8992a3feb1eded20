"""The user's own digit images: finding the files, decoding them, and making them look like MNIST.

MNIST itself was made this way (LeCun et al.): each digit, light on dark, was scaled to fit a 20×20
box keeping its aspect ratio, then placed in a 28×28 field so that its centre of mass sits at the
centre (pixel (14, 14), as measured on the bundled test set). A model trained on MNIST expects
exactly that, so a photo or drawing of a digit goes through the same steps before prediction.

Photos need more first (docs/photos.md). In order:

1. decoding: the EXIF orientation applied (phones store pixels as the sensor saw them and a tag saying
   how to turn them), and a large photo reduced while it is decoded (JPEG's DCT scaling: a 12-megapixel
   JPEG decodes at 1/8 of its size in half the full decode's time), then to a working image of
   at most ``WORK_SIZE`` pixels on its longer side;
2. light strokes on a dark ground (MNIST itself) told from dark ink on paper, by the picture's border,
   and turned into the latter;
3. the lighting flattened (``images.ink``): the paper's brightness estimated at every pixel by a
   morphological closing (the brightest value in a window wider than any stroke, then the darkest of
   those: strokes vanish, a gradient, a vignette or a shadow's edge stays), and divided out, leaving
   each pixel's darkness relative to the paper around it. The window is sized from the strokes' measured
   width (distance transform) where they are wide: a small digit enlarged, a tight crop of a thick pen;
4. ink: an Otsu threshold on that darkness, computed from the pixels darker than the paper's noise
   (measured on the lightest quarter of the picture, which is paper however much ink there is), so that
   it separates the ink from faint ruled lines, not the paper from everything else;
5. the digits: the ink's connected components grouped into digits (``images.segment``), then each digit's
   fainter strokes joined to it (hysteresis: a faint digit beside dark ones, a blurred small one);
6. MNIST's own steps on those strokes, kept anti-aliased (grey levels, not a mask).

OpenCV (headless) does the image operations: from the decoded picture to the 28×28 digit takes ~2.3 ms
on the 2-core CPU here, and a 12-megapixel JPEG ~19 ms decode included (benchmarks/inference.py preprocess).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from lenet_cli.images.decode import WORK_SIZE, BadImage
from lenet_cli.images.ink import (
    HYSTERESIS,
    MIN_INK,
    first_window,
    flatten,
    grown,
    ink_threshold,
    quantiles,
    stroke_window,
)
from lenet_cli.images.segment import PHOTO_SIZE, SOLID, STRIP, TIGHT, Group, members, segment

FIELD = 28  # MNIST's image size
BOX = 20  # the digit's longest side inside the field
CENTRE = 14.0  # where MNIST's centres of mass lie, in pixel indices (rows and columns)

POLARITY_SIZE = 128  # pixels on the longer side at which light-on-dark is told from dark-on-light
EVEN_BORDER = 0.15  # a border whose middle half spans less than this fraction of the range is even
DARK_GROUND = 0.25  # ... and it is a dark ground when its median lies in this lowest part of the range
BORDER_INK = 0.01  # more than this share of the border's pixels as dark as ink: the strokes reach the border
INSIDE_MARGIN = 0.04  # (of the shorter side) ... and this far from every side
INSIDE = 0.25  # ink off the border this tall (of the picture's height) is writing: no margin is added
PAPER_QUANTILE = 90  # the paper's level: this percentile of the picture (ink rarely covers a tenth of it)
MARGIN = 0.15  # the margin added, as a fraction of the picture's longer side
EDGE = 2  # pixels around the ink's mask that still belong to its strokes (anti-aliasing, blur)
CROP_LEVEL = 0.2  # grey level (of 1) above which a pixel counts for the digit's bounding box
FILLED = 0.4  # ink as wide as this fraction of its longer side is a filled shape or a blot, not a stroke ...
FILLED_RIM = 0.75  # ... when the flattening left less than this share of it as ink (a digit's strokes: all)
AS_DARK = 0.25  # ... "it" being what is darker than this fraction of the way from the ink to the paper
SOLID_INK = 0.7  # ink left whole, its pinholes closed, as wide as this fraction of its longer side: a filled shape
PINHOLE = 0.005  # a hole in the ink of at most this fraction of its box is a pinhole
SOLID_FILL = 0.3  # ... tested only for ink filling this much of its box (a disk 0.7 across fills 0.38 of it)


@dataclass
class Steps:
    """What the preprocessing of one picture saw, for ``--data.explain_dir`` (lenet_cli.explain), and the
    candidate digit fields it proposes to the classifier.

    ``gray`` to ``chosen`` are at the working size; ``digit`` is what the model gets for a single digit
    (the largest); ``fields`` holds every candidate, ``slots`` says how they read left to right.
    """

    gray: np.ndarray  # float32 (H, W): the decoded picture, paper light
    flattened: np.ndarray  # float32 (H, W): brightness divided by the paper's, 1 = paper
    ink: np.ndarray  # bool (H, W): darker than the threshold
    chosen: np.ndarray  # bool (H, W): the components kept as digits
    digit: np.ndarray  # uint8 (28, 28), light on dark: the largest digit
    threshold: float  # darkness (of 1) above which a pixel is ink
    inverted: bool  # the picture was light on dark, and was inverted first
    fields: np.ndarray = field(default_factory=lambda: np.zeros((0, FIELD, FIELD), np.uint8))  # uint8 (K, 28, 28)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # each field's (left, top, width, height)
    # in the decoded picture's pixels; per digit left to right, its readings: (whole,) or a cut's (left, right)
    slots: list[list[tuple[int, ...]]] = field(default_factory=list)
    seams: list[tuple[int, ...]] = field(default_factory=list)  # readings cut where two components meet


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """Grayscale intensities (H, W) of one digit → uint8 (28, 28), light on dark, MNIST-style."""
    return preprocess(gray, name).digit


def preprocess(gray: np.ndarray, name: str = "image") -> Steps:
    """Every step from grayscale intensities (H, W) of one picture to its MNIST-style digit fields."""
    gray = np.asarray(gray, dtype=np.float32)
    low, high = float(gray.min()), float(gray.max())
    if not high > low:
        raise BadImage(f"{name}: no digit in it (the image is one flat colour)")
    original = gray.shape
    if max(gray.shape) > WORK_SIZE:
        gray = cv2.resize(gray, _fit(gray.shape, WORK_SIZE), interpolation=cv2.INTER_AREA)
    to_picture = max(original) / max(gray.shape)  # working pixels → the decoded picture's
    inverted = light_on_dark(gray)
    if inverted:  # MNIST itself, chalk on a board: made dark on light for the steps below
        gray = (high + low) - gray
    flattened, margin = flatten(gray), 0
    if _ink_at_border(1 - flattened) and not _writing_inside(1 - flattened):  # a tight crop, a digit cut by the frame
        padded, margin, window = _padded(gray, 1 - flattened)
        flattened = flatten(padded, window)
    else:
        window = stroke_window(gray, 1 - flattened)
        if window > first_window(gray.shape):  # strokes wider than a quarter of the picture (a small digit enlarged)
            flattened = flatten(gray, window)
    darkness = 1 - flattened  # 0 paper, 1 black ink
    threshold, floor = ink_threshold(darkness)
    if threshold is None:
        raise BadImage(f"{name}: no digit in it (no strokes stand out from the paper)")
    ink = darkness > threshold
    inside = (margin, margin, margin + gray.shape[0], margin + gray.shape[1])
    labels, groups = segment(ink, inside)
    if not groups:
        raise BadImage(f"{name}: no digit in it (only specks, lines or shapes at the edges)")
    labels = grown(darkness, labels, groups, max(floor, HYSTERESIS * threshold))
    ink = labels > 0  # with the fainter strokes
    fields: list[np.ndarray] = []
    boxes: list[tuple[int, int, int, int]] = []
    slots: list[list[tuple[int, ...]]] = []
    seams: list[tuple[int, ...]] = []  # the readings that cut where two components meet
    kept: list[int] = []

    def add(group: Group, level: float, columns: tuple[int | None, int | None] = (None, None)) -> int:
        digit_field, box = _field(darkness, labels, group, floor, level, columns)
        fields.append(digit_field)
        boxes.append(_in_picture(box, margin, to_picture, original))
        return len(fields) - 1

    strokes = [members(labels[group.box[0] : group.box[2], group.box[1] : group.box[3]], group.ids) for group in groups]
    blots = [
        blot for group, mine in zip(groups, strokes, strict=True) if (blot := _blot(gray, labels, group, mine, margin))
    ]
    filled = 0
    for group, mine in zip(groups, strokes, strict=True):
        level = _level(darkness, group, mine)
        if level < MIN_INK:
            continue  # faint: a line of the paper, its grain
        if any(_inside(group.box, blot) for blot in blots):
            filled += 1
            continue  # a piece of a blot, of a filled shape: no writing
        kept += group.ids
        readings: list[tuple[int, ...]] = [(add(group, level),)]
        for left in group.seams:  # two neighbours joined: apart along their strokes
            right = [i for i in group.ids if i not in left]
            readings.append((add(Group(left, group.box, 0), level), add(Group(right, group.box, 0), level)))
            seams.append(readings[-1])
        for cut in group.cuts:
            readings.append((add(group, level, (None, cut)), add(group, level, (cut, None))))
        slots.append(readings)
    if not slots and filled:
        raise BadImage(f"{name}: no digit in it (a filled shape or a blot, not strokes)")
    if not slots:
        raise BadImage(f"{name}: no digit in it (only faint marks: lines of the paper, its grain)")
    largest = max((readings[0][0] for readings in slots), key=lambda index: boxes[index][2] * boxes[index][3])
    chosen = members(labels, kept)
    crop = (slice(margin, margin + gray.shape[0]), slice(margin, margin + gray.shape[1]))
    return Steps(
        gray,
        flattened[crop],
        ink[crop],
        chosen[crop],
        fields[largest],
        threshold,
        inverted,
        np.stack(fields),
        boxes,
        slots,
        seams,
    )


def _ink_at_border(darkness: np.ndarray) -> bool:
    """Whether strokes reach the picture's border: more than ``BORDER_INK`` of its pixels as dark as ink,
    after the lighting was divided out (a vignette's or a shadow's dark corners are not)."""
    border = np.concatenate([darkness[0], darkness[-1], darkness[:, 0], darkness[:, -1]])
    return float((border > MIN_INK).mean()) > BORDER_INK


def _writing_inside(darkness: np.ndarray) -> bool:
    """Whether some ink well inside the picture is tall enough to be writing (≥ INSIDE of the picture's
    height): then what reaches the border is a shadow, the table or a vignette, and the picture
    is read as it is. A tight crop has at most a short stroke inside (a 5's bar).

    Only asked of pictures of at least PHOTO_SIZE pixels (photos): on a small tight crop of a thick pen
    the first flattening hollows the strokes and leaves pieces of them inside (tests/writing.py's tight
    crops, 28–140 px: 96.7 % read with the question asked of every picture, 98.7 % without). A
    tightly cropped digit photographed at ≥ 256 px may therefore be read as it is, without a margin.
    """
    threshold, _ = ink_threshold(darkness)
    if threshold is None or max(darkness.shape) < PHOTO_SIZE:
        return False
    _, _, stats, _ = cv2.connectedComponentsWithStats((darkness > threshold).astype(np.uint8), connectivity=8)
    height, width = darkness.shape
    left, top, box_width, box_height, area = (stats[1:, i].astype(np.int64) for i in range(5))
    margin = INSIDE_MARGIN * min(height, width)  # off the border by this much: not a piece of a cropped digit
    inside = (
        (left > margin) & (top > margin) & (left + box_width < width - margin) & (top + box_height < height - margin)
    )
    if not (inside & (box_height >= INSIDE * height)).any():
        return False
    # ... unless one stroke at the border holds half the ink: the digit itself, cropped (its inner loop
    # or a broken stroke is what lies inside), not a shadow (solid) or the table's edge (a strip).
    largest = int(np.argmax(area))
    solid = area[largest] >= SOLID * box_width[largest] * box_height[largest]
    strip = min(box_width[largest] / width, box_height[largest] / height) < STRIP
    return bool(inside[largest] or area[largest] < TIGHT * area.sum() or solid or strip)


def _padded(gray: np.ndarray, darkness: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``gray`` with a margin of the paper's colour, the margin's width, and the lighting window sized
    from the strokes in ``darkness`` (the first flattening's; at most half the picture's shorter side).

    The paper's colour is a bright quantile, not the mean or the border's: on a tight crop most of the
    border may be ink. Tesseract's guide gives the same advice: a margin of background around the text.
    """
    (paper,) = quantiles(gray, (PAPER_QUANTILE,))
    margin = max(4, round(MARGIN * max(gray.shape)))
    padded = cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=paper)
    return padded, margin, stroke_window(gray, darkness)


def _blot(
    gray: np.ndarray, labels: np.ndarray, group: Group, strokes: np.ndarray, margin: int
) -> tuple[int, int, int, int] | None:
    """The box (top, left, bottom, right, as ``group.box``) of the filled shape (a blot, a filled circle)
    that ``group`` (its pixels: ``strokes``, in its box) is a piece of, or None: the lighting window is
    sized from strokes, so the flattening takes a filled shape's inside for paper and leaves pieces of its
    rim as ink (a filled circle read as "0" or "11"). In ``gray`` the shape is whole and as dark as its
    rim: as wide somewhere as ``FILLED`` of its longer side, where a stroke, even a thick pen's 1, is a
    fraction of that, and the rim covers less than ``FILLED_RIM`` of it, where a digit's strokes cover it all."""
    top, left, bottom, right = (value - margin for value in group.box)  # in gray
    if top < 0 or left < 0 or bottom > gray.shape[0] or right > gray.shape[1]:
        return None  # the box reaches into the added margin: a tight crop, not a blot on a page
    # A window as wide as the shape (a small picture: images.ink.stroke_width) leaves it whole, with pinholes
    inked = int(strokes.sum())
    if inked >= SOLID_FILL * strokes.size and _solid(strokes):
        return group.box
    # First within the pieces' box (most pictures stop here): their strokes are all the dark there is
    box = gray[top:bottom, left:right]
    (ink,) = quantiles(box[strokes], (50,))
    (paper,) = quantiles(box, (PAPER_QUANTILE,))
    if inked >= FILLED_RIM * (box < ink + AS_DARK * (paper - ink)).sum():
        return None
    reach = max(bottom - top, right - left) // 2  # the shape around the pieces the flattening left
    above, before = min(reach, top), min(reach, left)  # the region's rows above the box, columns before it
    region = gray[top - above : bottom + reach, left - before : right + reach]
    pieces = np.zeros(region.shape, bool)
    pieces[above : above + bottom - top, before : before + right - left] = strokes
    (paper,) = quantiles(region, (PAPER_QUANTILE,))
    _, parts = cv2.connectedComponents((region < ink + AS_DARK * (paper - ink)).astype(np.uint8), connectivity=8)
    shape = members(parts, np.unique(parts[pieces & (parts > 0)]))  # the dark regions the pieces lie in
    if not shape.any():
        return None
    rows, columns = np.nonzero(shape)
    if rows.min() == 0 or columns.min() == 0 or rows.max() == shape.shape[0] - 1 or columns.max() == shape.shape[1] - 1:
        return None  # it runs on past the digit's surroundings: a shadow, the table
    radius = float(cv2.distanceTransform(shape.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE).max())
    longer = max(rows.max() - rows.min() + 1, columns.max() - columns.min() + 1)
    if 2 * radius <= FILLED * longer or (pieces & shape).sum() >= FILLED_RIM * shape.sum():
        return None
    top, left = group.box[0] - above, group.box[1] - before  # the region's corner, in labels' coordinates
    return top + int(rows.min()), left + int(columns.min()), top + int(rows.max()) + 1, left + int(columns.max()) + 1


def _solid(strokes: np.ndarray) -> bool:
    """Whether ``strokes`` (bool, a group's box), its pinholes filled (holes under ``PINHOLE`` of the box,
    not a 6's or an 8's small loop), are as wide as ``SOLID_INK`` of the box's longer side."""
    _, holes, stats, _ = cv2.connectedComponentsWithStats((~strokes).view(np.uint8), connectivity=4)
    pinholes = stats[:, cv2.CC_STAT_AREA] <= PINHOLE * strokes.size
    pinholes[0] = False  # the strokes themselves
    closed = cv2.copyMakeBorder((strokes | pinholes[holes]).view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return 2 * float(cv2.distanceTransform(closed, cv2.DIST_L2, 3).max()) >= SOLID_INK * max(strokes.shape)


def _inside(box: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _level(darkness: np.ndarray, group: Group, strokes: np.ndarray) -> float:
    """The darkness of a group's strokes (``strokes``: its pixels in its box): their 90th percentile."""
    top, left, bottom, right = group.box
    return quantiles(darkness[top:bottom, left:right][strokes], (90,))[0]


def _field(
    darkness: np.ndarray,
    labels: np.ndarray,
    group: Group,
    floor: float,
    level: float,
    columns: tuple[int | None, int | None],
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One group's field (or the part of it between ``columns``), and its box (top, left, bottom, right)."""
    top, left, bottom, right = group.box
    left, right = max(left, columns[0] or left), min(right, columns[1] or right)
    inside = members(labels[top:bottom, left:right], group.ids)
    rows, cols = np.nonzero(inside)
    box = (top + int(rows.min()), left + int(cols.min()), top + int(rows.max()) + 1, left + int(cols.max()) + 1)
    # render looks EDGE pixels around the strokes: hand it that region only (a full-size mask per
    # candidate field cost more than the rest of the reading on a 512-pixel picture).
    region_top, region_left = max(top - EDGE, 0), max(left - EDGE, 0)
    region = darkness[region_top : bottom + EDGE, region_left : right + EDGE]
    chosen = np.zeros(region.shape, bool)
    chosen[top - region_top : bottom - region_top, left - region_left : right - region_left] = inside
    relative = (box[0] - region_top, box[1] - region_left, box[2] - region_top, box[3] - region_left)
    return render(region, chosen, relative, floor, level), box


def _in_picture(
    box: tuple[int, int, int, int], margin: int, scale: float, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """A working-size box (top, left, bottom, right) → (left, top, width, height) in the decoded picture."""
    top, left = max(box[0] - margin, 0) * scale, max(box[1] - margin, 0) * scale
    bottom, right = min((box[2] - margin) * scale, shape[0]), min((box[3] - margin) * scale, shape[1])
    return int(left), int(top), max(1, round(right - left)), max(1, round(bottom - top))


def light_on_dark(gray: np.ndarray) -> bool:
    """Whether the strokes are lighter than the ground they are on (MNIST itself, chalk on a board).

    Told from the picture's border, where there is mostly ground: light strokes lie on a ground that is
    even and close to the darkest thing in the picture. Dark ink on paper in a shadow fails the second
    test: the ink in the shadow is darker still. (A global median fails as soon as a shadow covers half
    the page, and a strip of lit paper between a shadow and the table looks just like a light stroke.)
    """
    small = (
        cv2.resize(gray, _fit(gray.shape, POLARITY_SIZE), interpolation=cv2.INTER_AREA)
        if max(gray.shape) > POLARITY_SIZE
        else gray
    )
    low, high = float(small.min()), float(small.max())
    border = np.concatenate([small[0], small[-1], small[1:-1, 0], small[1:-1, -1]])
    first, median, third = quantiles(border, (25, 50, 75))
    return third - first <= EVEN_BORDER * (high - low) and median <= low + DARK_GROUND * (high - low)


def _fit(shape: tuple[int, ...], longer: int) -> tuple[int, int]:
    """OpenCV's (width, height) of an image of ``shape`` scaled to ``longer`` pixels on its longer side."""
    scale = longer / max(shape[:2])
    return max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale))


def render(
    darkness: np.ndarray, chosen: np.ndarray, box: tuple[int, int, int, int], floor: float, level: float
) -> np.ndarray:
    """The chosen strokes (in ``box``) with their grey edges → uint8 (28, 28), light on dark, MNIST-style.

    Darkness ``floor`` (the paper) becomes black, ``level`` (the strokes' own darkness) white.
    """
    # The strokes' anti-aliased edges and blur lie just outside the threshold's mask: take the darkness
    # within EDGE pixels of the chosen components, nothing of the specks and lines elsewhere.
    top, left = max(box[0] - EDGE, 0), max(box[1] - EDGE, 0)
    darkness, chosen = (
        darkness[top : box[2] + EDGE, left : box[3] + EDGE],
        chosen[top : box[2] + EDGE, left : box[3] + EDGE],
    )
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE + 1, 2 * EDGE + 1))
    near = cv2.dilate(chosen.astype(np.uint8), disk).astype(bool)
    ink = np.where(near, np.clip((darkness - floor) / max(level - floor, 1e-6), 0, 1), 0).astype(np.float32)

    rows, columns = np.nonzero(ink > CROP_LEVEL)
    if len(rows) == 0:
        rows, columns = np.nonzero(chosen)
    digit = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]

    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # OpenCV's (width, height)
    if size != (width, height):
        # Area averaging when shrinking is the anti-aliasing MNIST's digits have; bilinear when growing.
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        digit = np.asarray(cv2.resize(digit, size, interpolation=interpolation), dtype=np.float32)
        digit = np.clip(digit / max(float(digit.max()), 1e-6), 0, 1)  # thin strokes fade when shrunk

    height, width = digit.shape
    mass = float(digit.sum())
    centre_row = float((digit.sum(axis=1) * np.arange(height)).sum()) / mass
    centre_column = float((digit.sum(axis=0) * np.arange(width)).sum()) / mass
    top = min(max(round(CENTRE - centre_row), 0), FIELD - height)
    left = min(max(round(CENTRE - centre_column), 0), FIELD - width)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + height, left : left + width] = digit
    return np.rint(field * 255).astype(np.uint8)
