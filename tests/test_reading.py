"""Reading what people write (issue #23): any framing, whole numbers, "no digit", the predict contract.

The sets come from the MNIST test split and from shapes and fonts (tests/writing.py); the bundled model
reads them with no option. Bars sit ~3 standard errors under what benchmarks/reading.py measured
(500 a set, 2026-12-06, docs/reading.md), so a regression fails and a busy machine does not: the default
suite reads 200 a set, ``-m slow`` 1000.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lenet_cli.checkpoints import pretrained
from lenet_cli.checkpoints.load import load
from lenet_cli.cli.main import main
from lenet_cli.data.mnist import preprocess as model_input
from lenet_cli.data.negatives import negatives
from lenet_cli.images.explain import refused
from lenet_cli.reading.pipeline import (
    THICK_STROKE,
    VIEWS,
    Calibration,
    Proposal,
    decide,
    field_stroke_width,
    propose,
    read_gray,
    thinned,
    views,
)
from lenet_cli.training.metrics import batch_sums
from lenet_cli.training.module import LeNet
from lenet_cli.training.network import LeNet5, network_weights
from tests import writing
from tests.helpers import CPU

# set → (bar, generator): the share read exactly (for non-digits: refused). Measured 2026-12-06 (session 12),
# each field read in its views and numbers by the row reader too (reading.rows), on these 200 (seed 0) and,
# for -m slow, on 1 000 (seed 1): tight 99.0 / 98.9 %, one edge 98.5 / 99.1 %, light on dark 99.5 / 99.7 %,
# thick 98.0 / 98.2 %, numbers 96.0 / 95.4 %, touching 96.0 / 95.7 %, 8×8 enlarged 96.5 / 96.8 % (the
# pipeline before #23's low-resolution fixes: 76 %; numbers 90.5 / 91.9 % and touching 84.0 / 86.9 % before
# the row reader; tight 98.5 / 98.6 %, one edge 98.5 / 98.7 %, 8×8 95.5 / 95.1 % before session 12's
# segmentation fixes). Bars ~3 standard errors under. Session 13's model on the 1 000 (seed 1): tight 98.5 %,
# one edge 99.4 %, light on dark 99.7 %, thick 98.3 %, numbers 95.8 %, touching 96.0 %, 8×8 96.3 %; with
# session 14's thinned thick strokes: thick 98.8 %, light on dark 99.6 %, 8×8 96.4 %, touching 95.9 %.
BARS = {
    "tight": (0.97, writing.tight),
    "one_edge": (0.96, writing.one_edge),
    "light_on_dark": (0.97, writing.light_on_dark),
    "thick": (0.95, writing.thick),
    "numbers": (0.92, writing.numbers),
    "touching": (0.91, writing.touching),
    "low_resolution": (0.93, writing.low_resolution),
}
SINGLE_DIGITS = ("tight", "one_edge", "light_on_dark", "thick")  # the "digits wrongly refused" (≤ 0.5 %)


@pytest.fixture(scope="module")
def classify():  # type: ignore[no-untyped-def]
    network = LeNet5()
    network.load_state_dict(network_weights(load(pretrained.path())["state_dict"]))
    network.eval()

    def logits(fields: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return network(model_input(torch.from_numpy(fields))).numpy()

    return logits


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    return writing.mnist_test()


def shares(samples: list[tuple[np.ndarray, str]], classify) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The shares of ``samples`` read exactly and refused ("no digit")."""
    calibration = pretrained.calibration()
    readings = [read_gray(gray, classify, calibration) for gray, _ in samples]
    exact = np.mean([reading.text == text for reading, (_, text) in zip(readings, samples, strict=True)])
    return float(exact), float(np.mean([not reading.found for reading in readings]))


def share_read(samples: list[tuple[np.ndarray, str]], classify, refused_only: bool = False) -> float:  # type: ignore[no-untyped-def]
    return shares(samples, classify)[1 if refused_only else 0]


@pytest.mark.parametrize("name", list(BARS))
def test_the_bundled_model_reads_each_framing(name: str, classify, mnist) -> None:  # type: ignore[no-untyped-def]
    bar, make = BARS[name]
    exact, refused = shares(make(*mnist, 200), classify)
    assert exact >= bar
    if name in SINGLE_DIGITS:  # measured 1, 1, 1 and 3 of 200 (tight, one edge, light on dark, thick) refused
        assert refused <= 0.025


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BARS))
def test_the_bundled_model_reads_each_framing_on_more(name: str, classify, mnist) -> None:  # type: ignore[no-untyped-def]
    bar, make = BARS[name]
    assert share_read(make(*mnist, 1000, seed=1), classify) >= bar + 0.01


