"""The digits among a picture's ink: its connected components → digits left to right.

1. What is not writing goes first: specks, thin lines that reach the picture's border (ruled lines,
   a page's or a shadow's edge) and large solid shapes there (the table beside the page). Nothing else
   is dropped for touching the border: a tightly cropped digit touches all four.
2. Strokes that lie above one another are one digit (a 4, 5 or 7 written in two strokes, a broken
   stroke), and small pieces join the nearest digit; side by side, they are separate digits.
3. A digit is as tall as the tallest within a factor (``MIN_HEIGHT``): specks, dashes and grain are not.
4. A digit much wider than tall may be two that touch: candidate cuts at the column profile's minima,
   which the classifier chooses among (``reading.pipeline.decide``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

SPECK_FRACTION = 0.03  # components smaller than this fraction of the largest are specks or grain
LINE_LENGTH = 0.5  # a component reaching the border and this long (of the picture's side) ...
LINE_THICKNESS = 0.04  # ... and on average thinner than this fraction of the shorter side is a line
BLOB_FILL = 0.35  # a component reaching the border that fills this much of its box ...
BLOB_SIZE = 0.25  # ... and whose box covers this fraction of the picture is a shape, not strokes
PHOTO_SIZE = 256  # working pixels on the longer side from which a picture may hold a table, a shadow, a page's edge
SPAN = 0.9  # a component reaching the border and this long (of the picture's side) is an edge ...
STRIP = 0.3  # spanning the picture one way and narrower than this the other: an edge, not a cropped digit
TIGHT = 0.5  # a stroke at the border with this share of the ink: the digit itself, cropped tightly
TALLER = 1.5  # ... or this much taller than the writing inside the picture
SOLID = 0.45  # a component filling this much of its box is a shape (a shadow, the table), not strokes
OVERLAP = 0.5  # strokes whose column ranges overlap by this fraction of the narrower are one digit
SIDE_SLACK = 0.1  # rows where side-by-side strokes may touch or cross (a slanted pair's serifs)
STACKED = 0.2  # strokes whose row ranges overlap by less than this fraction of the shorter one ...
STACKED_GAP = 0.3  # ... and whose columns are apart by less than this fraction of the taller are one digit
PIECE = 0.15  # a short group with less ink than this fraction of the largest joins its nearest neighbour ...
BAR_OVER = 0.3  # a short stroke over this much of a digit's columns (within PIECE_REACH) is part of it
PIECE_REACH = 0.3  # ... when it is this close (× the largest's height); else it is dropped
MIN_HEIGHT = 0.45  # a digit is at least this fraction of the tallest digit's height
WIDE = 0.9  # a digit wider than this × its height may be two touching digits
CUT_ZONE = (0.25, 0.75)  # where a cut may fall, as fractions of the wide digit's width
MAX_CUTS = 3  # candidate cuts per wide digit


@dataclass
class Group:
    """One digit's components: their label ids and box (top, left, bottom, right; bottom, right exclusive)."""

    ids: list[int]
    box: tuple[int, int, int, int]
    area: int
    cuts: list[int] = field(default_factory=list)  # candidate cut columns, in picture coordinates
    # where two neighbours that were joined meet: the ids of the left one (the rest is the right one)
    seams: list[list[int]] = field(default_factory=list)

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """bool (H, W) of the picture: this digit's pixels."""
        return members(labels, self.ids)


