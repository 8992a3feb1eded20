"""Ink on paper: the lighting divided out, the paper's noise measured, the ink thresholded, and each
digit's fainter strokes joined to it (``images.mnist_style`` runs these steps in order).
"""

from __future__ import annotations

import cv2
import numpy as np

from lenet_cli.images.segment import PHOTO_SIZE, SPECK_FRACTION, Group

# The closing's window, as a fraction of the working image's shorter side: wider than the strokes of a
# digit that fills the picture, narrower than the lighting changes. At least BACKGROUND_MIN_WINDOW px:
# on an MNIST-sized image it spans the whole digit and the paper comes out flat, unchanged.
BACKGROUND_WINDOW = 0.25
BACKGROUND_MIN_WINDOW = 15
NOISE_SIGMAS = 5.0  # darkness more than this many standard deviations of the paper's noise may be ink
MIN_FLOOR = 0.04  # ... and at least this much darker than the paper around it (4 %: JPEG noise, grain)
MIN_CONTRAST = 0.15  # ink is at least 15 % darker than its paper: below that the picture is blank
MIN_INK = 0.3  # a digit's strokes are mostly 30 % darker than the paper: faint lines and grain are not
MAX_WINDOW = 0.5  # the stroke-sized lighting window at most this fraction of the picture's shorter side
SMALL_RIDGE = 90  # in a picture under PHOTO_SIZE, the strokes' width is this percentile of the ridge (specks aside)
STROKE_WINDOW = 3  # the lighting window at least this many stroke widths
HYSTERESIS = 0.5  # a digit's fainter strokes: darker than this fraction of the ink threshold, joined to its ink
WEAK_REACH = 0.3  # ... from a faint component lying within this fraction of the digit's height around its box
GROW_REACH = 0.15  # ... and within this fraction of its height around its box (not along a ruled line)
# In a picture under PHOTO_SIZE (no page, no ruled paper around the digit) a small digit enlarged has
# whole strokes fainter than its darkest one (a 4's arm and bar beside its stem): farther, both.
SMALL_WEAK_REACH = 1.0
SMALL_GROW_REACH = 0.6


def flatten(gray: np.ndarray, strokes: int | None = None) -> np.ndarray:
    """Brightness relative to the paper around each pixel (1 = paper), float32 (H, W), paper light.

    ``strokes``: a window wider than the strokes (``STROKE_WINDOW`` × their width), when measured: on a
    tight crop of a thick pen a quarter of the picture is narrower than a stroke, which the closing
    would take for paper.
    """
    window = max(first_window(gray.shape), strokes or 0) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (window, window))
    # Closing keeps the edges of what is wider than the window (a shadow's edge stays sharp), unlike a
    # blur, and ignores the strokes, unlike a median of a window the digit fills.
    # On 8-bit levels of the brightest pixel (0 stays 0: the division below needs a true zero), where
    # OpenCV's closing is 4× faster than on floats; half a level is below any ink's contrast.
    scale = 255 / max(float(gray.max()), 1e-6)
    paper = cv2.morphologyEx(np.rint(gray * scale).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    return np.clip(gray * scale / np.maximum(paper.astype(np.float32), 0.5), 0, 1)


def first_window(shape: tuple[int, ...]) -> int:
    """The lighting window before the strokes are measured: a quarter of the shorter side, at least 15 px."""
    return max(BACKGROUND_MIN_WINDOW, round(min(shape[:2]) * BACKGROUND_WINDOW))


def stroke_window(gray: np.ndarray, darkness: np.ndarray) -> int:
    """The lighting window sized from the strokes (``STROKE_WINDOW`` of their widths), at most ``MAX_WINDOW``
    of the picture's shorter side."""
    return min(round(STROKE_WINDOW * stroke_width(darkness > MIN_INK)), round(MAX_WINDOW * min(gray.shape)))


def stroke_width(ink: np.ndarray) -> float:
    """The strokes' width in pixels: twice the median distance to the paper along their middles (the
    distance transform's ridge). The median of the ridge, not the mean of all ink: a shadow or the table
    in the picture is a wide blob with a short ridge, a digit's strokes a long thin one. A thick stroke
    that the first, narrower window hollowed out still measures wider than that window.

    In a picture under ``PHOTO_SIZE`` (no shadow, no table: only the digit) the ridge's ``SMALL_RIDGE``
    quantile of the components that are not specks: the first window hollows a loop filled with ink or
    an enlarged digit's thickest block into specks whose ridge is one pixel high, and the median of the
    ridge was the specks' (a tight crop's filled 6 or 9 read 1; with it, the second draw's 8×8 digits
    read 95.1 → 96.9 %, its tight crops 98.7 → 98.9 %).
    """
    if not ink.any():
        return 0.0
    small = max(ink.shape) < PHOTO_SIZE
    if small:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(ink.view(np.uint8), connectivity=8)
        area = stats[:, cv2.CC_STAT_AREA]
        area[0] = 0  # the paper
        ink = (area >= SPECK_FRACTION * area.max())[labels]
    padded = cv2.copyMakeBorder(ink.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # np.pad's, 8× faster
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    ridge = ink & (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8)))
    if not ridge.any():
        return 0.0
    values = distance[ridge]
    if small:  # np.percentile's nearest rank, by np.partition: 2 µs instead of 30
        rank = round((len(values) - 1) * SMALL_RIDGE / 100)
        return 2 * float(np.partition(values, rank)[rank])
    return 2 * median(values)


