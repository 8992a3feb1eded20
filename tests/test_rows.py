"""The row reader (``lenet_cli.reading.rows``): its CTC arithmetic, when it is asked, what it changes, and its
bundled file. Pictures are made here from the MNIST test split (tests/writing.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lenet_cli.checkpoints import pretrained
from lenet_cli.errors import LenetError
from lenet_cli.reading import rows
from lenet_cli.reading.model import OnnxClassifier
from lenet_cli.reading.pipeline import decide, propose, segmented
from lenet_cli.reading.result import Digit, Reading
from tests import writing


@pytest.fixture(scope="module")
def classify() -> OnnxClassifier:
    return OnnxClassifier()


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    return writing.mnist_test()


def columns(*labels: int, count: int = 45) -> np.ndarray:
    """Log-probabilities (count, 11) sure of ``labels`` in the first columns, blank in the rest."""
    sure = np.full((count, 11), np.log(1e-4 / 10))
    for column in range(count):
        sure[column, labels[column] if column < len(labels) else rows.BLANK] = np.log(1 - 1e-4)
    return sure


def test_the_likelihood_is_ctcs() -> None:
    rng = np.random.default_rng(0)
    log_probabilities = torch.randn(45, 11, generator=torch.Generator().manual_seed(0)).log_softmax(1)
    for text in ("", "7", "11", "2026", "".join(str(d) for d in rng.integers(0, 10, 6))):
        targets = torch.tensor([[int(c) for c in text]]) if text else torch.zeros((1, 0), dtype=torch.long)
        expected = -F.ctc_loss(log_probabilities[:, None], targets, torch.tensor([45]), torch.tensor([len(text)]),
                               blank=rows.BLANK, reduction="sum").item()  # fmt: skip
        assert rows.likelihood(log_probabilities.numpy(), text) == pytest.approx(expected, rel=1e-5), text


def test_greedy_decoding_merges_repeats_and_drops_blanks() -> None:
    sure = columns(4, 4, rows.BLANK, 4, 2, 2)
    text, confidences, where = rows.greedy(sure)
    assert text == "442" and where == [0, 3, 4] and min(confidences) > 0.99


def test_touching_pairs_segmentation_misses_are_read_by_the_row_reader(classify, mnist) -> None:  # type: ignore[no-untyped-def]
    # Measured on these 200: segmentation alone 168 (84.0 %), with the row reader 192 (96.0 %).
    samples = writing.touching(*mnist, 200)
    proposals = [propose(gray) for gray, _ in samples]
    logits = [classify(proposal.inputs) for proposal in proposals]
    truths = [text for _, text in samples]
    calibration = classify.calibration
    alone = sum(segmented(*pair, calibration).text == t for *pair, t in zip(proposals, logits, truths, strict=True))
    both = sum(decide(*pair, calibration).text == t for *pair, t in zip(proposals, logits, truths, strict=True))
    assert both >= alone + 12 and both >= 184


def test_one_clear_digit_never_asks_the_row_reader(classify, mnist) -> None:  # type: ignore[no-untyped-def]
    def never(_rows: np.ndarray) -> np.ndarray:
        raise AssertionError("the row reader was asked")

    images, _ = mnist
    proposal = propose(images[0].astype(np.float32))
    assert decide(proposal, classify(proposal.inputs), classify.calibration, read_rows=never).text == "7"
    assert proposal.row is None  # not even made


def test_a_number_the_row_reader_sees_no_digit_in_is_refused_when_cut_from_one_group_or_unsure() -> None:
    row = rows.Row(np.zeros((rows.HEIGHT, rows.WIDTH), np.uint8), 0.0, 20.0, 0, 10, 1.0)
    sure = Reading("11", 0.98, (Digit("1", 0.99, (0, 0, 5, 10)), Digit("1", 0.99, (5, 0, 5, 10))))
    unsure = Reading("11", 0.6, sure.digits)
    nothing = columns()  # every column blank
    cut = rows.reread(sure, row, nothing, groups=1)  # a V cut into "11"
    assert not cut.found and cut.note == "not a number: the row reader sees no digit (confidence 1.00)"
    assert not rows.reread(unsure, row, nothing, groups=2).found  # two groups, read unsurely
    assert rows.reread(sure, row, nothing, groups=2) is sure  # two groups read surely: the page's thick pen


def test_the_row_readers_digits_are_boxed_left_to_right_over_their_ink(classify, mnist) -> None:  # type: ignore[no-untyped-def]
    samples = writing.touching(*mnist, 40)
    taken = 0
    for gray, text in samples:
        proposal = propose(gray)
        logits = classify(proposal.inputs)
        reading = decide(proposal, logits, classify.calibration)
        if reading.text == segmented(proposal, logits, classify.calibration).text or reading.text != text:
            continue  # only where the row reader's reading was taken, and right
        taken += 1
        ink_rows, ink_columns = np.nonzero(gray < gray.max() - 60)
        (left, top, width, height), (right_left, _, right_width, _) = (digit.box for digit in reading.digits)
        assert left < right_left and left + width <= right_left + 1  # side by side, left to right
        assert abs(left - ink_columns.min()) <= 3 and abs(right_left + right_width - ink_columns.max() - 1) <= 3
        assert abs(top - ink_rows.min()) <= 3 and abs(top + height - ink_rows.max() - 1) <= 3
    assert taken >= 3


def test_a_row_crosses_to_the_serving_worker_unchanged(mnist) -> None:  # type: ignore[no-untyped-def]
    gray, _ = writing.touching(*mnist, 1)[0]
    row = propose(gray).keep_row()
    assert row is not None
    again = rows.Row.from_json(row.as_json())
    assert again is not None and np.array_equal(again.pixels, row.pixels) and again.left == row.left
    assert again.right == row.right
    assert (again.top, again.bottom, again.scale) == (row.top, row.bottom, row.scale)


def test_a_damaged_bundled_row_reader_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(LenetError, match=r"row reader .* does not match its checksum; reinstall"):
        rows.RowReader()


def test_the_bundled_row_readers_record_names_its_command_and_file() -> None:
    record = json.loads((pretrained.folder() / "row-reader.json").read_text())
    assert record["command"].startswith("python tools/make_row_reader.py")
    assert record["onnx_sha256"] == rows.BUNDLED_SHA256


def test_a_refused_single_digit_is_not_rescued_as_one_digit() -> None:
    # The row reader rescues only numbers: one digit refused by segmentation stays refused.
    refused = Reading("", 0.0, (), "not a digit")
    row = rows.Row(np.zeros((rows.HEIGHT, rows.WIDTH), np.uint8), 0.0, 20.0, 0, 10, 1.0)
    assert rows.reread(refused, row, columns(7)) is refused
    assert rows.reread(refused, row, columns(7, rows.BLANK, 1)).text == "71"


def test_a_refused_picture_is_rescued_only_as_a_number_likelier_than_not() -> None:
    # Each digit of "4061" at 0.6 (above RESCUE_ABOVE), the rest of each column blank: the whole number's
    # probability is ~0.6⁴ = 0.13, as the row reader reads a word; "71" at 0.9 each is 0.81.
    refused = Reading("", 0.0, (), "not a digit")
    row = rows.Row(np.zeros((rows.HEIGHT, rows.WIDTH), np.uint8), 0.0, 20.0, 0, 10, 1.0)

    def unsure(label: int, sure: float) -> np.ndarray:  # one column: ``label`` at ``sure``, blank the rest
        return np.log(np.where(np.arange(11) == label, sure, np.where(np.arange(11) == rows.BLANK, 1 - sure, 1e-9)))

    weak = columns()
    for column, label in ((0, 4), (2, 0), (4, 6), (6, 1)):
        weak[column] = unsure(label, 0.6)
    assert rows.greedy(weak)[0] == "4061" and min(rows.greedy(weak)[1]) > rows.RESCUE_ABOVE
    assert np.exp(rows.likelihood(weak, "4061")) < 0.5
    assert rows.reread(refused, row, weak) is refused
    sure = columns()
    for column, label in ((0, 7), (2, 1)):
        sure[column] = unsure(label, 0.9)
    assert rows.reread(refused, row, sure).text == "71"


def test_a_number_drawn_as_the_page_draws_keeps_a_digit_per_group(classify) -> None:  # type: ignore[no-untyped-def]
    # "123" in the page's round 22-px strokes on its 480×240 canvas (serving/static/app.js): three groups of
    # ink. The row reader, trained on MNIST's pens, read it "13" and was far surer of that; separate groups
    # are never read as fewer digits.
    canvas = np.full((240, 480), 255, np.uint8)
    strokes = [
        [(0.30, 0.22), (0.33, 0.8)],
        [(0.40, 0.3), (0.46, 0.2), (0.54, 0.3), (0.40, 0.8), (0.56, 0.8)],
        [(0.62, 0.22), (0.72, 0.3), (0.64, 0.5), (0.74, 0.65), (0.62, 0.8)],
    ]
    for stroke in strokes:
        points = np.array([(round(x * 480), round(y * 240)) for x, y in stroke], np.int32)
        cv2.polylines(canvas, [points], False, 0, 22, cv2.LINE_AA)
    proposal = propose(canvas.astype(np.float32))
    assert len(proposal.slots or []) == 3
    assert decide(proposal, classify(proposal.inputs), classify.calibration).text == "123"
    row = proposal.keep_row()
    assert row is not None and rows.greedy(rows.bundled()(row.pixels[None])[0])[0] == "13"  # what it reads alone
