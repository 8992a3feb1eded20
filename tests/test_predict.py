"""``lenet predict``: the best checkpoint in a new process, the user's own images, outputs, bad inputs."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet_cli import idx
from lenet_cli.data import to_model_input
from lenet_cli.model import LeNet
from lenet_cli.writers import COLUMNS
from tests.conftest import CONFIGS, CPU, run_cli
from tests.test_images import dark_on_light_rgb, on_canvas, png_bomb, truncated_png


def read_predictions(folder: Path) -> list[dict[str, str]]:
    with (folder / "predictions.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def make_user_images(folder: Path, count: int, seed: int = 0) -> tuple[list[int], torch.Tensor]:
    """``count`` MNIST test digits as a user would bring them; returns their test indices and labels.

    Each is inverted to blue ink on cream paper (RGB), enlarged 1-3×, placed off-centre on a larger
    canvas and saved as PNG or (every other one) JPEG. Names sort in the order of the returned lists.
    """
    arrays = idx.load(None, allow_download=False)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(arrays["test_images"]), count, replace=False).tolist())
    folder.mkdir(parents=True, exist_ok=True)
    for position, index in enumerate(chosen):
        picture = dark_on_light_rgb(arrays["test_images"][index].numpy(), scale=int(rng.integers(1, 4)))
        side = picture.shape[0]
        size = int(rng.integers(side + 20, 2 * side + 40))
        top, left = (int(value) for value in rng.integers(0, size - side + 1, 2))
        image = Image.fromarray(on_canvas(picture, (size, size), top, left))
        image.save(folder / f"digit{position:04d}.{'png' if position % 2 == 0 else 'jpg'}", quality=90)
    return chosen, arrays["test_labels"][chosen].long()


def accuracy_on_mnist(checkpoint: Path, indices: list[int]) -> float:
    """The checkpoint's accuracy on these MNIST test digits as MNIST gives them."""
    arrays = idx.load(None, allow_download=False)
    model = LeNet.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        predicted = model(to_model_input(arrays["test_images"][indices])).argmax(dim=1)
    return (predicted == arrays["test_labels"][indices].long()).float().mean().item()


def user_image_accuracy(run: Path, chosen: list[int], labels: torch.Tensor, folder: Path) -> float:
    rows = read_predictions(run)
    assert [Path(row["source"]).name for row in rows] == sorted(p.name for p in folder.iterdir())
    assert [int(row["index"]) for row in rows] == list(range(len(chosen)))
    assert all(row["true_label"] == "" for row in rows)  # unknown for the user's files
    predicted = torch.tensor([int(row["predicted"]) for row in rows])
    return (predicted == labels).float().mean().item()