def median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array, the same number in a tenth of the time on a few hundred values."""
    middle = [(len(values) - 1) // 2, len(values) // 2]
    return float(np.mean(np.partition(values, middle)[middle]))


def ink_threshold(darkness: np.ndarray) -> tuple[float | None, float]:
    """The darkness above which a pixel is ink (None: no ink), and the paper's noise floor.

    Otsu's threshold over the pixels darker than the paper's noise: they are ink, its anti-aliased
    edges, and faint ruled lines or squares, which Otsu then separates from the ink. Over all pixels it
    would separate the paper from the rest instead, lines included.
    """
    sample = darkness[::4, ::4] if darkness.size > 64 * 64 else darkness  # medians sort: 16× fewer pixels
    # The paper's level and noise from the picture's lightest quarter, never its median: on a tight crop
    # or an enlarged, blurred small digit, half the pixels or more may be ink (the median and its spread
    # then are the strokes', and the floor rises above the ink).
    low, quarter = quantiles(sample, (5, 25))
    noise = (quarter - low) / 0.97  # a normal's standard deviation: 0.97 of them from its 5th to 25th percentile
    floor = max(MIN_FLOOR, quarter + (0.674 + NOISE_SIGMAS) * noise)  # 0.674: from the 25th percentile to the mode
    candidates = darkness[darkness > floor]
    if candidates.size < 4 or float(candidates.max()) < MIN_CONTRAST:
        return None, floor
    threshold = max(otsu(candidates), floor, MIN_CONTRAST / 2)
    return threshold, floor


def quantiles(values: np.ndarray, percents: tuple[float, ...]) -> tuple[float, ...]:
    """The values at these percentiles (the order statistics, no interpolation): one partial sort, ~4x
    faster than ``np.percentile`` on the few thousand pixels of a small picture."""
    flat = np.ravel(values)
    ranks = [min(len(flat) - 1, int(len(flat) * percent / 100)) for percent in percents]
    chosen = np.partition(flat, ranks)[ranks]
    return tuple(float(value) for value in chosen)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the split that maximises the between-class variance."""
    counts = np.bincount(np.minimum((values * bins).astype(np.int64), bins - 1), minlength=bins).astype(np.float64)
    levels = (np.arange(bins) + 0.5) / bins
    weight = np.cumsum(counts)
    total = weight[-1]
    mass = np.cumsum(counts * levels)
    below, above = weight[:-1], total - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass[-1] * below - mass[:-1] * total) ** 2 / (below * above)
    between[~np.isfinite(between)] = -1
    return float((np.argmax(between) + 1) / bins)


