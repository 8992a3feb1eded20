"""The steps from a picture's darkness to its digits' strokes (``images.ink``) and how the digits are cut
apart (``images.segment``), on pictures drawn here: no model, no MNIST."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lenet_cli.images import ink
from lenet_cli.images.segment import segment


def stroke(canvas: np.ndarray, points: list[tuple[int, int]], darkness: float, width: int = 3) -> None:
    cv2.polylines(canvas, [np.array(points, np.int32)], False, darkness, width)


def test_the_noise_floor_is_the_papers_even_when_most_of_the_picture_is_ink() -> None:
    # An enlarged, blurred small digit: two thirds of the pixels are ink. The median and its spread are
    # the ink's; the lightest quarter is still paper.
    rng = np.random.default_rng(0)
    darkness = np.abs(rng.normal(0, 0.01, (60, 60))).astype(np.float32)
    darkness[:, 20:] = 0.6 + rng.normal(0, 0.05, (60, 40))
    threshold, floor = ink.ink_threshold(darkness)
    assert floor < 0.1
    assert threshold is not None and (darkness[:, 20:] > threshold).mean() > 0.3


def test_a_hollowed_blob_is_measured_by_its_rim_not_its_specks() -> None:
    # A loop filled with ink that the first lighting window hollowed out: a thick rim around specks of one
    # pixel. The specks' ridge outnumbers the rim's; the median of it all was theirs (2 px), so the second
    # window was as narrow as the first and the loop stayed hollow (a tight crop's 6 read as 1).
    ink_mask = np.zeros((80, 80), np.uint8)
    cv2.circle(ink_mask, (40, 40), 22, 1, 9)
    ink_mask[26:55:2, 26:55:2] = 1
    assert ink.stroke_width(ink_mask.astype(bool)) >= 7
    photo_sized = np.zeros((300, 300), bool)  # a photo may hold a shadow: its strokes' median as before
    photo_sized[:80, :80] = ink_mask.astype(bool)
    assert ink.stroke_width(photo_sized) <= 3


def test_a_digits_fainter_strokes_join_it_and_not_its_neighbours_or_a_ruled_line() -> None:
    darkness = np.zeros((70, 160), np.float32)
    stroke(darkness, [(15, 8), (15, 40)], 0.9)  # a dark stroke ...
    stroke(darkness, [(15, 40), (15, 47)], 0.3)  # ... with a faint end (under the threshold, over half of it)
    stroke(darkness, [(50, 8), (50, 50)], 0.9)  # two neighbours ...
    stroke(darkness, [(85, 8), (85, 50)], 0.9)
    stroke(darkness, [(50, 50), (85, 50)], 0.3)  # ... that one faint stroke joins: shared, given to neither
    stroke(darkness, [(130, 5), (130, 62)], 0.9)  # a fourth digit ...
    stroke(darkness, [(0, 60), (159, 60)], 0.3)  # ... crossing a faint ruled line that runs across the picture
    labels, groups = segment(darkness > 0.5)
    assert len(groups) == 4
    grown = ink.grown(darkness, labels, groups, 0.2)
    first, second, third, fourth = groups  # left to right
    assert np.isin(grown[42:45, 14:17], first.ids).all()  # as far as GROW_REACH of its height
    assert not np.isin(grown[49:52, 55:80], second.ids + third.ids).any()
    assert not np.isin(grown[59:62, 100:128], fourth.ids).any()
    assert first.box[2] >= 45  # its box holds what it gained


def test_a_thick_digit_cropped_tightly_keeps_its_body_beside_its_bar() -> None:
    # A 5 written in two strokes with a felt pen and cut to its ink: the body touches three sides and
    # fills its box like a solid shape; in a small picture it is the digit, not the table.
    ink_mask = np.zeros((60, 44), np.float32)
    stroke(ink_mask, [(24, 5), (40, 5)], 1.0, width=5)  # the bar, a stroke of its own
    stroke(ink_mask, [(12, 4), (4, 28), (30, 26), (40, 42), (26, 59), (0, 56)], 1.0, width=12)
    labels, groups = segment(ink_mask > 0.5)
    kept = np.isin(labels, [i for group in groups for i in group.ids])
    assert kept[50, 30] and kept[4, 30]  # body and bar


@pytest.mark.parametrize(
    ("strokes", "at_the_border"),
    [
        (
            [[(19, 14), (38, 12), (34, 24)], [(30, 33), (22, 54)]],
            (22, 54),
        ),  # a 7, its stem broken off, at the bottom
        ([[(30, 2), (46, 2)], [(24, 10), (20, 24), (32, 26), (30, 38), (18, 40)]], (38, 2)),  # a 5's bar at the top
        ([[(26, 30), (26, 54)], [(38, 36), (38, 36)]], (26, 54)),  # a thick 1 at the bottom, a dot of ink beside it
    ],
    ids=["seven's stem", "five's bar", "one and a dot"],
)
def test_a_digits_own_stroke_at_the_border_of_a_small_picture_is_kept(
    strokes: list[list[tuple[int, int]]], at_the_border: tuple[int, int]
) -> None:
    # One edge touched (MNIST test digits read "no digit" until 2026-12-06): a stroke of the digit that
    # reaches the border is not dropped as a shadow or the table because the rest lies inside it: a small
    # picture has neither.
    ink_mask = np.zeros((56, 60), np.float32)
    for points in strokes:
        stroke(ink_mask, points, 1.0, width=5 if len(points) > 1 else 7)
    labels, groups = segment(ink_mask > 0.5)
    kept = np.isin(labels, [i for group in groups for i in group.ids])
    x, y = at_the_border
    assert kept[y, x]


def test_overlapping_neighbours_are_cut_apart_along_their_strokes() -> None:
    # A 1 slanted into its neighbour's box: the cut is along the components, not a column.
    darkness = np.zeros((60, 80), np.float32)
    stroke(darkness, [(34, 8), (18, 52)], 1.0)  # the slanted 1
    stroke(darkness, [(42, 12), (64, 12), (36, 52)], 1.0)  # a 7 whose box it overlaps
    labels, groups = segment(darkness > 0.5)
    assert len(groups) == 1 and len(groups[0].seams) == 1
    group = groups[0]
    left = group.seams[0]
    right = [i for i in group.ids if i not in left]
    one = np.isin(labels, left)
    seven = np.isin(labels, right)
    assert one[30, 26] and seven[12, 54]


def test_a_bar_over_a_digit_joins_it_and_a_minus_beside_one_does_not() -> None:
    darkness = np.zeros((70, 120), np.float32)
    stroke(darkness, [(30, 20), (56, 20)], 1.0, width=5)  # a 5's bar, a stroke of its own, partly over the body
    stroke(darkness, [(12, 20), (10, 36), (30, 36), (34, 52), (10, 60)], 1.0, width=5)  # the body
    stroke(darkness, [(70, 45), (82, 45)], 1.0, width=5)  # a minus sign beside it
    stroke(darkness, [(100, 12), (100, 60)], 1.0, width=5)  # a 1
    labels, groups = segment(darkness > 0.5)
    assert len(groups) == 2  # the 5 with its bar, the 1; the minus is no digit
    five = np.isin(labels, groups[0].ids)
    assert five[20, 50] and five[50, 30] and not five[45, 76]


def test_a_small_digit_inside_a_vignettes_dark_corners_is_the_writing() -> None:
    # A photo's vignette left dark corners (each touching two sides, taller than the digit); the digit in
    # the middle is shorter than half of them, and still the writing: the corners go.
    ink_mask = np.zeros((400, 300), np.uint8)
    for centre in ((0, 0), (299, 0), (0, 399), (299, 399)):  # dark bands along the corners, not solid
        cv2.ellipse(ink_mask, centre, (110, 150), 0, 0, 360, 1, 40)
    cv2.polylines(ink_mask, [np.array([(130, 180), (170, 180), (150, 240)], np.int32)], False, 1, 6)  # a 7
    _, groups = segment(ink_mask > 0)
    assert len(groups) == 1
    top, left, bottom, right = groups[0].box
    assert top >= 170 and bottom <= 250 and left >= 120 and right <= 180


def test_a_cut_leaves_ink_on_both_sides_even_of_a_speck_a_few_pixels_wide() -> None:
    # A 1-pixel-high speck two pixels wide, the tallest ink of a picture of faint scribbles, was cut at its
    # first column: the left part was empty and preprocess failed with numpy's ValueError.
    for width in range(2, 7):
        mask = np.zeros((40, 40), bool)
        mask[20, 10 : 10 + width] = True
        _, groups = segment(mask)
        (group,) = groups
        assert all(group.box[1] < cut < group.box[3] for cut in group.cuts), (width, group.cuts)