def test_predict_best_in_new_process_matches_test(trained_run: Path, tmp_path: Path) -> None:
    # The folder where `lenet fit --config configs/quick.yaml` ran, copied so that this test's runs
    # do not land in the shared fixture's.
    shutil.copytree(trained_run.parents[2] / "runs", tmp_path / "runs")
    config = ["--config", str(CONFIGS / "quick.yaml"), *CPU]
    result = subprocess.run(
        [sys.executable, "-m", "lenet_cli", "predict", *config, "--ckpt_path", "best"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = Path("runs") / "quick" / "version_0" / "checkpoints" / "best.ckpt"
    assert f"--ckpt_path best: using {best}" in result.stderr
    predict_run = tmp_path / "runs" / "quick" / "version_1"
    assert "Predictions of 10000 inputs" in result.stderr and str(predict_run.relative_to(tmp_path)) in result.stderr

    rows = read_predictions(predict_run)
    assert len(rows) == 10_000
    assert [int(row["index"]) for row in rows] == list(range(10_000))
    assert [row["source"] for row in rows[:3]] == ["0", "1", "2"]  # the test-set index
    first = rows[0]
    assert first["true_label"] == "7" and first["predicted"] in "0123456789"
    probabilities = [float(first[name]) for name in ("confidence", "top2_probability", "top3_probability")]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    assert len({first["predicted"], first["top2"], first["top3"]}) == 3
    correct = sum(row["predicted"] == row["true_label"] for row in rows)
    assert (predict_run / "predictions.png").stat().st_size > 10_000
    assert len(list(predict_run.glob("*_predicted_*.png"))) == 10  # the tutorial's files stay

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        run_cli(["test", *config, "--ckpt_path", "best"])
    with (tmp_path / "runs" / "quick" / "version_2" / "metrics.csv").open(newline="") as f:
        test_accuracy = float([row for row in csv.DictReader(f) if row.get("test/acc")][-1]["test/acc"])
    assert correct == round(test_accuracy * 10_000)  # the same images, the same predictions
    assert correct >= 9_400  # and a model that learnt something


def test_predict_on_user_style_images(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "my digits"
    chosen, labels = make_user_images(folder, 1000)
    monkeypatch.chdir(tmp_path)
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    run_cli(["predict", *CPU, "--ckpt_path", str(checkpoint), "--data.predict_path", str(folder)])
    run = tmp_path / "runs" / "lenet" / "version_0"
    accuracy = user_image_accuracy(run, chosen, labels, folder)
    # The bar is relative to the model: redrawn as a user would and made MNIST-like again, digits
    # must be read nearly as well as straight from MNIST. Measured with this 300-step model: 96.0 %
    # on these images vs 95.9 % from MNIST (a full epoch: 98.1 % vs 98.5 %, next test). 1.5
    # points is ~3.5 standard deviations of that difference on 1000 images, and 94 % lies 3 standard
    # errors below the 96 % measured.
    assert accuracy >= accuracy_on_mnist(checkpoint, chosen) - 0.015
    assert accuracy >= 0.94
    assert (run / "predictions.png").is_file()
    assert len(list(run.glob("*_predicted_*.png"))) == 10


def test_well_trained_model_reads_user_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's bar: a well-trained model reads ≥ 97 % of user-style images.

    Measured: 98.1 % on these 2000 images, 98.5 % on the same digits from MNIST (97.9 % validation
    accuracy); 97 % is 3.5 standard errors below. About 15 s on 2 CPU cores.
    """
    monkeypatch.chdir(tmp_path)
    run_cli(["fit", "--config", str(CONFIGS / "quick.yaml"), *CPU, "--trainer.limit_train_batches=null",
             "--seed_everything=7"])  # one full epoch at lr 2e-3: ~98 % validation accuracy
    folder = tmp_path / "digits"
    chosen, labels = make_user_images(folder, 2000, seed=1)
    run_cli(["predict", "--config", str(CONFIGS / "quick.yaml"), *CPU, "--ckpt_path", "best",
             "--data.predict_path", str(folder)])
    accuracy = user_image_accuracy(tmp_path / "runs" / "quick" / "version_1", chosen, labels, folder)
    assert accuracy >= 0.97


# Bad inputs: one line naming the file, exit status 2 ---------------------------------------------


def _not_an_image(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("shopping list")
    return path


def _corrupt(folder: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # does not compress
    return truncated_png(folder / "broken.png", noise)


def _empty_folder(folder: Path) -> Path:
    (folder / "empty").mkdir()
    return folder / "empty"


def _missing(folder: Path) -> Path:
    return folder / "nowhere.png"


def _bomb(folder: Path) -> Path:
    return png_bomb(folder / "bomb.png")


def _only_bad_files(folder: Path) -> Path:
    (folder / "bad").mkdir()
    _not_an_image(folder / "bad")
    _corrupt(folder / "bad")
    return folder / "bad"


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not an image": (_not_an_image, r"notes.png: not an image file"),
    "corrupt image": (_corrupt, r"broken.png: corrupt or truncated image"),
    "empty folder": (_empty_folder, r"the folder .*empty holds no files"),
    "missing path": (_missing, r"nowhere.png does not exist"),
    "decompression bomb": (_bomb, r"bomb.png: .*decompression bomb"),
    "folder of bad files": (_only_bad_files, r"none of the 2 files .*broken.png: corrupt.*notes.png: not an image"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_in_one_line(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make, message = BAD_INPUTS[case]
    path = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["predict", *CPU, "--data.predict_path", str(path)])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert re.search(message, errors[0]), errors[0]
    assert not list(tmp_path.rglob("predictions.csv"))


def test_unreadable_file_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(locked)
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything: fail the open as it fails for a user
        original_open = Image.open

        def refuse(path: object, *args: object, **kwargs: object) -> Image.Image:
            if Path(str(path)).name == "locked.png":
                raise PermissionError(13, "Permission denied", str(path))
            return original_open(path, *args, **kwargs)

        monkeypatch.setattr(Image, "open", refuse)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["predict", *CPU, "--data.predict_path", str(locked)])
    assert exit_info.value.code == 2
    assert "locked.png: cannot be read (Permission denied)" in capsys.readouterr().err


def test_mixed_folder_predicts_good_files_and_lists_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    make_user_images(folder, 3)
    _not_an_image(folder)
    _corrupt(folder)
    monkeypatch.chdir(tmp_path)
    run_cli(["predict", *CPU, "--data.predict_path", str(folder)])  # no SystemExit: status 0
    err = capsys.readouterr().err
    assert "skipped 2 of 5 files" in err and "broken.png: corrupt" in err and "notes.png: not an image" in err
    rows = read_predictions(tmp_path / "runs" / "lenet" / "version_0")
    assert [Path(row["source"]).name for row in rows] == ["digit0000.png", "digit0001.jpg", "digit0002.png"]