def test_non_digits_are_mostly_refused_and_digits_seldom(classify, mnist) -> None:  # type: ignore[no-untyped-def]
    # Measured on these 200: 97.5 % of non-digits refused (94.0 % with the model before session 13's
    # retrain; 92.5 % before the row reader refused letters cut into numbers, 89.5 % before each field was
    # read in views), 2 tight crops wrongly refused (0 before). ~3 standard errors under.
    assert share_read(writing.negatives(200), classify, refused_only=True) >= 0.94
    assert share_read(writing.tight(*mnist, 200, seed=2), classify, refused_only=True) <= 0.03


def test_views_refuse_more_non_digits_and_no_more_digits(classify, mnist) -> None:  # type: ignore[no-untyped-def]
    # The same proposals and calibration, decided on the fields' logits alone and on their views' (measured:
    # 144 and 146 of the 151 of these 200 non-digits that have fields refused; 130 and 136 with the model
    # before session 13's, whose outlier exposure was weaker; 0 and 0 of the tight crops).
    calibration = pretrained.calibration()

    def refused(samples: list[tuple[np.ndarray, str]]) -> tuple[int, int]:
        proposals = [propose(gray) for gray, _ in samples]
        alone = sum(not decide(p, classify(p.fields), calibration).found for p in proposals if len(p.fields))
        viewed = sum(not decide(p, classify(p.inputs), calibration).found for p in proposals if len(p.fields))
        return alone, viewed

    alone, viewed = refused(writing.negatives(200))
    assert viewed >= alone + 2
    alone, viewed = refused(writing.tight(*mnist, 200, seed=2))
    assert viewed <= alone + 1


def test_views_are_the_field_turned_and_scaled_about_its_centre() -> None:
    field = np.zeros((1, 28, 28), np.uint8)
    field[0, 4:24, 13:15] = 255  # an upright 1 through the centre of mass (14, 14)
    inputs = Proposal(field, [(0, 0, 28, 28)]).inputs
    assert inputs.shape == (1 + len(VIEWS), 28, 28) and np.array_equal(inputs[0], field[0])
    for view, (angle, scale) in zip(inputs[1:], VIEWS, strict=True):
        rows, columns = np.nonzero(view > 127)
        slope = np.polyfit(rows, columns, 1)[0]  # columns per row: the stroke leans by the view's angle
        assert np.degrees(np.arctan(slope)) == pytest.approx(angle, abs=2)
        assert rows.max() - rows.min() + 1 == pytest.approx(20 * scale * np.cos(np.radians(angle)), abs=1.5)
        assert abs(columns.mean() - 14) < 1 and abs(rows.mean() - 14) < 1