def grown(darkness: np.ndarray, labels: np.ndarray, groups: list[Group], low: float) -> np.ndarray:
    """``labels`` with each digit's fainter strokes added: the pixels darker than ``low`` connected to
    one digit's ink and to no other's, each given the label of the nearest of that digit's components
    (group boxes widened to hold them). One threshold for the whole picture keeps only the darkest
    pieces of a faint digit beside dark ones, or of a blurred, enlarged small digit's strokes."""
    count, weak, stats, _ = cv2.connectedComponentsWithStats((darkness > low).astype(np.uint8), connectivity=8)
    owner = np.full(int(labels.max()) + 1, -1, np.int64)  # label → its group's index (-1: dropped, paper)
    for index, group in enumerate(groups):
        owner[group.ids] = index
    on = owner[labels] >= 0
    span = int(labels.max()) + 1
    pairs = np.unique(weak[on].astype(np.int64) * span + labels[on])  # (weak component, kept label) met
    weak_ids, met = pairs // span, pairs % span
    groups_met = np.unique(weak_ids * len(groups) + owner[met]) // len(groups)
    ids, touched = np.unique(groups_met, return_counts=True)
    to = np.full(count, -1, np.int64)  # weak component → the one group it joins
    to[ids[touched == 1]] = owner[met[np.searchsorted(weak_ids, ids[touched == 1])]]
    # ... and lies within reach of its box: a ruled line, a grid or a shadow's edge runs past the digit
    boxes = np.array([group.box for group in groups], np.int64).reshape(-1, 4)  # top, left, bottom, right
    joins = np.flatnonzero(to >= 0)
    top, left, bottom, right = (boxes[to[joins], i] for i in range(4))
    small = max(darkness.shape) < PHOTO_SIZE
    reach = (SMALL_WEAK_REACH if small else WEAK_REACH) * (bottom - top)
    x, y, width, height = (stats[joins, i] for i in range(4))
    inside = (x >= left - reach) & (y >= top - reach) & (x + width <= right + reach) & (y + height <= bottom + reach)
    to[joins[~inside]] = -1
    target = to[weak]
    grow = (target >= 0) & ~on
    if not grow.any():
        return labels
    # Each added pixel takes the label of the component it joins; where its weak component meets several
    # of the digit's components, the nearest one's (the distance transform's nearest zero pixel).
    labels_met = np.bincount(weak_ids, minlength=count)
    only = np.zeros(count, labels.dtype)
    single = labels_met == 1
    only[weak_ids[single[weak_ids]]] = met[single[weak_ids]]
    near = only[weak]
    several = grow & ~single[weak]
    if several.any():
        _, nearest = cv2.distanceTransformWithLabels(
            (~on).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
        )
        lookup = np.zeros(int(nearest.max()) + 1, labels.dtype)
        lookup[nearest[on]] = labels[on]
        near = np.where(several, lookup[nearest], near)
        grow &= owner[near] == target
    grown = labels.copy()
    for index, group in enumerate(groups):  # within reach of the digit's box: not along a ruled line
        top, left, bottom, right = group.box
        reach = round((SMALL_GROW_REACH if small else GROW_REACH) * (bottom - top))
        window = (slice(max(top - reach, 0), bottom + reach), slice(max(left - reach, 0), right + reach))
        added = grow[window] & (target[window] == index)
        if added.any():
            grown[window][added] = near[window][added]
            rows, columns = np.nonzero(added)
            group.box = (
                min(top, window[0].start + int(rows.min())),
                min(left, window[1].start + int(columns.min())),
                max(bottom, window[0].start + int(rows.max()) + 1),
                max(right, window[1].start + int(columns.max()) + 1),
            )
    return grown
