"""Phone-style photos (tests/photos.py) read right: per condition, EXIF-turned, bad files, the explain view."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet_cli.checkpoints import pretrained
from lenet_cli.cli.main import main as run_cli
from lenet_cli.data import idx
from lenet_cli.data.mnist import to_model_input
from lenet_cli.images import decode, explain, files, mnist_style
from lenet_cli.training.module import LeNet
from tests import photos
from tests.helpers import CONFIGS, CPU

PER_CONDITION = 60  # 600 photos; ~15 s to draw on 2 CPU cores
SEED = 0
# The robust model (configs/robust.yaml, seed 1, CPU) on this set, measured: 99.2 % overall (2026-12-06,
# the reading of #23; 98.8 % before), 96.7–100 % per condition; plain and exif lowest, their 60 digits
# holding ones that it misreads in MNIST itself too.
# The bar overall; per condition 4 photos of 60 wrong (3 measured); and, digit difficulty
# aside, its reading of each photo equals its reading of the same digit from MNIST for 98.3–100 % of
# each condition: at most 2 of 60 apart (1 measured).
OVERALL_BAR = 0.98
CONDITION_BAR = 56 / 60
AGREEMENT_BAR = 58 / 60


@pytest.fixture(scope="session")
def phone_photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[photos.Photo], dict[str, str]]:
    """The photo set, drawn once per session, with the bad files beside it: folder, photos, bad files."""
    folder = tmp_path_factory.mktemp("phone_photos")
    arrays = idx.load(None, allow_download=False, splits=("test",))
    listed = photos.generate(folder, arrays["test_images"].numpy(), arrays["test_labels"].numpy(), PER_CONDITION, SEED)
    return folder, listed, photos.bad_files(folder)


@pytest.fixture(scope="session")
def mnist_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained with configs/mnist.yaml on the CPU (minutes): its best checkpoint."""
    return _train(tmp_path_factory, "mnist")


@pytest.fixture(scope="session")
def robust_checkpoint() -> Path:
    """The robust model bundled with the package (configs/robust.yaml, docs/model-card.md)."""
    return pretrained.path()


def _train(tmp_path_factory: pytest.TempPathFactory, config: str) -> Path:
    workdir = tmp_path_factory.mktemp(config)
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        run_cli(
            [
                "fit",
                "--config",
                str(CONFIGS / f"{config}.yaml"),
                *CPU,
                "--seed_everything=1",
                "--trainer.logger.init_args.save_dir=runs",
            ]
        )
    finally:
        os.chdir(previous)
    return workdir / "runs" / config / "version_0" / "checkpoints" / "best.ckpt"


def by_condition(folder: Path, listed: list[photos.Photo], expected: dict[int, int]) -> dict[str, float]:
    """How often ``folder/predictions.csv`` has ``expected[photo.index]``, per condition and ``overall``.

    A photo left out (skipped as unreadable) counts as wrong.
    """
    with (folder / "predictions.csv").open(newline="") as f:
        predicted = {
            row["source"]: int(row["predicted"]) if row["predicted"].isdigit() else -1 for row in csv.DictReader(f)
        }
    hits: dict[str, list[bool]] = defaultdict(list)
    for photo in listed:
        hits[photo.condition].append(predicted.get(str(photo.path)) == expected[photo.index])
    result = {condition: float(np.mean(values)) for condition, values in hits.items()}
    result["overall"] = float(np.mean([value for values in hits.values() for value in values]))
    return result


def mnist_predictions(checkpoint: Path) -> dict[int, int]:
    """The checkpoint's reading of every MNIST test digit, by index."""
    model = LeNet.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        test_images = idx.load(None, allow_download=False, splits=("test",))["test_images"]
        predicted = model(to_model_input(test_images)).argmax(dim=1)
    return dict(enumerate(predicted.tolist()))