def test_a_thick_pen_field_is_read_thinned(classify, mnist, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist[0][:2000], mnist[1][:2000]
    untouched = np.mean([np.array_equal(a, b) for a, b in zip(thinned(images), images, strict=True)])
    assert untouched >= 0.98  # MNIST's own strokes are read as they are (measured: 99 %)
    bar = np.zeros((1, 28, 28), np.uint8)
    bar[0, 4:24, 11:17] = 255  # a 1 six pixels wide: 120 pixels, an outline through their centres of 48
    assert field_stroke_width(bar[0]) == pytest.approx(5.0) and field_stroke_width(bar[0, :, :14]) < THICK_STROKE
    assert thinned(bar)[0].max() == 255 and (thinned(bar)[0] >= 128).sum() == 18 * 4  # a pixel off each side

    def read(fields: np.ndarray) -> tuple[float, float]:  # (read right and not refused, refused)
        logits = torch.from_numpy(classify(views(fields))).reshape(1 + len(VIEWS), len(fields), -1)
        confidence = (logits / calibration.temperature).softmax(dim=2).mean(dim=0).numpy()
        refused = confidence.max(axis=1) < calibration.reject_below
        return float(((confidence.argmax(axis=1) == labels) & ~refused).mean()), float(refused.mean())

    calibration = pretrained.calibration()
    thick = np.stack([cv2.dilate(image, np.ones((3, 3), np.uint8)) for image in images])  # 2 px thicker
    right, refused = read(thick)  # measured 98.3 % read right, 0.5 % refused
    monkeypatch.setattr("lenet_cli.reading.pipeline.THICK_STROKE", np.inf)
    right_as_cut, refused_as_cut = read(thick)  # measured 95.7 % and 2.55 %
    assert right >= 0.975 and right >= right_as_cut + 0.015 and refused <= refused_as_cut - 0.01


def test_decide_reads_the_mean_of_the_views() -> None:
    # Sure of a 7 as cut, unsure of it in both views: the mean, (0.99 + 0.2 + 0.09) / 3 = 0.43, is refused at 0.5.
    proposal = Proposal(np.zeros((1, 28, 28), np.uint8), [(0, 0, 10, 10)])
    logits = np.stack([confident(7, 0.99), confident(7, 0.2), confident(1, 0.2)])
    reading = decide(proposal, logits, Calibration(1.0, 0.5))
    assert not reading.found and reading.note.endswith("(confidence 0.43)")
    assert decide(proposal, logits[:1], Calibration(1.0, 0.5)).text == "7"  # the field alone: one view


def test_blank_paper_says_why() -> None:
    proposal = propose(np.full((50, 60), 230, np.float32))
    reading = decide(proposal, np.zeros((0, 10)))
    assert not reading.found and reading.note == "the image is one flat colour"


def test_a_number_is_proposed_as_its_digits_left_to_right(mnist) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist
    rng = np.random.default_rng(5)
    ink, _ = writing.write_number(images, labels, rng, 4, touching=0.0, gap=(8, 10))
    proposal = propose(writing._paper(ink, rng))
    assert proposal.slots is not None and len(proposal.slots) == 4
    lefts = [proposal.boxes[readings[0][0]][0] for readings in proposal.slots]
    assert lefts == sorted(lefts)


def test_decide_cuts_only_when_both_parts_are_sure() -> None:
    fields = np.zeros((3, 28, 28), np.uint8)
    proposal = Proposal(fields, [(0, 0, 20, 10), (0, 0, 10, 10), (10, 0, 10, 10)], slots=[[(0,), (1, 2)]])

    def sure(digit: int, logit: float = 12.0) -> np.ndarray:
        row = np.zeros(10)
        row[digit] = logit
        return row

    # The whole read as a 5 at 0.80, the parts as 1 and 5 at ~1.0: the cut.
    both = decide(proposal, np.stack([sure(5, 3.5), sure(1), sure(5)]))
    assert both.text == "15" and len(both.digits) == 2
    # One part unsure: the whole stays.
    unsure = decide(proposal, np.stack([sure(5, 3.5), sure(1, 1.0), sure(5)]))
    assert unsure.text == "5"


def test_decide_refuses_below_the_calibrations_level() -> None:
    proposal = Proposal(np.zeros((1, 28, 28), np.uint8), [(0, 0, 10, 10)])
    flat = np.array([[1.0, 0.9, 0.8, 0, 0, 0, 0, 0, 0, 0]])
    reading = decide(proposal, flat, Calibration(1.0, reject_below=0.5))
    assert not reading.found and reading.note.startswith("not a digit")
    assert decide(proposal, flat, Calibration(1.0, reject_below=0.0)).text == "0"


def confident(digit: int, confidence: float) -> np.ndarray:
    """Logits whose softmax gives ``digit`` ``confidence`` and spreads the rest over the other nine."""
    row = np.full(10, np.log((1 - confidence) / 9))
    row[digit] = np.log(confidence)
    return row


def test_a_refusal_gives_the_refused_digits_confidence() -> None:
    # One digit at 0.30 beside one at 0.99: half are under reject_below, so nothing is read, and the note
    # says how sure the classifier was of what it refused (it once gave the other digit's 0.99).
    proposal = Proposal(np.zeros((2, 28, 28), np.uint8), [(0, 0, 10, 10), (20, 0, 10, 10)])
    reading = decide(proposal, np.stack([confident(3, 0.30), confident(7, 0.99)]), Calibration(1.0, 0.5))
    assert not reading.found
    assert reading.note == "not a digit: letters, a scribble or a shape? (confidence 0.30)"


def test_a_number_read_with_little_confidence_is_refused() -> None:
    # Three letters each read as a digit a little surer than reject_below: 0.55³ = 0.17, under NUMBER_BELOW.
    proposal = Proposal(np.zeros((3, 28, 28), np.uint8), [(0, 0, 10, 10), (20, 0, 10, 10), (40, 0, 10, 10)])
    calibration = Calibration(1.0, 0.5)
    unsure = decide(proposal, np.stack([confident(digit, 0.55) for digit in (1, 2, 1)]), calibration)
    assert not unsure.found and unsure.note == "not a number: letters or a word? (confidence 0.17)"
    sure = decide(proposal, np.stack([confident(digit, 0.9) for digit in (1, 2, 1)]), calibration)
    assert sure.text == "121" and sure.confidence == pytest.approx(0.729)
    # A single digit is refused by reject_below alone: 0.55 reads.
    assert (
        decide(Proposal(np.zeros((1, 28, 28), np.uint8), [(0, 0, 10, 10)]), confident(4, 0.55)[None], calibration).text
        == "4"
    )


@pytest.mark.parametrize("black", [False, True], ids=["hollowed", "left whole"])
def test_a_filled_shape_is_no_digit(black: bool) -> None:
    # The lighting window is sized from strokes, so the flattening takes a filled shape's inside for paper
    # and leaves its rim, which read as "0", "11" or "8". A black one's window is as wide as the shape (a
    # small picture's thickest ink: images.ink.field_stroke_width) and leaves it whole but for pinholes, which
    # read as "0" too (tests/writing.negatives' filled ellipses, 2026-12-06). A ring as thick as a marker's
    # still reads.
    filled, ring = np.zeros((96, 96), np.float32), np.zeros((96, 96), np.float32)
    axes = (38, 28) if black else (22, 34)
    cv2.ellipse(filled, (48, 48), axes, 20.0, 0, 360, 1.0, -1, cv2.LINE_AA)
    cv2.ellipse(ring, (48, 48), axes, 20.0, 0, 360, 1.0, 7, cv2.LINE_AA)
    rng = np.random.default_rng(0)
    if black:
        shape = (241 - 236 * filled + rng.normal(0, 2, filled.shape)).clip(0, 255).astype(np.float32)
    else:
        shape = writing._paper(filled, rng)
    blot = propose(shape)
    assert len(blot.fields) == 0 and blot.note == "a filled shape or a blot, not strokes"
    assert len(propose(writing._paper(ring, rng)).fields) >= 1


def test_the_calibration_is_in_the_bundled_record() -> None:
    fitted = pretrained.record()["calibration"]
    assert fitted["test_ece"] <= 0.01  # the bar: expected calibration error ≤ 1 %
    assert pretrained.calibration() == Calibration(fitted["temperature"], fitted["reject_below"])


def test_outlier_exposure_pushes_negatives_to_uniform() -> None:
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0]], requires_grad=True)
    loss, sums = batch_sums(logits, torch.tensor([0, -1]))
    assert torch.isfinite(loss) and sums[2] == 1  # one digit counted
    loss.backward()
    assert logits.grad is not None and logits.grad[1, 0] > 0  # the negative's top logit is pushed down
    plain, _ = batch_sums(logits.detach(), torch.tensor([0, 0]))
    assert plain == pytest.approx(torch.nn.functional.cross_entropy(logits.detach(), torch.tensor([0, 0])).item())
    # The model's outlier_weight (configs/robust.yaml: 1.0) scales the negative's term alone.
    digit = batch_sums(logits.detach()[:1], torch.tensor([0]))[0] / 2
    half = batch_sums(logits.detach(), torch.tensor([0, -1]), 0.5)[0] - digit
    assert batch_sums(logits.detach(), torch.tensor([0, -1]), 1.0)[0] - digit == pytest.approx(2 * half.item())
    assert LeNet(outlier_weight=1.0).hparams.outlier_weight == 1.0