def members(labels: np.ndarray, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """``np.isin(labels, ids)`` for component labels (non-negative ints) by a lookup table: 5 µs instead of
    44 on a digit's box, a few times a picture (the reading of a small picture took ~0.14 ms less)."""
    ids = np.asarray(ids, dtype=np.intp)
    table = np.zeros(int(max(labels.max(initial=0), ids.max(initial=0))) + 1, bool)
    table[ids] = True
    return table[labels]


def segment(ink: np.ndarray, inside: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, list[Group]]:
    """The labels of ``ink``'s components and the digit groups left to right (empty: nothing digit-like).

    ``inside`` is the original picture's box in ``ink`` (top, left, bottom, right) when a margin was
    added around it: touching the border means touching that box's sides.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    if count <= 1:
        return labels, []
    top, left, bottom, right = inside or (0, 0, *ink.shape)
    height, width = bottom - top, right - left
    x, y, box_width, box_height, area = (stats[1:, i].astype(np.int64) for i in range(5))  # label 0: paper
    touches = (x <= left) | (y <= top) | (x + box_width >= right) | (y + box_height >= bottom)
    length = np.maximum(box_width / width, box_height / height)
    thin = area / np.maximum(np.maximum(box_width, box_height), 1) < LINE_THICKNESS * min(height, width)
    line = touches & (length >= LINE_LENGTH) & thin
    blob = (
        touches & (area >= BLOB_FILL * box_width * box_height) & (box_width * box_height >= BLOB_SIZE * height * width)
    )
    if max(height, width) < PHOTO_SIZE:  # no table or shadow in a small picture: a thick pen's digit, cropped tightly
        blob[np.argmax(area)] = False
    speck = area < SPECK_FRACTION * area.max()
    keep = ~speck & ~line & ~blob
    if not keep.any():  # nothing else: the picture is the digit (a tight crop of a 1, of a thick 8)
        keep = ~speck & ~line if (~speck & ~line).any() else ~speck
    keep &= area >= SPECK_FRACTION * area[keep].max()
    # Writing inside the picture (as tall as what reaches the border, solid shapes aside): then what
    # reaches the border is the frame's business (a vignette's corners, the table, a shadow's edge).
    # Else the digit itself reaches it (a tight crop, a digit written to the edge), with its strokes inside.
    box_height = np.asarray(box_height)
    solid = area >= SOLID * box_width * box_height
    spans = (box_width >= SPAN * width) | (box_height >= SPAN * height)  # a page's or the table's edge, a vignette
    corner = ((x <= left) | (x + box_width >= right)) & ((y <= top) | (y + box_height >= bottom))  # a vignette's
    # the height writing inside is measured against: what reaches the border but a vignette's dark corners
    reference = keep & touches & ~solid & ~spans & ~corner
    tallest_at_border = int(box_height[reference].max()) if reference.any() else 0
    writing = keep & ~touches & (box_height >= MIN_HEIGHT * tallest_at_border)
    largest = int(np.argmax(np.where(keep, area, -1)))
    strip = spans & (np.minimum(box_width / width, box_height / height) < STRIP)  # the table's edge, a margin
    tight = touches[largest] and not (solid | strip)[largest] and area[largest] >= TIGHT * area[keep].sum()
    if writing.any() and not tight:  # digits at the border stay (a number cut tightly): only what is unlike them goes
        unlike = spans | corner
        if max(height, width) >= PHOTO_SIZE:  # a shadow, the table: in a small picture, a digit's own stroke
            unlike |= solid | (box_height > TALLER * box_height[writing].max())
        keep &= ~touches | ~unlike
    components = [
        Group([int(i) + 1], (int(y[i]), int(x[i]), int(y[i] + box_height[i]), int(x[i] + box_width[i])), int(area[i]))
        for i in np.flatnonzero(keep)
    ]
    groups = _columns(components, labels)
    groups = _join_pieces(groups)
    tallest = max(group.box[2] - group.box[0] for group in groups)
    groups = [group for group in groups if group.box[2] - group.box[0] >= MIN_HEIGHT * tallest]
    groups.sort(key=lambda group: group.box[1])
    groups = _overlapping(groups)
    for group in groups:
        group.cuts = _cuts(group, labels)
    return labels, groups


def _overlapping(groups: list[Group]) -> list[Group]:
    """Neighbours whose boxes overlap a little (``_one_digit`` joined those that overlap much) are one
    digit with a gap in a stroke (an 8 whose loop is not closed) or two that lean into one another: joined,
    remembering which strokes were on the left (a slanted pair is cut apart along its strokes, not along
    a column), for the classifier to choose."""
    joined: list[Group] = []
    for group in groups:
        if joined and group.box[1] < joined[-1].box[3]:
            seams, left = joined[-1].seams, list(joined[-1].ids)
            joined[-1] = _merged(joined[-1], group)
            joined[-1].seams = [*seams, left]
        else:
            joined.append(group)
    return joined


def _merged(first: Group, second: Group) -> Group:
    box = (
        min(first.box[0], second.box[0]),
        min(first.box[1], second.box[1]),
        max(first.box[2], second.box[2]),
        max(first.box[3], second.box[3]),
    )
    return Group(first.ids + second.ids, box, first.area + second.area)


def _one_digit(first: Group, second: Group, labels: np.ndarray, tallest: int) -> bool:
    """Strokes above one another: their column ranges overlap, unless both are digit-tall and side by
    side in every row they share (slanted neighbours' boxes overlap); or they are stacked with a small
    gap (the two halves of a broken slanted stroke)."""
    overlap = min(first.box[3], second.box[3]) - max(first.box[1], second.box[1])
    narrower = min(first.box[3] - first.box[1], second.box[3] - second.box[1])
    if overlap >= OVERLAP * narrower:
        tall = min(first.box[2] - first.box[0], second.box[2] - second.box[0]) >= MIN_HEIGHT * tallest
        return not (tall and _side_by_side(first, second, labels))
    rows = min(first.box[2], second.box[2]) - max(first.box[0], second.box[0])
    shorter = min(first.box[2] - first.box[0], second.box[2] - second.box[0])
    taller = max(first.box[2] - first.box[0], second.box[2] - second.box[0])
    return rows < STACKED * shorter and -overlap < STACKED_GAP * taller


def _side_by_side(first: Group, second: Group, labels: np.ndarray) -> bool:
    """Whether, in every row where both have ink (but ``SIDE_SLACK`` of them), one's ink lies left of the other's."""
    top, bottom = max(first.box[0], second.box[0]), min(first.box[2], second.box[2])
    left, right = min(first.box[1], second.box[1]), max(first.box[3], second.box[3])
    if bottom <= top:
        return False
    region = labels[top:bottom, left:right]
    a, b = members(region, first.ids), members(region, second.ids)
    shared = a.any(axis=1) & b.any(axis=1)
    if not shared.any():
        return False
    columns = np.arange(region.shape[1])
    a_left, a_right = np.where(a, columns, 1 << 30).min(axis=1), np.where(a, columns, -1).max(axis=1)
    b_left, b_right = np.where(b, columns, 1 << 30).min(axis=1), np.where(b, columns, -1).max(axis=1)
    apart = (a_right < b_left) | (b_right < a_left)
    return float(apart[shared].mean()) >= 1 - SIDE_SLACK


def _columns(groups: list[Group], labels: np.ndarray) -> list[Group]:
    """Join the groups that are one digit (:func:`_one_digit`), until none are."""
    tallest = max(group.box[2] - group.box[0] for group in groups)
    groups = sorted(groups, key=lambda group: -group.area)
    changed = True
    while changed:
        changed = False
        for i, first in enumerate(groups):
            for j in range(i + 1, len(groups)):
                second = groups[j]
                if _one_digit(first, second, labels, tallest):
                    groups[i] = _merged(first, second)
                    del groups[j]
                    changed = True
                    break
            if changed:
                break
    return groups


def _join_pieces(groups: list[Group]) -> list[Group]:
    """Small groups (a broken stroke's end, a dot) join their nearest neighbour if close, else go; short
    ones with more ink join a digit they lie over or under (a 5's bar), else are left to the height rule."""
    largest = max(groups, key=lambda group: group.area)
    tallest = max(group.box[2] - group.box[0] for group in groups)
    reach = PIECE_REACH * (largest.box[2] - largest.box[0])

    def is_piece(group: Group) -> bool:  # a 1 has little ink, but is as tall as the others
        return group.area < PIECE * largest.area and group.box[2] - group.box[0] < MIN_HEIGHT * tallest

    def is_bar(group: Group) -> bool:  # short but with more ink: a 5's or 7's bar, a 4's arm
        return not is_piece(group) and group.box[2] - group.box[0] < MIN_HEIGHT * tallest

    big = [group for group in groups if not is_piece(group) and not is_bar(group)]  # the tallest, at least
    for piece in filter(is_piece, groups):
        gaps = [_gap(piece.box, other.box) for other in big]
        nearest = int(np.argmin(gaps))
        if gaps[nearest] <= reach:
            big[nearest] = _merged(big[nearest], piece)
    for bar in filter(is_bar, groups):  # over or under a digit (not beside it, as a minus sign is): part of it
        width = bar.box[3] - bar.box[1]
        over = [min(bar.box[3], other.box[3]) - max(bar.box[1], other.box[1]) for other in big]
        bar_gaps: list[float] = [
            _gap(bar.box, other.box) if shared >= BAR_OVER * width else reach + 1
            for other, shared in zip(big, over, strict=True)
        ]
        nearest = int(np.argmin(bar_gaps))
        if bar_gaps[nearest] <= reach:
            big[nearest] = _merged(big[nearest], bar)
        else:
            big.append(bar)  # left to the height rule
    return big


def _gap(first: tuple[int, int, int, int], second: tuple[int, int, int, int]) -> int:
    """The larger of the row and column gaps between two boxes (0 when they overlap)."""
    return max(second[1] - first[3], first[1] - second[3], second[0] - first[2], first[0] - second[2], 0)


def _cuts(group: Group, labels: np.ndarray) -> list[int]:
    """Candidate columns where a digit wider than ``WIDE`` × its height may be two: profile minima."""
    top, left, bottom, right = group.box
    width, height = right - left, bottom - top
    if width <= WIDE * height:
        return []
    profile = members(labels[top:bottom, left:right], group.ids).sum(axis=0).astype(np.float32)
    profile = np.convolve(profile, np.ones(3, np.float32) / 3, mode="same")
    # at least a column on either side: a speck two pixels wide cut at its first column left nothing there
    low, high = max(int(width * CUT_ZONE[0]), 1), min(int(width * CUT_ZONE[1]), width - 1)
    zone = profile[low:high]
    if zone.size == 0:
        return []
    minima = [
        i
        for i in range(len(zone))
        if (i == 0 or zone[i] <= zone[i - 1]) and (i == len(zone) - 1 or zone[i] <= zone[i + 1])
    ]
    minima.sort(key=lambda i: zone[i])
    chosen: list[int] = []
    for i in minima:
        if all(abs(i - other) > height * 0.1 for other in chosen):
            chosen.append(i)
        if len(chosen) == MAX_CUTS:
            break
    return [left + low + i for i in chosen]