def predict_folder(checkpoint: Path, folder: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Path:
    monkeypatch.chdir(workdir)
    run_cli(
        [
            "predict",
            *CPU,
            "--ckpt_path",
            str(checkpoint),
            "--data.predict_path",
            str(folder),
            "--data.num_workers=2",
            "--prediction_writer.output_dir=out",
            *extra,
        ]
    )
    return workdir / "out"


# The generator ------------------------------------------------------------------------------------


def test_the_generator_is_deterministic(tmp_path: Path) -> None:
    arrays = idx.load(None, allow_download=False, splits=("test",))
    test_images, test_labels = arrays["test_images"][:50].numpy(), arrays["test_labels"][:50].numpy()
    first = photos.generate(tmp_path / "a", test_images, test_labels, per_condition=1, seed=3)
    again = photos.generate(tmp_path / "b", test_images, test_labels, per_condition=1, seed=3)
    other = photos.generate(tmp_path / "c", test_images, test_labels, per_condition=1, seed=4)
    assert [photo.path.name for photo in first] == [f"{condition}-000.jpg" for condition in photos.CONDITIONS]
    assert [(p.index, p.label) for p in first] == [(p.index, p.label) for p in photos.plan(tmp_path, test_labels, 1, 3)]
    for one, two, three in zip(first, again, other, strict=True):
        assert one.path.read_bytes() == two.path.read_bytes()
        assert one.path.read_bytes() != three.path.read_bytes()


def test_the_set_holds_every_condition(phone_photos: tuple[Path, list[photos.Photo], dict[str, str]]) -> None:
    _, listed, _ = phone_photos
    assert len(listed) >= 500
    by_condition = defaultdict(list)
    for photo in listed:
        by_condition[photo.condition].append(photo)
    assert sorted(by_condition) == sorted(photos.CONDITIONS)
    assert all(len(group) == PER_CONDITION for group in by_condition.values())
    assert len({photo.index for photo in listed}) == PER_CONDITION * (len(photos.CONDITIONS) - 1)  # exif: plain's
    sizes = set()
    for photo in by_condition["small"]:
        with Image.open(photo.path) as image:
            sizes.add(max(image.size))
    assert max(sizes) == 4000 and min(sizes) <= 1600
    for photo in by_condition["exif"]:
        with Image.open(photo.path) as image:
            assert image.getexif()[photos.ORIENTATION_TAG] in range(2, 9)


# Model-free properties ------------------------------------------------------------------------------


def test_exif_photos_read_as_their_upright_twins(phone_photos: tuple[Path, list[photos.Photo], dict[str, str]]) -> None:
    folder, _, _ = phone_photos
    differences = []
    for number in range(PER_CONDITION):
        upright = files.load_digit(folder / f"plain-{number:03d}.jpg", "upright")
        turned = files.load_digit(folder / f"exif-{number:03d}.jpg", "turned")
        differences.append(np.abs(upright.astype(int) - turned.astype(int)).mean())
    # The same picture, JPEG-compressed once more: a few grey levels apart (a turned digit: ~50).
    assert max(differences) < 8 and np.mean(differences) < 3


def test_bad_files_are_skipped_naming_why(
    phone_photos: tuple[Path, list[photos.Photo], dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two photos of each condition beside the bad files (the whole set's 600 took ~6 s to read, for this).
    listed = phone_photos[1][:: PER_CONDITION // 2]
    for photo in listed:
        shutil.copy(photo.path, tmp_path / photo.path.name)
    bad = photos.bad_files(tmp_path)
    digits, sources = files.load_digits(tmp_path, num_workers=2)
    assert sorted(sources) == sorted(str(tmp_path / photo.path.name) for photo in listed)
    assert {photo.condition for photo in listed} == set(photos.CONDITIONS)
    assert digits.shape == (len(listed), 28, 28)
    warning = capsys.readouterr().err
    assert f"skipped {len(bad)} of {len(listed) + len(bad)} files" in warning
    for name, reason in bad.items():
        assert any(name in line and reason in line for line in warning.splitlines()), (name, reason, warning)


def test_clean_mnist_pngs_come_back_as_they_were() -> None:
    """MNIST's digits written as PNG files go through the photo steps nearly unchanged."""
    test_images = idx.load(None, allow_download=False, splits=("test",))["test_images"][:2000].numpy()
    differences = []
    for number, digit in enumerate(test_images):
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        buffer.seek(0)
        differences.append(np.abs(files.load_digit(buffer, f"{number}.png").astype(int) - digit.astype(int)).mean())
    # Measured: 1.2 grey levels on average; 49 of 10 000 more than 20 apart (a speck dropped, a piece of a
    # broken stroke lost), which is where the predictions may change (test below).
    assert np.mean(differences) < 1.6
    assert np.mean(np.array(differences) > 20) < 0.01


# The explain view -----------------------------------------------------------------------------------


def test_explain_view_shows_each_step(
    phone_photos: tuple[Path, list[photos.Photo], dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, _, _ = phone_photos
    chosen = tmp_path / "some photos"
    chosen.mkdir()
    for name in ("shadow-001.jpg", "exif-002.jpg", "ruled-003.jpg", "notes.jpg"):
        (chosen / name).write_bytes((folder / name).read_bytes())
    out = predict_folder(pretrained.path(), chosen, tmp_path, monkeypatch, "--data.explain_dir=explained")
    written = sorted(path.name for path in (tmp_path / "explained").iterdir())
    assert written == ["0000-exif-002.png", "0001-ruled-003.png", "0002-shadow-001.png"]  # notes.jpg: skipped
    assert (out / "predictions.png").is_file()
    for position, name in enumerate(["exif-002.jpg", "ruled-003.jpg", "shadow-001.jpg"]):
        with Image.open(tmp_path / "explained" / written[position]) as figure:
            assert figure.height == explain.PANEL_HEIGHT + 2 * explain.TITLE_HEIGHT + explain.GAP
            # The right-most panel is the 28×28 digit the model got, each pixel a square.
            right = figure.width - explain.GAP - explain.PANEL_HEIGHT
            panel = figure.crop(
                (
                    right,
                    2 * explain.TITLE_HEIGHT,
                    right + explain.PANEL_HEIGHT,
                    2 * explain.TITLE_HEIGHT + explain.PANEL_HEIGHT,
                )
            )
            shown = np.asarray(panel.convert("L").resize((28, 28), Image.Resampling.NEAREST))
            assert np.array_equal(shown, files.load_digit(chosen / name, name))
            assert figure.width > 4 * explain.PANEL_HEIGHT  # five panels side by side


def test_explain_figure_marks_dropped_ink(phone_photos: tuple[Path, list[photos.Photo], dict[str, str]]) -> None:
    folder, _, _ = phone_photos
    path = folder / "squared-page.jpg"  # a bad file: squared paper, no digit
    with pytest.raises(decode.BadImage, match="no digit"):
        files.load_digit(path, path.name)
    # shadow-006: the shadow leaves ~1100 pixels of ink that is not the digit's (dropped); shadow-000 leaves none.
    # (shadow-001 drops 2 pixels, which the panel, scaled to 200 pixels high, smooths away.)
    for name, drops_ink in (("shadow-006.jpg", True), ("shadow-000.jpg", False)):
        photo = folder / name
        image = decode.read_image(photo, photo.name)
        steps = mnist_style.preprocess(decode.to_gray(image), photo.name)
        assert steps.chosen.any() and not (steps.chosen & ~steps.ink).any()
        assert (steps.ink & ~steps.chosen).any() == drops_ink, name
        figure = np.asarray(explain.figure(image, steps, photo.name))
        assert np.array_equal(steps.digit, files.load_digit(photo, photo.name))
        marked = (figure == np.array(explain.DROPPED, np.uint8)).all(axis=2).any()
        assert marked == drops_ink, name


# With a trained model ------------------------------------------------------------------------------


ReadPhotos = Callable[..., dict[str, float]]  # (checkpoint, expected=None) -> share by condition


@pytest.fixture
def read_photos(
    phone_photos: tuple[Path, list[photos.Photo], dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ReadPhotos:
    """Predicts the photo set with a checkpoint; how often it says ``expected`` (default: the true digit)."""
    folder, listed, _ = phone_photos
    truth = {photo.index: photo.label for photo in listed}
    out: dict[Path, Path] = {}

    def read(checkpoint: Path, expected: dict[int, int] | None = None) -> dict[str, float]:
        if checkpoint not in out:
            out[checkpoint] = predict_folder(checkpoint, folder, tmp_path, monkeypatch)
        return by_condition(out[checkpoint], listed, expected or truth)

    return read


def test_robust_model_reads_phone_photos(read_photos: ReadPhotos, robust_checkpoint: Path) -> None:
    accuracy = read_photos(robust_checkpoint)
    agreement = read_photos(robust_checkpoint, mnist_predictions(robust_checkpoint))
    assert accuracy["overall"] >= OVERALL_BAR, accuracy
    for condition in photos.CONDITIONS:
        assert accuracy[condition] >= CONDITION_BAR, (condition, accuracy)
        assert agreement[condition] >= AGREEMENT_BAR, (condition, agreement)
    assert accuracy["exif"] >= accuracy["plain"] - 1 / PER_CONDITION  # at most one photo apart


@pytest.mark.slow
def test_mnist_yaml_model_reads_phone_photos(read_photos: ReadPhotos, mnist_checkpoint: Path) -> None:
    """Without augmentation too: measured 98.2 % overall on this set (configs/mnist.yaml, seed 1, CPU)."""
    assert read_photos(mnist_checkpoint)["overall"] >= 0.97


def test_clean_mnist_pngs_keep_their_prediction(robust_checkpoint: Path) -> None:
    arrays = idx.load(None, allow_download=False, splits=("test",))
    model = LeNet.load_from_checkpoint(robust_checkpoint, map_location="cpu").eval()
    test_images = arrays["test_images"][:3000].numpy()  # 3 000 of the 10 000: the bar sits 9 errors under
    read = []
    for number, digit in enumerate(test_images):
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        buffer.seek(0)
        read.append(files.load_digit(buffer, f"{number}.png"))
    with torch.no_grad():
        from_files = model(to_model_input(torch.from_numpy(np.stack(read)))).argmax(dim=1)
        from_mnist = model(to_model_input(arrays["test_images"][:3000])).argmax(dim=1)
    # Measured: 99.88 % (robust model), 99.90 % (configs/mnist.yaml's).
    assert (from_files == from_mnist).float().mean().item() >= 0.995