def test_negatives_are_deterministic_fields() -> None:
    first, again = negatives(20, seed=3), negatives(20, seed=3)
    assert first.shape == (20, 28, 28) and first.dtype == np.uint8 and np.array_equal(first, again)
    assert (first.reshape(20, -1).max(axis=1) > 200).all()  # every one has ink


def test_a_refused_picture_is_drawn_with_its_reason() -> None:
    drawn = refused(Image.new("RGB", (40, 30), "white"), "blank.png", "the image is one flat colour")
    pixels = np.asarray(drawn)
    assert drawn.height > 30 and (pixels[..., 0] > pixels[..., 1] + 60).any()  # the red reason


def test_predict_writes_one_row_per_picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, mnist) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(11)
    ink, number = writing.write_number(images, labels, rng, 3, touching=0.0, gap=(8, 10))
    Image.fromarray(writing._paper(ink, rng).astype(np.uint8)).save(folder / "a-number.png")
    Image.new("L", (40, 40), 235).save(folder / "b-blank.png")
    gray, digit = writing.tight(images, labels, 1, seed=4)[0]
    Image.fromarray(gray.astype(np.uint8)).save(folder / "c-tight.png")
    monkeypatch.chdir(tmp_path)
    main(["predict", *CPU, "--data.predict_path", str(folder), "--data.explain_dir", "explain"])
    out = capsys.readouterr().out
    with (tmp_path / "runs" / "lenet" / "version_0" / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(row["source"]).name for row in rows] == ["a-number.png", "b-blank.png", "c-tight.png"]
    assert rows[0]["predicted"] == number and len(json.loads(rows[0]["digits"])) == len(number)
    assert rows[1]["predicted"] == "" and rows[1]["confidence"] == "" and rows[1]["note"]
    assert rows[2]["predicted"] == digit
    assert f"a-number.png: {number} (confidence " in out and "b-blank.png: no digit (" in out
    assert len(list((tmp_path / "explain").glob("*.png"))) == 3  # the refused one too
